"""Held-out photons: a stopping rule for in-situ training that needs no second data set.

Each measured count ``y ~ Poisson(lam)`` is split by binomial thinning into a kept part
``y_fit ~ Binomial(y, 1 - h)`` and a held-out part ``y_held = y - y_fit``. Given the object,
the two are independent Poisson counts, ``y_fit ~ Poisson((1 - h) lam)`` and ``y_held ~
Poisson(h lam)`` ("data thinning"): the same scan at two doses with independent noise. The
model is fitted to ``y_fit`` alone; how well its object predicts ``y_held`` (the Poisson
negative log-likelihood of the held-out counts under the model's intensities times
``h / (1 - h)``) measures what the fit has learnt about the object, not about the noise of the
kept counts. Its minimum over the epochs is the stopping point: :class:`HeldOutStopping`
restores that epoch's weights (and can end training early).

Why it is needed: in situ there is no held-out object, and at low dose the fit goes on
lowering its training loss by fitting the noise (docs/quality.md, round 13: at 1e4 photons the
faint sample's amp SSIM falls from 0.50 after 200 epochs to 0.17 after 600). A second scan
(the test scan) does not tell when: its loss measures generalisation to another object.

The price: the fit sees ``(1 - h)`` of the photons (``h = 0.1``: 0.046 decades of dose).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import keras
import numpy as np

__all__ = ["split_counts", "HeldOutStopping", "HOLDOUT_SALT"]

log = logging.getLogger(__name__)

#: Mixed into the seed of the thinning draw so it is not the weights' stream.
HOLDOUT_SALT = 0x401D0


def split_counts(data, fraction: float, seed: int):
    """Split every count of ``data`` (a :class:`ptycho.simulation.DiffractionData`) binomially.

    Args:
        data: amplitudes ``X = sqrt(counts)``, ``(B, N, N, C)``; the counts must be integers.
        fraction: ``h``, the expected fraction of each count held out, ``0 < h < 1``.
        seed: seeds the draw (with :data:`HOLDOUT_SALT`).

    Returns:
        ``(fit, held)``: two data sets with the same scan, ``fit.X = sqrt(y_fit)`` at dose
        ``(1 - h) nphotons`` and amplitude scale ``sqrt(1 - h) intensity_scale``, ``held``
        likewise at ``h``. ``y_fit + y_held`` is the original counts exactly.
    """
    h = float(fraction)
    if not 0.0 < h < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    counts = np.square(np.asarray(data.X, np.float64))
    y = np.rint(counts)
    if not np.allclose(counts, y, rtol=0, atol=1e-3 * np.maximum(1.0, y)):
        raise ValueError("the data's X**2 are not integer counts: cannot thin them binomially")
    y = y.astype(np.int64)
    rng = np.random.default_rng([int(seed), HOLDOUT_SALT])
    y_fit = rng.binomial(y, 1.0 - h)

    def part(c, f):
        return dataclasses.replace(data, X=np.sqrt(c).astype(np.float32),
                                   intensity_scale=data.intensity_scale * math.sqrt(f),
                                   nphotons=data.nphotons * f)

    return part(y_fit, 1.0 - h), part(y - y_fit, h)


class HeldOutStopping(keras.callbacks.Callback):
    """After each epoch, the Poisson NLL of the held-out counts under the model's intensities
    for the fitted data; logs it as ``holdout_loss``; restores the weights of the epoch where it
    was lowest when training ends; stops after ``patience`` epochs without a new minimum
    (``patience = 0``: never early).

    ``holdout_loss`` is in the ``"nll"`` loss's units (half the Poisson deviance per expected
    held-out count, :mod:`ptycho.losses`), whatever loss the model trains with: a proper score
    of the predicted intensities, comparable across losses at one dose.

    Args:
        inputs: the model's inputs for the fitted data (:func:`ptycho.train_pinn.model_inputs`).
        held: the held-out data (``held.X ** 2`` are the counts), same scan.
        fraction: ``h`` of :func:`split_counts`.
        patience: epochs without improvement before stopping (>= 0).
        batch_size: for the prediction.

    After training, ``best_epoch`` (1-based) and ``best_loss``.
    """

    def __init__(self, inputs, held, fraction: float, patience: int = 0, batch_size: int = 64):
        super().__init__()
        from .losses import get_loss

        h = float(fraction)
        N = held.X.shape[1]
        self.inputs = inputs
        self.counts = np.square(np.asarray(held.X, np.float32))
        self.ratio = h / (1.0 - h)
        self.patience = int(patience)
        self.batch_size = int(batch_size)
        self._nll = get_loss("nll").make(held.nphotons / N**2, None)
        self.best_epoch: int | None = None
        self.best_loss = math.inf
        self._best_weights = None

    def held_out_loss(self) -> float:
        """The held-out NLL of the model's current weights."""
        out = self.model.predict(self.inputs, batch_size=self.batch_size, verbose=0)
        lam = np.asarray(out[self.model.output_names.index("intensity")], np.float32)
        return float(self._nll(self.counts, lam * np.float32(self.ratio)))

    def on_train_begin(self, logs=None):
        self.best_epoch, self.best_loss, self._best_weights = None, math.inf, None

    def on_epoch_end(self, epoch, logs=None):
        loss = self.held_out_loss()
        if logs is not None:
            logs["holdout_loss"] = loss
        if loss < self.best_loss:
            self.best_epoch, self.best_loss = epoch + 1, loss
            self._best_weights = self.model.get_weights()
        elif self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
            log.info("held-out photons: restored epoch %d (holdout_loss=%.6g)", self.best_epoch,
                     self.best_loss)
