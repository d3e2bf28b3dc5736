"""Results of Dask unit attempts written into the output directory, and the error of one that
did not return (the orchestrator's side of the ``dask`` backend, see :mod:`runner.dask_executor`).

Only the orchestrator writes into ``<out>/`` for a scratch-mode attempt: the records streamed
while the unit runs, then what its task returns at the end (log, artifacts, outcome, records),
each with the atomic writes and names of a local worker. A record is written only if it is an
arm of this attempt and differs from the one already written for it (the last one received
wins); every record gets ``dask_worker``, the address of the Dask worker that ran it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import CancelledError
from typing import Any

from .paths import OutputPaths
from .store import atomic_write_bytes, atomic_write_json, read_json

__all__ = ["write_record", "tag_shared", "write_back", "lost_error"]

log = logging.getLogger("runner.dask_executor")


def write_record(unit: Mapping[str, Any], rec: Any, worker: Any,
                 written: dict[str, dict]) -> None:
    """Write one record of this attempt shipped or streamed back (unless the same was
    written already), tagged with the Dask worker that ran it."""
    arm_id = rec.get("arm_id") if isinstance(rec, Mapping) else None
    if arm_id not in {a["arm_id"] for a in unit["arms"]} or \
            rec.get("attempt_id") != unit["attempt_id"]:
        log.warning("unit %s: record for arm %r of attempt %r ignored (not an arm of "
                    "attempt %s)", unit["unit_id"], arm_id,
                    rec.get("attempt_id") if isinstance(rec, Mapping) else None,
                    unit["attempt_id"])
        return
    rec = {**rec, "dask_worker": rec.get("dask_worker") or worker or ""}
    if written.get(arm_id) != rec:
        atomic_write_json(OutputPaths(unit["paths"]["out_dir"]).record(arm_id), rec)
        written[arm_id] = rec


def tag_shared(unit: Mapping[str, Any], worker: Any) -> None:
    """``--shared-dir``: add ``dask_worker`` to the records this attempt wrote itself."""
    paths = OutputPaths(unit["paths"]["out_dir"])
    for arm in unit["arms"]:
        try:
            rec = read_json(paths.record(arm["arm_id"]))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("attempt_id") == unit["attempt_id"] \
                and not rec.get("dask_worker"):
            atomic_write_json(paths.record(arm["arm_id"]), {**rec, "dask_worker": worker})


def write_back(unit: Mapping[str, Any], shipped: Mapping[str, Any],
               written: dict[str, dict]) -> None:
    """Write what a scratch run shipped into the output directory, as a local worker
    would have: log, artifacts, outcome, then the records of this attempt."""
    paths = OutputPaths(unit["paths"]["out_dir"])
    unit_id = unit["unit_id"]
    if shipped.get("log"):
        log_path = paths.worker_log(unit_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(shipped["log"])
    art_dir = paths.artifact_dir(unit_id).resolve()
    for rel, data in shipped.get("artifacts", {}).items():
        target = (art_dir / rel).resolve()
        if art_dir not in target.parents:
            log.warning("unit %s: artifact %r outside the artifact directory ignored",
                        unit_id, rel)
            continue
        atomic_write_bytes(target, data)
    if shipped.get("outcome") is not None:
        atomic_write_json(paths.outcome(unit_id), shipped["outcome"])
    for rec in shipped.get("records", []):
        write_record(unit, rec, shipped.get("worker"), written)


def lost_error(distributed: Any, exc: BaseException) -> str:
    """The error of the arms of an attempt whose Dask task did not return."""
    if isinstance(exc, distributed.KilledWorker):
        last = getattr(exc, "last_worker", None)
        last = getattr(last, "address", last)
        deaths = getattr(exc, "allowed_failures", 0) + 1
        return (f"Dask worker {last} died while running this unit (KilledWorker: "
                f"{deaths} worker(s) lost running it); the unit's process died with it")
    if isinstance(exc, CancelledError):
        return (f"Dask cancelled this unit's task ({type(exc).__name__}: {exc}); the "
                f"scheduler or the connection to it was lost")
    return (f"the Dask task of this unit failed on the worker: {type(exc).__name__}: "
            f"{exc}")
