"""Training and inference of the physics-informed model on :class:`DiffractionData`.

``train`` fits a model (built by the factory unless one is given), ``eval`` reconstructs, and
``train_eval`` does both and scores the stitched test reconstruction against the ground truth.
Nothing is written to disk unless ``checkpoint_dir`` is given.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import holdout
from . import model as model_lib
from .config import ModelConfig, TrainingConfig

__all__ = ["TrainResult", "EpochLog", "model_inputs", "model_targets", "seen_as_fitted", "train",
           "eval", "train_eval", "group_centres"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        autoencoder: the trained model (its ``ptycho_config`` holds the :class:`ModelConfig`).
        history: loss per epoch, ``{"loss": [...], "intensity_loss": [...], ...}``.
        train_s: wall seconds spent in ``fit``.
        training: the :class:`TrainingConfig` used (with ``holdout``, its ``nphotons`` is the
            fitted part's dose, ``(1 - holdout)`` of the data's).
        fit_data: the data the model was fitted to: the training data, or with ``holdout``
            its kept part (reconstruct the training scan from these inputs).
        validation_data: the validation data as scored (with ``holdout``, thinned like the
            training data: the model's intensity scale is the kept part's), or None.
        best_epoch: with ``holdout``, the epoch (1-based) whose weights the model holds, the
            held-out photons' minimum; None otherwise (the last epoch's weights).
    """

    autoencoder: keras.Model
    history: dict[str, list[float]]
    train_s: float
    training: TrainingConfig
    fit_data: object = None
    validation_data: object = None
    best_epoch: int | None = None
    extras: dict = field(default_factory=dict)

    def at_model(self, key: str = "loss") -> float:
        """The history's ``key`` at the epoch whose weights the model holds (``best_epoch``, or
        the last one)."""
        values = self.history[key]
        return float(values[-1] if self.best_epoch is None else values[self.best_epoch - 1])

    @property
    def final_loss(self) -> float:
        """The training loss of the weights the model holds (see :meth:`at_model`)."""
        return self.at_model("loss")

    def epochs(self) -> list[dict[str, float]]:
        """The history as one dict per epoch: ``epoch`` (1-based), ``train_loss`` (Keras'
        ``loss``), ``val_loss`` when validated, ``lr``, ``epoch_s`` and the per-output
        losses."""
        n = len(self.history.get("loss", []))
        return [{"epoch": i + 1, **{("train_loss" if k == "loss" else k): v[i]
                                    for k, v in self.history.items() if len(v) == n}}
                for i in range(n)]


class EpochLog(keras.callbacks.Callback):
    """Adds ``lr`` (the optimiser's learning rate at the epoch's end) and ``epoch_s`` (wall
    seconds) to each epoch's logs, and logs one line per epoch (``logging.INFO``)."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        opt = self.model.optimizer
        logs["lr"] = float(keras.ops.convert_to_numpy(opt.learning_rate))
        logs["epoch_s"] = time.perf_counter() - self._start
        shown = " ".join(f"{k}={v:.6g}" for k, v in logs.items() if k in
                         ("loss", "val_loss", "holdout_loss", "lr", "epoch_s"))
        log.info("%sepoch %d/%s %s", self.prefix, epoch + 1, self.params.get("epochs"), shown)


def model_inputs(data) -> list[np.ndarray]:
    """``[X (B, N, N, C) float32 counts amplitudes, coords_relative (B, 1, 2, C) float32]``."""
    return [np.asarray(data.X, np.float32), np.asarray(data.coords_relative, np.float32)]


def model_targets(data) -> list[np.ndarray]:
    """Targets for the three outputs: a placeholder for ``object`` (no loss), amplitudes for
    the MAE term and counts (``X**2``) for the Poisson NLL."""
    X = np.asarray(data.X, np.float32)
    return [np.zeros((X.shape[0], 1), np.float32), X, np.square(X)]


def _model_config_for(data, base: ModelConfig | None) -> ModelConfig:
    N, C = data.X.shape[1], data.X.shape[-1]
    gridsize = int(round(C**0.5))
    if gridsize**2 != C:
        raise ValueError(f"data has C={C} channels, not a square gridsize**2")
    if base is None:
        return ModelConfig(N=N, gridsize=gridsize)
    if (base.N, base.gridsize) != (N, gridsize):
        raise ValueError(f"model config is N={base.N}, gridsize={base.gridsize} but the data is "
                         f"N={N}, gridsize={gridsize}")
    return base


def _loss_schedule(autoencoder, nepochs: int) -> list:
    """A callback moving a curriculum loss (one with ``set_progress``, see
    :mod:`ptycho.losses`) to ``epoch / nepochs`` at the start of each epoch; [] otherwise."""
    fn = getattr(autoencoder, "ptycho_loss_fn", None)
    set_progress = getattr(fn, "set_progress", None)
    if set_progress is None:
        return []
    set_progress(0.0)
    return [keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: set_progress(epoch / max(1, nepochs)))]


def _check_dose(training: TrainingConfig, data) -> None:
    """The loss is divided by the expected counts per pixel, ``training.nphotons / N**2``
    (:mod:`ptycho.losses`): a config whose dose is not the data's scales it wrongly, and
    silently (round 11: a 1e4 data set trained with 1e9's scale scored 0.50 against 0.80)."""
    have = getattr(data, "nphotons", None)
    if have is not None and not math.isclose(training.nphotons, float(have), rel_tol=1e-6):
        raise ValueError(f"training.nphotons = {training.nphotons:g} but the data were simulated "
                         f"at {float(have):g} photons per pattern; the loss is scaled by the "
                         f"dose: pass training.replace(nphotons={float(have):g})")


def seen_as_fitted(data, training: TrainingConfig):
    """Another data set (a test scan) as a model trained with ``training`` must see it: with
    ``holdout``, the kept part of its counts (the model's intensity scale is the kept part's;
    drawn with ``seed + 1``, independently of the training split), else ``data`` itself."""
    if not training.holdout:
        return data
    return holdout.split_counts(data, training.holdout, training.seed + 1)[0]


def train(train_data, intensity_scale: float | None = None, model_instance=None,
          training: TrainingConfig | None = None, model_config: ModelConfig | None = None,
          verbose: int = 0, checkpoint_dir: str | Path | None = None,
          validation_data=None, log_prefix: str = "", callbacks=()) -> TrainResult:
    """Fit the model to ``train_data`` (a :class:`ptycho.simulation.DiffractionData`).

    Args:
        train_data: measured amplitudes ``X`` and ``coords_relative``.
        intensity_scale: initial amplitude scale of a newly built model (default: the data's).
        model_instance: an autoencoder from the factories to train further; it is (re)compiled
            with ``training``. None builds a fresh compiled model for the data's N and gridsize.
        training: epochs, batch size, losses, learning rate, seed (default ``TrainingConfig()``
            with the data's ``nphotons``); its ``nphotons`` must be the data's (``ValueError``
            otherwise: the loss is scaled by the dose). With ``holdout``, the model is fitted
            to the kept part of the counts at its own dose and intensity scale (a given
            ``model_instance``'s scale is set to it), and ends with the weights of the epoch
            that best predicts the held-out part (:mod:`ptycho.holdout`).
        model_config: options of a newly built model (N and gridsize must match the data).
        checkpoint_dir: if given, the trained model is saved there (``model_manager``).
        validation_data: a :class:`DiffractionData` scored with the same loss after each epoch
            (``val_loss`` in the history); None skips it.
        log_prefix: put before each per-epoch log line (:class:`EpochLog`).
        callbacks: more Keras callbacks for ``fit`` (run after :class:`EpochLog`).

    The history holds, per epoch, ``loss`` (and ``val_loss``, and with ``holdout``
    ``holdout_loss``), ``lr`` and ``epoch_s``.
    """
    if training is None:
        training = TrainingConfig(nphotons=float(train_data.nphotons))
    cfg = _model_config_for(train_data, model_config) if model_instance is None else None
    _check_dose(training, train_data)
    keras.utils.set_random_seed(training.seed)
    stopper = None
    if training.holdout:
        train_data, held = holdout.split_counts(train_data, training.holdout, training.seed)
        if validation_data is not None:
            validation_data = seen_as_fitted(validation_data, training)
        training = training.replace(nphotons=float(train_data.nphotons))
        stopper = holdout.HeldOutStopping(model_inputs(train_data), held, training.holdout,
                                          training.patience)
        if intensity_scale is not None:
            intensity_scale *= math.sqrt(1.0 - training.holdout)
    if model_instance is None:
        scale = train_data.intensity_scale if intensity_scale is None else intensity_scale
        models = model_lib.build_models(cfg, probe=train_data.probe, intensity_scale=scale)
        autoencoder = models.autoencoder
    else:
        autoencoder = model_instance
        if stopper is not None:  # the kept photons' scale; reset_weights restores the built one
            autoencoder.get_layer("intensity_scaler").set_scale(train_data.intensity_scale)
    steps = -(-train_data.B // training.batch_size)
    model_lib.compile_model(autoencoder, training, steps_per_epoch=steps)
    validation = None if validation_data is None else (model_inputs(validation_data),
                                                       model_targets(validation_data))
    start = time.perf_counter()
    fit = autoencoder.fit(model_inputs(train_data), model_targets(train_data),
                          batch_size=training.batch_size, epochs=training.nepochs,
                          shuffle=True, verbose=verbose, validation_data=validation,
                          callbacks=[*_loss_schedule(autoencoder, training.nepochs),
                                     *([stopper] if stopper else []), EpochLog(log_prefix),
                                     *callbacks])
    train_s = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    if checkpoint_dir is not None:
        from .model_manager import save_model

        save_model(checkpoint_dir, autoencoder, training=training)
    return TrainResult(autoencoder, history, train_s, training, fit_data=train_data,
                       validation_data=validation_data,
                       best_epoch=None if stopper is None else stopper.best_epoch)


def eval(test_data, model, batch_size: int = 64) -> np.ndarray:  # noqa: A001 - PtychoPINN name
    """Reconstructed object patches ``(B, N, N, 1)`` complex64, one per sample of
    ``test_data``, centred on the sample's group centre. ``model`` is an autoencoder or a
    ``diffraction_to_obj`` model."""
    out = model.predict(model_inputs(test_data), batch_size=batch_size, verbose=0)
    obj = out[0] if isinstance(out, (list, tuple)) else out
    return np.asarray(obj, np.complex64)


def group_centres(data) -> np.ndarray:
    """``(B, 2)`` float64: each sample's mean scan position ``(row, col)`` (object pixels)."""
    return np.asarray(data.coords, np.float64)[:, 0, :, :].mean(axis=-1)


def train_eval(train_data, test_data, training: TrainingConfig | None = None,
               model_instance=None, model_config: ModelConfig | None = None) -> dict:
    """Train on ``train_data`` then reconstruct ``test_data``, stitch and score it.

    Returns a dict with ``result`` (:class:`TrainResult`), ``patches`` (reconstructed,
    ``(B, N, N, 1)``), ``stitched`` (complex object estimate), ``region`` (scored slices) and
    ``metrics`` (amp/phase mae, mse, psnr, ssim, frc50).
    """
    from .evaluation import evaluate_reconstruction

    result = train(train_data, model_instance=model_instance, training=training,
                   model_config=model_config)
    test_data = seen_as_fitted(test_data, result.training)
    patches = eval(test_data, result.autoencoder)
    metrics, stitched, region = evaluate_reconstruction(patches, group_centres(test_data),
                                                        test_data.obj)
    return {"result": result, "patches": patches, "stitched": stitched, "region": region,
            "metrics": metrics}
