"""The default sweep task: train and score the physics-informed model at one
``(N, gridsize, nphotons)`` for each arm (loss preset x seed).

Runs inside a fresh worker process (see :mod:`runner.worker`). Per unit it simulates the train
and test data once and builds the model once through the lazy core; per arm it resets the
weights and the optimiser, trains, reconstructs the test object, scores it against the ground
truth and yields the arm's record, which the worker writes at once. Each arm also leaves
``<artifact_dir>/<arm_id>.npz`` with the stitched reconstruction (``amplitude``, ``phase``
after removing the global phase offset) and the ground truth (``true_amplitude``,
``true_phase``) on the scored region, all ``(H, W)`` float32.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runner.store import atomic_write_bytes

__all__ = ["run_unit"]


def _limit_threads(threads: int | None) -> None:
    """Give TensorFlow the worker's share of the cores (set before any op runs)."""
    if not threads:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Compressed ``.npz`` written whole or not at all (the runner's atomic write)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def run_unit(unit) -> Iterator[dict[str, Any]]:
    """Yield one record per arm of ``unit`` (a :class:`runner.unit.Unit`).

    Record keys: ``arm_id``, the ten amplitude/phase metrics of
    :func:`ptycho.evaluation.evaluate`, ``final_loss`` (last epoch's training loss),
    ``train_s`` (seconds in ``fit``), ``sim_s`` and ``build_s`` (the unit's one-off
    simulation and model-building seconds, repeated on each arm), ``n_train`` and ``n_test``
    (samples), ``intensity_scale`` (learnt amplitude scale).
    """
    _limit_threads(unit.threads)
    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.evaluation import evaluate_reconstruction, remove_global_phase
    from ptycho.simulation import simulate_unit

    model_cfg = unit.model_config()
    start = time.perf_counter()
    train_data, test_data = simulate_unit(model_cfg, unit.nphotons, unit.simulation_config())
    sim_s = time.perf_counter() - start
    start = time.perf_counter()
    models = model_lib.build_models(model_cfg, probe=train_data.probe,
                                    intensity_scale=train_data.intensity_scale)
    build_s = time.perf_counter() - start
    centres = train_pinn.group_centres(test_data)
    for arm in unit.arms:
        training = unit.training_config(arm)
        model_lib.reset_weights(models.autoencoder, training.seed)
        result = train_pinn.train(train_data, model_instance=models.autoencoder,
                                  training=training)
        patches = train_pinn.eval(test_data, models.autoencoder)
        metrics, stitched, region = evaluate_reconstruction(patches, centres, test_data.obj)
        truth = test_data.obj[region]
        estimate = remove_global_phase(stitched[region], truth)
        _save_npz_atomic(unit.artifact_path(arm),
                         amplitude=np.abs(estimate).astype(np.float32),
                         phase=np.angle(estimate).astype(np.float32),
                         true_amplitude=np.abs(truth).astype(np.float32),
                         true_phase=np.angle(truth).astype(np.float32))
        scaler = models.autoencoder.get_layer("intensity_scaler")
        yield {
            "arm_id": arm.arm_id,
            **metrics,
            "final_loss": result.final_loss,
            "train_s": result.train_s,
            "sim_s": sim_s,
            "build_s": build_s,
            "n_train": int(train_data.B),
            "n_test": int(test_data.B),
            "intensity_scale": float(np.exp(scaler.log_scale.numpy())),
        }
