"""The one place that names every file of a sweep's output directory.

Layout of ``<out>/``::

    sweep.toml                      copy of the sweep that ran (written after validation)
    .lock                           held (flock) by the orchestrator while it runs
    records/<arm_id>.json           one record per arm, always written whole (atomic rename)
    units/<unit_id>/unit.json       everything the worker needs (the only parent -> child channel)
    units/<unit_id>/worker.log      the worker's stdout, stderr and log (appended per attempt)
    units/<unit_id>/outcome.json    the worker's tagged outcome: ok or failed with traceback
    units/<unit_id>/artifacts/      files the task writes (e.g. ``<arm_id>.npz``)
    metrics.parquet, metrics.csv    all records consolidated into one table
    history.parquet, history.csv    per-epoch training history: one row per arm and epoch
    aggregate.csv                   ``ptycho-sweep aggregate``: mean/std over seeds (long form)
    dose_response.png               ``ptycho-sweep plot``: SSIM/PSNR/FRC50 against dose
    reconstructions.png             ``ptycho-sweep plot``: reconstructed amplitude/phase panel
    training_curves.png             ``ptycho-sweep plot``: training/validation loss per epoch

No other module builds these paths.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OutputPaths"]


class OutputPaths:
    """Names the files of one sweep output directory ``root`` (nothing is created here)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"OutputPaths({str(self.root)!r})"

    # -- sweep level -------------------------------------------------------------------------
    @property
    def sweep_toml(self) -> Path:
        return self.root / "sweep.toml"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def record(self, arm_id: str) -> Path:
        return self.records_dir / f"{arm_id}.json"

    @property
    def units_dir(self) -> Path:
        return self.root / "units"

    @property
    def metrics_parquet(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def history_parquet(self) -> Path:
        return self.root / "history.parquet"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def aggregate_csv(self) -> Path:
        return self.root / "aggregate.csv"

    @property
    def dose_response_png(self) -> Path:
        return self.root / "dose_response.png"

    @property
    def reconstructions_png(self) -> Path:
        return self.root / "reconstructions.png"

    @property
    def training_curves_png(self) -> Path:
        return self.root / "training_curves.png"

    # -- unit level --------------------------------------------------------------------------
    def unit_dir(self, unit_id: str) -> Path:
        return self.units_dir / unit_id

    def unit_json(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "unit.json"

    def worker_log(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "worker.log"

    def outcome(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "outcome.json"

    def artifact_dir(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "artifacts"

    def artifact_files(self, pattern: str = "*.npz") -> list[Path]:
        """Existing artifact files of every unit matching ``pattern``, sorted."""
        if not self.units_dir.is_dir():
            return []
        return sorted(self.units_dir.glob(f"*/artifacts/{pattern}"))

    def unit_paths(self, unit_id: str) -> dict[str, str]:
        """The unit's paths as strings, as handed to the worker in ``unit.json``."""
        return {
            "out_dir": str(self.root),
            "records_dir": str(self.records_dir),
            "unit_dir": str(self.unit_dir(unit_id)),
            "unit_json": str(self.unit_json(unit_id)),
            "worker_log": str(self.worker_log(unit_id)),
            "outcome": str(self.outcome(unit_id)),
            "artifact_dir": str(self.artifact_dir(unit_id)),
        }
