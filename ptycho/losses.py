"""The data losses of the physics model: one registry, one entry per named loss.

A sweep arm's ``loss = "nll"`` (``TrainingConfig.loss``) names an entry of :data:`LOSSES`.
Each entry says which model output it compares with the measurement and how:

* ``"intensity"``: predicted counts ``lam`` ``(B, N, N, C)`` against measured counts ``y``;
* ``"amplitude"``: predicted amplitudes ``A = sqrt(lam)`` against measured ``sqrt(y)``.

Every loss is divided by a dose-dependent constant so that its value is about the same size at
every dose (one count per pixel and one at 1e5 give comparable numbers; Adam's steps do not
depend on this constant): ``mean_counts = nphotons / N**2``, the expected counts per pixel.
Values of different losses are still not comparable with each other (a Poisson deviance per
count is not an amplitude error); the history and the plots keep them apart.

Adding a loss means adding one :class:`DataLoss` to :data:`LOSSES` here: the configuration
validates names against this table, the model compiles from it, the runner's arms list it. A
loss that changes over training gives its function a ``set_progress(fraction)`` method, which
:func:`ptycho.train_pinn.train` calls at the start of every epoch (``mae_nll``).

Imports no TensorFlow at import time (the loss functions import it when built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DataLoss", "LOSSES", "LOSS_NAMES", "get_loss", "OUTPUTS"]

#: Model outputs a data loss may compare (names of the autoencoder's outputs).
OUTPUTS = ("amplitude", "intensity")


@dataclass(frozen=True)
class DataLoss:
    """A named data loss.

    Attributes:
        name: the name arms and ``TrainingConfig.loss`` use.
        output: ``"intensity"`` (counts) or ``"amplitude"`` (sqrt counts).
        make: ``make(mean_counts, training) -> fn(y_true, y_pred)``, a Keras loss function
            returning a scalar; ``mean_counts`` is the expected counts per pixel (> 0).
        units: what the value (``final_loss``, the history's ``loss``) measures.
        description: one line for ``--help`` and the docs.
    """

    name: str
    output: str
    make: Callable
    units: str
    description: str


def _poisson_nll(mean_counts, training):
    """Poisson negative log-likelihood per pixel, minus its value at a perfect fit (half the
    Poisson deviance), divided by the expected counts per pixel."""
    import tensorflow as tf

    scale = 1.0 / float(mean_counts)

    def nll(y, lam):
        lam = tf.maximum(lam, 1e-12)
        y_log_y = tf.math.xlogy(y, tf.maximum(y, 1e-12))
        return tf.reduce_mean(lam - y * tf.math.log(lam) - (y - y_log_y)) * scale

    return nll


#: Where the robust NLL turns from quadratic to linear, in deviance-residual units (about
#: standard deviations of a well-fitted pixel).
HUBER_DELTA = 2.0


def _poisson_huber(mean_counts, training):
    """The Poisson NLL made robust: Huber's function of each pixel's deviance residual
    ``r = sign(lam - y) sqrt(dev)``. For ``|r| <= HUBER_DELTA`` it is exactly the NLL's term
    (``dev / 2``), so near the fit it is the Poisson likelihood at every dose; beyond, it grows
    like ``HUBER_DELTA * |r|``, so the large early residuals of bright pixels at high dose do
    not swamp the rest (an L1-like push, as with the MAE). Divided by
    ``min(mean_counts, HUBER_DELTA * sqrt(mean_counts))``: the expected counts per pixel, like
    the NLL, where the quadratic branch dominates (few counts), and the size of the linear
    branch (``HUBER_DELTA`` times a deviance residual of order ``sqrt(counts)``) at high dose,
    so the loss and its gradients keep their size at every dose (with ``1 / mean_counts`` alone
    its gradients fell to about 1e-6 at 1e9 photons, near Adam's epsilon)."""
    import tensorflow as tf

    d = float(HUBER_DELTA)
    scale = 1.0 / min(float(mean_counts), d * float(mean_counts) ** 0.5)

    def nll_huber(y, lam):
        lam = tf.maximum(lam, 1e-12)
        y_log_y = tf.math.xlogy(y, tf.maximum(y, 1e-12))
        dev = tf.maximum(2.0 * (lam - y * tf.math.log(lam) - (y - y_log_y)), 0.0)
        linear = d * tf.sqrt(tf.maximum(dev, d * d)) - 0.5 * d * d
        return tf.reduce_mean(tf.where(dev <= d * d, 0.5 * dev, linear)) * scale

    return nll_huber


def _amplitude_mae(mean_counts, training):
    """Mean absolute error of the amplitudes, divided by the expected amplitude per pixel."""
    import tensorflow as tf

    scale = float(mean_counts) ** -0.5

    def mae(a, pred):
        return tf.reduce_mean(tf.abs(pred - a)) * scale

    return mae


def _weighted(mean_counts, training):
    """PtychoPINN's compiled mix: ``nll_weight * nll + mae_weight * mae`` (on intensities,
    the amplitude MAE taken as ``|sqrt(lam) - sqrt(y)|``)."""
    import tensorflow as tf

    nll = _poisson_nll(mean_counts, training)
    mae = _amplitude_mae(mean_counts, training)
    w_nll, w_mae = float(training.nll_weight), float(training.mae_weight)

    def weighted(y, lam):
        out = 0.0
        if w_nll:
            out += w_nll * nll(y, lam)
        if w_mae:
            out += w_mae * mae(tf.sqrt(tf.maximum(y, 0.0)), tf.sqrt(tf.maximum(lam, 0.0)))
        return out

    return weighted


#: The ``mae_nll`` curriculum, as fractions of the epochs: the MAE alone until ``start``, then a
#: linear blend that reaches the NLL alone at ``end``.
CURRICULUM = {"start": 0.25, "end": 0.5}


def _mae_then_nll(mean_counts, training):
    """A curriculum: the amplitude MAE first, then the Poisson NLL. At ``N = 64`` the NLL alone
    settles on a data-consistent non-object (docs/quality.md) where the MAE finds the object;
    the MAE's solution then starts the NLL, which weighs each pixel by its counts near the fit.
    The weight of the NLL is ``w = clip((f - start) / (end - start), 0, 1)`` at the fraction
    ``f`` of the epochs done (:data:`CURRICULUM`); the loss is ``(1 - w) mae + w nll``, each
    scaled as its own entry. ``fn.set_progress(f)`` moves ``w`` (``train_pinn.train`` calls it
    at the start of each epoch); until it is called the loss is the MAE."""
    import tensorflow as tf

    nll = _poisson_nll(mean_counts, training)
    mae = _amplitude_mae(mean_counts, training)
    w = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="nll_weight")
    start, end = float(CURRICULUM["start"]), float(CURRICULUM["end"])

    def mae_nll(y, lam):
        amp = mae(tf.sqrt(tf.maximum(y, 0.0)), tf.sqrt(tf.maximum(lam, 0.0)))
        return (1.0 - w) * amp + w * nll(y, lam)

    def set_progress(fraction: float) -> None:
        w.assign(min(1.0, max(0.0, (float(fraction) - start) / (end - start))))

    mae_nll.set_progress = set_progress
    mae_nll.nll_weight = w
    return mae_nll


#: Every data loss, by name. The first entry is the default.
LOSSES: dict[str, DataLoss] = {loss.name: loss for loss in (
    DataLoss("nll", "intensity", _poisson_nll, "Poisson deviance / 2 per count",
             "Poisson negative log-likelihood of the measured counts (the statistically "
             "correct loss at every dose)"),
    DataLoss("mae", "amplitude", _amplitude_mae, "amplitude error per sqrt(count)",
             "mean absolute error of sqrt(counts) (PtychoPINN's MAE arm)"),
    DataLoss("weighted", "intensity", _weighted, "mixed (nll_weight, mae_weight)",
             "nll_weight * nll + mae_weight * mae, PtychoPINN's legacy loss weights"),
    DataLoss("nll_huber", "intensity", _poisson_huber, "robust Poisson deviance / 2 per count",
             "Poisson NLL with Huber's function of the deviance residuals: the likelihood "
             "near the fit, linear in large residuals (learns at high dose like the MAE, "
             "keeps the NLL's lead at low dose: docs/quality.md, round 4)"),
    DataLoss("mae_nll", "intensity", _mae_then_nll,
             "Poisson deviance / 2 per count (the amplitude MAE in the first epochs)",
             "curriculum: the amplitude MAE for the first quarter of the epochs, blended into "
             "the Poisson NLL by half of them (the MAE finds the object, the NLL refines it)"),
)}
#: The names, in order.
LOSS_NAMES = tuple(LOSSES)


def get_loss(name: str) -> DataLoss:
    """The entry ``name`` of :data:`LOSSES`; ``KeyError`` naming the allowed ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}: must be one of "
                       f"{', '.join(map(repr, LOSS_NAMES))}") from None
