"""The Dask task of one unit attempt: what runs on the Dask worker that takes the unit.

Part of the ``dask`` backend (see :mod:`runner.dask_executor` for the whole picture); kept apart
so that the orchestrator side and the worker side each read on their own. Imports nothing from
``distributed`` at module level (``get_worker`` is imported inside the task).

Records stream back: while the unit's process runs in a scratch directory, every supervision
poll (``poll_s``) looks for records of this attempt that appeared or changed there and sends each
one to the orchestrator as a Dask event (:meth:`distributed.Worker.log_event` on the run's topic,
tagged with the task's key and this worker's address), so an arm's record reaches ``<out>/``
about when the arm finishes, not when the unit does. The end-of-unit payload still carries every
record of the attempt (a lost event costs nothing but latency).

This module is also the Dask *preload* of the workers of a cluster the backend starts itself
(:func:`dask_setup`: those worker processes ignore SIGINT, so a terminal's Ctrl-C is left to the
orchestrator, which cancels the units and closes the cluster) and do not log the heartbeat
failure that ``distributed`` reports when a worker closes while a heartbeat is in flight (the
closing worker shuts its own connection under it; :class:`HeartbeatTeardownFilter`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .attempt import AttemptJob, AttemptResult, run_worker_process
from .paths import OutputPaths
from .resources import worker_env
from .store import atomic_write_json, read_json

__all__ = ["run_unit_on_dask_worker", "dask_setup", "HeartbeatTeardownFilter", "LOG_LIMIT_BYTES",
           "WORKER_ENV"]

#: At most this much of an attempt's log is shipped back.
LOG_LIMIT_BYTES = 1 << 20
#: Environment variable naming the Dask worker a unit runs on (set for the unit's process).
WORKER_ENV = "PTYCHO_SWEEP_DASK_WORKER"


# -- on the Dask worker ----------------------------------------------------------------------
def dask_setup(worker: Any) -> None:
    """Dask preload hook (``preload=["runner.dask_task"]``): this worker process ignores
    SIGINT (a Ctrl-C in the orchestrator's terminal reaches its whole process group), and its
    teardown does not print the heartbeat race (:class:`HeartbeatTeardownFilter`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(HeartbeatTeardownFilter(worker))


class HeartbeatTeardownFilter(logging.Filter):
    """Drops what ``Worker.heartbeat`` logs while its worker is closing.

    Closing a worker sets its status to ``closing`` and then closes its connections; a
    heartbeat in flight at that moment fails with ``CommClosedError`` and distributed logs it at
    ERROR with a traceback ("Failed to communicate with scheduler during heartbeat"), which a
    user saw after some Ctrl-C of a run with a cluster started here. A heartbeat failure of a
    worker that is not closing (a lost scheduler) is still logged."""

    CLOSING = frozenset({"closing", "closing_gracefully", "closed"})

    def __init__(self, worker: Any):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName != "heartbeat":
            return True
        status = getattr(self.worker, "status", None)
        return getattr(status, "name", status) not in self.CLOSING


class _RecordStream:
    """Sends each record of this attempt that appears (or changes) in a scratch ``records/``
    directory to the orchestrator as an event on ``topic``."""

    def __init__(self, worker: Any, topic: str | None, key: str, records_dir: Path,
                 attempt_id: str):
        self.worker, self.topic, self.key = worker, topic, key
        self.records_dir, self.attempt_id = records_dir, attempt_id
        self._seen: dict[str, tuple[int, int]] = {}

    def poll(self) -> None:
        if not self.topic:
            return
        for p in sorted(self.records_dir.glob("*.json")):
            try:
                st = p.stat()
                if self._seen.get(p.name) == (st.st_ino, st.st_mtime_ns):
                    continue
                rec = read_json(p)
            except (OSError, ValueError):
                continue
            self._seen[p.name] = (st.st_ino, st.st_mtime_ns)
            if not isinstance(rec, dict) or rec.get("attempt_id") != self.attempt_id:
                continue
            with contextlib.suppress(Exception):  # not serialisable: it ships at the end
                self.worker.log_event(self.topic, {"key": self.key, "record": rec,
                                                   "worker": self.worker.address})


_SLOT_LOCK = threading.Lock()
_BUSY_SLOTS: set[int] = set()


@contextlib.contextmanager
def _worker_slot() -> Iterator[int]:
    """The smallest concurrency slot free in this Dask worker process (0, 1, ...)."""
    with _SLOT_LOCK:
        slot = next(i for i in itertools.count() if i not in _BUSY_SLOTS)
        _BUSY_SLOTS.add(slot)
    try:
        yield slot
    finally:
        with _SLOT_LOCK:
            _BUSY_SLOTS.discard(slot)


def _read_tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = f"[runner: first {size - limit} bytes of this attempt's log not shipped]\n" + text
    return text


def _collect(paths: OutputPaths, unit_id: str, attempt_id: str,
             max_artifact_bytes: int) -> dict[str, Any]:
    """What a scratch run produced: records of this attempt, outcome, artifacts, notes."""
    records = []
    for p in sorted(paths.records_dir.glob("*.json")):
        try:
            rec = read_json(p)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("attempt_id") == attempt_id:
            records.append(rec)
    try:
        outcome = read_json(paths.outcome(unit_id))
    except (OSError, ValueError):
        outcome = None
    artifacts: dict[str, bytes] = {}
    notes: list[str] = []
    total = 0
    art_dir = paths.artifact_dir(unit_id)
    for f in sorted(art_dir.rglob("*")) if art_dir.is_dir() else []:
        if not f.is_file() or f.name.startswith(".tmp-"):
            continue
        size = f.stat().st_size
        rel = f.relative_to(art_dir).as_posix()
        if total + size > max_artifact_bytes:
            notes.append(f"runner: artifact {rel} ({size / 2**20:.1f} MiB) not shipped back: "
                         f"over max_artifact_mb per unit (use --shared-dir for large files)")
            continue
        artifacts[rel] = f.read_bytes()
        total += size
    return {"records": records, "outcome": outcome, "artifacts": artifacts, "notes": notes}


def run_unit_on_dask_worker(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The Dask task of one unit attempt (runs in a Dask worker thread; see the module
    docstring). Returns ``{"result": AttemptResult, "worker": address, "records": [...],
    "outcome": dict|None, "log": str, "artifacts": {relpath: bytes}}``."""
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    address = worker.address
    unit_id = payload["unit_id"]
    unit = dict(payload["unit"])
    cancelled = threading.Event()

    stream: _RecordStream | None = None

    def on_poll() -> None:
        ts = worker.state.tasks.get(key)  # the orchestrator cancelled the future, or went away
        if ts is None or ts.state not in ("executing", "long-running"):
            cancelled.set()
        if stream is not None:
            stream.poll()

    shipped: dict[str, Any] = {"worker": address, "records": [], "outcome": None, "log": "",
                               "artifacts": {}}
    scratch: Path | None = None
    try:
        if payload["shared_dir"]:
            unit_json = Path(payload["unit_json"])
            try:
                visible = read_json(unit_json).get("attempt_id") == unit["attempt_id"]
            except (OSError, ValueError, AttributeError):
                visible = False
            if not visible:
                shipped["result"] = AttemptResult(unit_id, None, None, error=(
                    f"--shared-dir: the output directory {unit['paths']['out_dir']} is not "
                    f"visible on Dask worker {address} (it cannot read this attempt's "
                    f"{unit_json}); run without --shared-dir to ship results back"))
                return shipped
            paths = OutputPaths(unit["paths"]["out_dir"])
        else:
            scratch = Path(tempfile.mkdtemp(prefix=f"ptycho-unit-{unit_id}-",
                                            dir=worker.local_directory))
            paths = OutputPaths(scratch / "out")
            unit.update(paths=paths.unit_paths(unit_id),
                        artifact_dir=str(paths.artifact_dir(unit_id)))
            paths.artifact_dir(unit_id).mkdir(parents=True)
            unit_json = paths.unit_json(unit_id)
            atomic_write_json(unit_json, unit)
            stream = _RecordStream(worker, payload.get("stream_topic"), key,
                                   paths.records_dir, unit["attempt_id"])
        cwd = Path(payload["cwd"])
        if not cwd.is_dir():
            cwd = scratch if scratch is not None else Path(worker.local_directory)
        nthreads = int(getattr(getattr(worker, "state", None), "nthreads", 0)
                       or getattr(worker, "nthreads", 1) or 1)
        concurrent = max(1, min(int(payload["n_jobs"]),
                                int(payload["host_slots"].get(address, nthreads))))
        index = worker.name if isinstance(worker.name, int) and worker.name >= 0 else 0
        log_path = paths.worker_log(unit_id)
        with _worker_slot() as local_slot:
            slot = index * nthreads + local_slot
            env = worker_env(n_jobs=concurrent, slot=slot, cwd=cwd)
            extra = [p for p in payload["pythonpath"] if p and os.path.isdir(p)]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
                [p for p in env["PYTHONPATH"].split(os.pathsep) if p] + extra))
            env[WORKER_ENV] = address
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as fh:
                where = "shared output directory" if scratch is None else f"scratch {scratch}"
                fh.write(f"\n===== runner: unit {unit_id} attempt {unit['attempt']} on Dask "
                         f"worker {address} (host {socket.gethostname()}, pid {os.getpid()}, "
                         f"slot {slot}, {where}) =====\n".encode())
            job = AttemptJob(unit_id, unit_json, log_path, float(payload["timeout_s"]), cwd,
                             on_poll=on_poll,
                             arm_timeout_s=payload.get("arm_timeout_s"),
                             memory_limit_mb=payload.get("memory_limit_mb"))
            shipped["result"] = run_worker_process(
                job, env, grace_s=payload["grace_s"], poll_s=payload["poll_s"],
                cancelled=cancelled)
        if scratch is not None:
            got = _collect(paths, unit_id, unit["attempt_id"], payload["max_artifact_bytes"])
            shipped.update(records=got["records"], outcome=got["outcome"],
                           artifacts=got["artifacts"])
            text = _read_tail(log_path, LOG_LIMIT_BYTES)
            shipped["log"] = text + "".join(f"{n}\n" for n in got["notes"])
        return shipped
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
