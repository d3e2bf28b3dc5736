"""The default sweep task: train and score the physics-informed model at one
``(N, gridsize, nphotons)`` for each arm (loss preset x seed).

Runs inside a fresh worker process (see :mod:`runner.worker`). Per unit it simulates the train
and test data once and builds the model once through the lazy core; per arm it resets the
weights and the optimiser, trains, reconstructs the test object, scores it against the ground
truth and yields the arm's record, which the worker writes at once. Each arm also leaves
``<artifact_dir>/<arm_id>.npz`` with the stitched reconstruction and the ground truth on the
scored region (see :func:`score`). Each epoch logs one line to the unit's ``worker.log``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runner.store import atomic_write_bytes

__all__ = ["run_unit", "score", "score_patches", "limit_threads", "ILLUM_SCORES"]

#: The scores (:data:`ptycho.scores.SCORE_KEYS`) also given for the illumination-weighted
#: stitching, as ``<key>_illum`` columns (declared in :data:`runner.schema.METRICS`).
ILLUM_SCORES = ("amp_norm_ssim", "amp_frc50_px", "phase_plane_ssim")


def limit_threads(threads: int | None, interop: int | None) -> None:
    """Give TensorFlow the worker's thread budget, as the runner decided it (set before any op
    runs; the simulation gets ``threads`` too). The benchmarks set theirs here too."""
    if not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    if interop:
        tf.config.threading.set_inter_op_parallelism_threads(interop)


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Compressed ``.npz`` written whole or not at all (the runner's atomic write)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def score(model, data) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Reconstruct ``data`` with ``model``, then :func:`score_patches`."""
    from ptycho import train_pinn

    return score_patches(train_pinn.eval(data, model), data)


def score_patches(patches, data) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Stitch reconstructed object patches ``(B, N, N, 1)`` (one per sample of ``data``, at its
    group centre) and score them against ``data.obj``.

    Returns the metrics (:data:`ptycho.evaluation.METRIC_KEYS` and
    :data:`ptycho.scores.SCORE_KEYS`, plus :data:`ILLUM_SCORES` with the suffix ``_illum``:
    the same scores on the same region of a second stitching, every pixel of each patch's
    central ``N/2`` window weighted by the illumination its group received,
    :func:`ptycho.stitching.illumination`, where the first uses ``N/4`` windows that tile
    without overlap) and the arrays saved as the arm's ``.npz``: the stitched
    reconstruction (``amplitude``, ``phase`` after removing the global phase offset; the
    illumination-weighted one as ``amplitude_illum``, ``phase_illum``) and the ground truth
    (``true_amplitude``, ``true_phase``) on the scored region, ``(H, W)`` float32.
    """
    from ptycho import train_pinn
    from ptycho.evaluation import evaluate_reconstruction, remove_global_phase
    from ptycho.scores import upstream_scores
    from ptycho.stitching import illumination, stitch_patches

    centres = train_pinn.group_centres(data)
    metrics, stitched, region = evaluate_reconstruction(patches, centres, data.obj)
    truth = data.obj[region]
    estimate = remove_global_phase(stitched[region], truth)
    metrics.update(upstream_scores(estimate, truth))
    lit, _ = stitch_patches(patches, centres, data.obj.shape,
                            weights=illumination(data.probe, data.coords_relative))
    lit = remove_global_phase(lit[region], truth)
    lit_scores = upstream_scores(lit, truth)
    metrics.update({f"{key}_illum": lit_scores[key] for key in ILLUM_SCORES})
    arrays = {"amplitude": np.abs(estimate), "phase": np.angle(estimate),
              "amplitude_illum": np.abs(lit), "phase_illum": np.angle(lit),
              "true_amplitude": np.abs(truth), "true_phase": np.angle(truth)}
    return metrics, {k: v.astype(np.float32) for k, v in arrays.items()}


def run_unit(unit) -> Iterator[dict[str, Any]]:
    """Yield one record per arm of ``unit`` (a :class:`runner.unit.Unit`).

    Record keys: ``arm_id``; the metrics of :func:`score` on the scan named by
    ``simulation.reconstruct`` (``"same"``: the training scan, ``"new"``: the test scan of
    another object; with ``training.holdout``, the kept part of its counts, as the model was
    fitted), and ``reconstruct`` itself; ``feature_scale`` (the object's length
    multiplier at this ``N``, ``SimulationConfig.feature_scale_for``); ``final_loss`` (the
    training loss of the weights scored, in the units of its loss, see
    :data:`ptycho.losses.LOSSES`: NLL and MAE values are not comparable) and ``final_val_loss``
    (the same loss on the test scan); with ``training.holdout``, ``holdout_loss`` (the
    held-out photons' Poisson NLL of the weights scored, in the ``"nll"`` loss's units: it
    compares arms fitted to the same draw, i.e. the same dose, seed and fraction, whatever
    their loss or regulariser) and ``best_epoch`` (the epoch whose weights were scored; both
    missing without holdout), and ``epochs_run`` (fewer than ``nepochs`` when ``patience``
    stopped it);
    ``train_s`` (seconds in ``fit``), ``sim_s`` and ``build_s`` (the unit's one-off simulation
    and model-building seconds, repeated on each arm); ``n_train``, ``n_test`` (samples);
    ``intensity_scale`` (amplitude scale); the training settings ``nepochs``, ``batch_size``,
    ``learning_rate``, ``lr_schedule``, ``realspace_weight`` and ``complex_tv_weight``
    (the TV priors' weights, on the amplitude and on the complex object),
    ``holdout`` (the fraction of photons held out); the TensorFlow thread counts it ran with
    (``tf_intra_threads``, ``tf_inter_threads``: the runner's budget); and ``history``, one
    dict per epoch (``epoch``, ``loss``, ``val_loss``, ``lr``, ``epoch_s``), which the runner
    writes to the sweep's history table.
    """
    limit_threads(unit.threads, unit.interop_threads)
    import tensorflow as tf

    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.simulation import simulate_unit

    model_cfg = unit.model_config()
    sim_cfg = unit.simulation_config()
    start = time.perf_counter()
    train_data, test_data = simulate_unit(model_cfg, unit.nphotons, sim_cfg, workers=unit.threads)
    sim_s = time.perf_counter() - start
    start = time.perf_counter()
    models = model_lib.build_models(model_cfg, probe=train_data.probe,
                                    intensity_scale=train_data.intensity_scale)
    build_s = time.perf_counter() - start
    for arm in unit.arms:
        training = unit.training_config(arm)
        model_lib.reset_weights(models.autoencoder, training.seed)
        result = train_pinn.train(train_data, model_instance=models.autoencoder,
                                  training=training, validation_data=test_data,
                                  log_prefix=f"{arm.arm_id} ({arm.label()}): ")
        # The scan as the model saw it (with holdout: the kept part of its counts).
        scored = result.fit_data if sim_cfg.reconstruct == "same" else result.validation_data
        metrics, arrays = score(models.autoencoder, scored)
        _save_npz_atomic(unit.artifact_path(arm), **arrays)
        scaler = models.autoencoder.get_layer("intensity_scaler")
        yield {
            "arm_id": arm.arm_id,
            "reconstruct": sim_cfg.reconstruct,
            "feature_scale": sim_cfg.feature_scale_for(model_cfg.N),
            **metrics,
            "final_loss": result.final_loss,
            "final_val_loss": result.at_model("val_loss"),
            "holdout_loss": (result.at_model("holdout_loss") if training.holdout else None),
            "holdout": training.holdout,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history["loss"]),
            "train_s": result.train_s,
            "sim_s": sim_s,
            "build_s": build_s,
            "n_train": int(train_data.B),
            "n_test": int(test_data.B),
            "intensity_scale": float(np.exp(scaler.log_scale.numpy())),
            "nepochs": training.nepochs,
            "batch_size": training.batch_size,
            "learning_rate": training.learning_rate,
            "lr_schedule": training.lr_schedule,
            "realspace_weight": training.realspace_weight,
            "complex_tv_weight": training.complex_tv_weight,
            "tf_intra_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "history": result.epochs(),
        }
