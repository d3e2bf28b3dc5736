"""The record schema: every column of an arm's record, declared once, with its table dtype.

A record (``records/<arm_id>.json``) and a row of ``metrics.parquet`` have the same columns, in
groups:

* :data:`IDENTITY`: which arm (sweep, ids, grid values, loss, seed);
* :data:`OUTCOME`: how it ended (``status``, one of :data:`STATUSES`, the ``error``, which
  attempt, the worker's exit code and log tail when the runner wrote the record itself);
* :data:`RESOURCES`: process, wall time and each arm's own peak memory;
* :data:`PROVENANCE`: when, where and with which code and settings it ran (and
  :data:`PLACEMENT`: the cluster worker, on Dask);
* :data:`METRICS`: the default task's scores and losses (a custom task adds its own columns,
  which follow, sorted by name).

Dtypes are fixed so that two sweeps' tables concatenate without surprises: ids and free text
are pandas ``string`` (never a float column of NaN when all are missing), ``status`` is a
categorical with the fixed categories :data:`STATUSES`, integers that may be missing are the
nullable ``Int64``. Adding a column means adding one entry here. This module imports nothing
heavy (the worker uses it); :func:`table_dtype` builds pandas dtypes lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STATUSES", "IDENTITY", "OUTCOME", "RESOURCES", "PROVENANCE", "PROVENANCE_SETTINGS",
           "ARM_SETTINGS", "PLACEMENT",
           "METRICS", "DTYPES", "COLUMNS", "HISTORY_IDENTITY", "table_dtype"]

#: Every arm ends in exactly one of these. ``oom``: out of memory (MemoryError in the task, or
#: killed for exceeding the unit's memory limit); like ``failed`` and ``timeout`` it is not
#: retried within a run (only ``crashed`` is), but is on the next run.
STATUSES = ("ok", "failed", "timeout", "crashed", "oom")

#: Which arm: the sweep, the arm's and its unit's ids, the grid values, loss and seed.
IDENTITY = {
    "sweep": "string", "arm_id": "string", "unit_id": "string", "N": "int64",
    "gridsize": "int64", "nphotons": "float64", "loss": "string", "seed": "int64",
}
#: How the arm ended. ``exit_code`` and ``log_tail`` only when the runner recorded the arm
#: itself (timeout, crash, out of memory).
OUTCOME = {
    "status": "status", "error": "string", "attempt": "Int64", "attempt_id": "string",
    "exit_code": "Int64", "log_tail": "string",
}
#: The worker process, the arm's wall time (seconds) and its own peak RSS (MiB).
RESOURCES = {"pid": "Int64", "wall_s": "float64", "train_s": "float64",
             "peak_rss_mb": "float64"}
#: When the arm ran (UTC, ISO 8601), where, with which code and libraries, and the training
#: settings it used (filled by :func:`runner.provenance.arm_provenance`; a task's own value
#: of the settings wins). Strings are empty when unknown.
PROVENANCE = {
    "started_at": "string", "ended_at": "string", "host": "string", "cpu_model": "string",
    "package_version": "string", "git_commit": "string", "python_version": "string",
    "numpy_version": "string", "tensorflow_version": "string",
    "nepochs": "Int64", "batch_size": "Int64", "n_train": "Int64", "learning_rate": "float64",
    "holdout": "float64", "realspace_weight": "float64", "complex_tv_weight": "float64",
}
#: The provenance columns a task may set itself (the settings it really used), each with where
#: the runner reads it in the unit's settings otherwise: column -> (section, key).
PROVENANCE_SETTINGS = {
    "nepochs": ("training", "nepochs"), "batch_size": ("training", "batch_size"),
    "n_train": ("simulation", "n_train"), "learning_rate": ("training", "learning_rate"),
    "holdout": ("training", "holdout"), "realspace_weight": ("training", "realspace_weight"),
    "complex_tv_weight": ("training", "complex_tv_weight"),
}
#: The training settings a sweep may vary between the arms of one unit (``[arms]`` keys beside
#: ``loss`` and ``seed``): those of :data:`PROVENANCE_SETTINGS`, so every arm's record names
#: its value. The model core is built once per unit; these change only how an arm trains.
ARM_SETTINGS = tuple(col for col, (section, _) in PROVENANCE_SETTINGS.items()
                     if section == "training")
#: Where a cluster backend ran the arm (the Dask worker's address; NA for local runs).
PLACEMENT = {"dask_worker": "string"}
#: The default task's metrics (``experiments.dose_response``), in the order reports show them:
#: upstream-style scores with their constant-image baselines, resolutions in pixels and the
#: Pearson correlations with the truth (a constant image's is 0); three of them again for the
#: illumination-weighted stitching (``*_illum``, same region and baselines); the raw
#: scores, the final losses (in each loss's own units: not comparable across losses), and the
#: stopping rule: the held-out photons' Poisson NLL of the weights scored, the epoch scored and
#: the epochs run (the fraction of photons held out is a setting: :data:`PROVENANCE`).
METRICS = {name: "float64" for name in (
    "amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_psnr", "amp_norm_psnr_baseline",
    "amp_frc50_px", "phase_plane_ssim", "phase_plane_ssim_baseline", "phase_plane_psnr",
    "phase_plane_psnr_baseline", "phase_frc50_px", "amp_norm_r", "phase_plane_r",
    "amp_norm_ssim_illum", "amp_frc50_px_illum", "phase_plane_ssim_illum",
    "amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "amp_frc50", "phase_frc50",
    "amp_mae", "phase_mae", "amp_mse", "phase_mse", "final_loss", "final_val_loss",
    "holdout_loss",
)} | {"best_epoch": "Int64", "epochs_run": "Int64"}

#: Every declared column and its dtype name (``"status"``: the categorical of STATUSES).
DTYPES: dict[str, str] = {**IDENTITY, **OUTCOME, **RESOURCES, **PROVENANCE, **PLACEMENT,
                          **METRICS}
#: Leading columns of every results table, in this order; a table has them even when no record
#: does (a custom task's table carries no empty METRICS columns: those lead only when present).
COLUMNS = (*IDENTITY, "status", "error", *RESOURCES, *PROVENANCE)
#: Columns copied from an arm's record onto each of its history rows: which arm, and the
#: settings that may tell arms of one unit apart.
HISTORY_IDENTITY = (*(k for k in IDENTITY if k != "unit_id"), *ARM_SETTINGS)


def table_dtype(column: str) -> Any:
    """The pandas dtype of a declared column (imports pandas)."""
    import pandas as pd

    name = DTYPES[column]
    return pd.CategoricalDtype(list(STATUSES)) if name == "status" else name
