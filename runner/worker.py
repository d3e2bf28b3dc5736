"""Worker entry point: ``python -m runner.worker <unit.json>`` runs one unit, then exits.

The worker is started by the orchestrator in a fresh interpreter and a new session (its own
process group). On Linux it makes itself a child subreaper (:func:`runner.proctree.
become_subreaper`), so processes its task starts stay in its tree even if they start their own
session and their parent exits; when it exits it kills every descendant left. Limits (timeouts,
memory) are enforced by its supervisor from outside (:mod:`runner.attempt`). It

1. reads ``unit.json`` (the only channel from the orchestrator) into a :class:`runner.Unit`;
2. starts a daemon watchdog thread that kills the worker's process group when its parent (the
   orchestrator, ``PTYCHO_SWEEP_PARENT_PID``) goes away, so a SIGKILLed orchestrator leaves no
   orphans;
3. logs to ``units/<unit_id>/worker.log`` (where the orchestrator also sends stdout/stderr);
   :mod:`faulthandler` dumps the Python stack there on a fatal signal;
4. imports the task and calls ``task(unit)``; consumes the returned iterable lazily and writes
   each record atomically to ``records/<arm_id>.json`` the moment it arrives;
5. writes the tagged outcome ``units/<unit_id>/outcome.json`` (``ok`` or ``failed`` with the
   traceback) atomically, and exits with ``os._exit`` (skipping TensorFlow's slow teardown):
   0 if every arm is ok, 1 if any failed, 2 if ``unit.json`` is unusable. Any other exit (a
   signal, an unexpected status) means the worker crashed; the orchestrator then records the
   arms left without a record as ``crashed``.

Record precedence: the worker sets ``sweep, arm_id, unit_id, N, gridsize, nphotons, loss, seed,
pid, wall_s, peak_rss_mb, attempt, attempt_id`` and the provenance columns ``started_at,
ended_at, host, cpu_model, package_version, git_commit, python_version, numpy_version,
tensorflow_version`` (:mod:`runner.provenance`); a task value for one of these that disagrees
is kept as ``task_<key>`` (with a warning), never silently replacing the worker's. The training
settings (``nepochs, batch_size, ...``: :data:`runner.schema.PROVENANCE_SETTINGS`) are filled
from the unit's settings unless the task returns its own. ``status`` is ``ok`` unless the
task returns ``status="failed"`` or ``"oom"`` (with its ``error`` text) for that arm; any other task
``status`` is kept as ``task_status``. Every other task key is recorded as given (numpy values
are converted to Python values).

``peak_rss_mb`` is the arm's own peak resident memory (:mod:`runner.memory`).

Failures: if the task raises (on the call or while iterating), every arm not yet recorded gets
``status="failed"`` (``"oom"`` for a MemoryError or TensorFlow's ResourceExhaustedError),
``error="ExcType: message"`` and ``error_traceback`` (the last 20 lines). Arms the task never
returned are ``failed`` with an explicit error; a record with an unknown or repeated ``arm_id``
is an error of the task (remaining arms failed). A record that cannot be written (unserialisable
value, full or read-only disk) makes its arm ``failed``, never ``ok``: a smaller record saying
why is written in its place, and if even that fails the arm is left without a record, the
outcome is ``failed`` and the task is stopped (storage is broken).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .memory import ArmPeak, peak_rss_mb
from .paths import OutputPaths
from .proctree import become_subreaper, kill_descendants
from .provenance import arm_provenance, process_provenance, utc_now
from .schema import IDENTITY, PROVENANCE, PROVENANCE_SETTINGS
from .store import atomic_write_json, read_json
from .taskref import import_task
from .unit import Arm, Unit

__all__ = ["main", "execute", "RESERVED_KEYS"]

log = logging.getLogger("runner.worker")

#: Record keys owned by the worker (see the module docstring for precedence).
RESERVED_KEYS = (*IDENTITY, "pid", "wall_s", "peak_rss_mb", "attempt", "attempt_id",
                 *(k for k in PROVENANCE if k not in PROVENANCE_SETTINGS))
#: Statuses a task may give an arm itself.
TASK_STATUSES = ("failed", "oom")
#: Exceptions (by class name, anywhere in the MRO) that mean out of memory.
OOM_ERRORS = ("MemoryError", "ResourceExhaustedError")
TRACEBACK_LINES = 20
PARENT_ENV = "PTYCHO_SWEEP_PARENT_PID"


def _tail(text: str, n: int = TRACEBACK_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


# -- records ---------------------------------------------------------------------------------
def _base_record(unit: Unit, arm: Arm, wall_s: float, peak_mb: float | None = None,
                 started_at: str | None = None) -> dict[str, Any]:
    return {
        **unit.arm_columns(arm), "status": "ok", "error": None, "pid": os.getpid(),
        "wall_s": round(wall_s, 3),
        "peak_rss_mb": peak_rss_mb() if peak_mb is None else peak_mb,
        "attempt": unit.attempt, "attempt_id": unit.attempt_id,
        **arm_provenance(unit, started_at, utc_now(), arm),
    }


def build_record(unit: Unit, arm: Arm, returned: Mapping[str, Any], wall_s: float,
                 peak_mb: float | None = None, started_at: str | None = None) -> dict[str, Any]:
    """Merge a task's dict for ``arm`` with the worker's columns (precedence as documented)."""
    rec = _base_record(unit, arm, wall_s, peak_mb, started_at)
    for key, value in returned.items():
        key = str(key)
        if key == "arm_id":
            continue
        if key == "status":
            if value in TASK_STATUSES:
                rec["status"] = value
                rec["error"] = str(returned.get("error") or f"the task reported this arm "
                                                            f"{value}")
            elif value != "ok":
                rec["task_status"] = value
                log.warning("arm %s: task status %r ignored (only 'ok'/'failed' allowed)",
                            arm.arm_id, value)
        elif key == "error":
            if returned.get("status") not in TASK_STATUSES and value is not None:
                rec["task_error"] = value
        elif key in RESERVED_KEYS:
            if value != rec[key]:
                rec[f"task_{key}"] = value
                log.warning("arm %s: task key %r = %r kept as task_%s (the worker sets %s)",
                            arm.arm_id, key, value, key, key)
        else:
            rec[key] = value
    return rec


def _failed_record(unit: Unit, arm: Arm, wall_s: float, error: str, tb: str | None,
                   peak_mb: float | None = None, started_at: str | None = None,
                   status: str = "failed") -> dict[str, Any]:
    rec = _base_record(unit, arm, wall_s, peak_mb, started_at)
    rec.update(status=status, error=error)
    if tb:
        rec["error_traceback"] = tb
    return rec


# -- the protocol ----------------------------------------------------------------------------
class _StorageBroken(Exception):
    """Not even a failed arm's record could be written: stop the task."""


def _is_oom(exc: BaseException) -> bool:
    return any(c.__name__ in OOM_ERRORS for c in type(exc).__mro__)


def execute(unit: Unit, task: Callable | None = None) -> dict[str, Any]:
    """Run ``unit`` in this process: call the task, write every arm's record and the outcome.

    Returns the outcome dict (also written to ``outcome.json``). ``task`` defaults to
    importing ``unit.task``. KeyboardInterrupt propagates (no records for unfinished arms).
    """
    paths = OutputPaths(unit.paths["out_dir"])
    unit.artifact_dir.mkdir(parents=True, exist_ok=True)
    start = last = time.monotonic()
    last_utc = utc_now()
    peak = ArmPeak()
    pending: dict[str, Arm] = {a.arm_id: a for a in unit.arms}
    statuses: dict[str, str] = {}
    error = tb = None

    def write(rec: dict[str, Any]) -> bool:
        """Write ``rec``; on failure write a failed record saying why. Never raises (but
        KeyboardInterrupt); the arm's status is ``ok`` only if its ok record is on disk."""
        nonlocal last, last_utc
        arm_id = rec["arm_id"]
        try:
            atomic_write_json(paths.record(arm_id), rec)
            written = True
        except Exception as exc:
            why = f"the arm's record could not be written: {type(exc).__name__}: {exc}"
            log.error("arm %s: %s", arm_id, why)
            keep = {k: rec[k] for k in (*RESERVED_KEYS, *PROVENANCE_SETTINGS) if k in rec}
            rec = {**keep, "status": "failed", "error": why}
            try:
                atomic_write_json(paths.record(arm_id), rec)
                written = True
            except Exception as exc2:
                log.error("arm %s: not even its failed record could be written (%s: %s); it "
                          "is left without a record", arm_id, type(exc2).__name__, exc2)
                written = False
        statuses[arm_id] = rec["status"]
        log.info("arm %s (%s): %s in %.1f s, peak RSS %s MiB%s", arm_id,
                 unit.arm(arm_id).label(), rec["status"], rec["wall_s"], rec.get("peak_rss_mb"),
                 f": {rec['error']}" if rec["error"] else "")
        last, last_utc = time.monotonic(), utc_now()
        peak.reset()
        return written

    log.info("unit %s attempt %d: %d arm(s), task %s, pid %d, threads %s", unit.unit_id,
             unit.attempt, len(unit.arms), unit.task, os.getpid(), unit.threads)
    process_provenance()  # now: a commit made while the task trains must not relabel its records
    try:
        if task is None:
            task = import_task(unit.task)
        result = task(unit)
        if result is None or isinstance(result, (Mapping, str, bytes)):
            raise TypeError(f"task {unit.task} returned {type(result).__name__}; it must return "
                            f"or yield one dict per arm")
        it = iter(result)
        try:
            for item in it:
                now = time.monotonic()
                if not isinstance(item, Mapping) or not isinstance(item.get("arm_id"), str):
                    raise TypeError(f"task {unit.task} produced {item!r:.200}; each record must "
                                    f"be a dict with an 'arm_id' string")
                arm_id = item["arm_id"]
                if arm_id in statuses:
                    raise ValueError(f"task {unit.task} returned arm_id {arm_id!r} twice")
                if arm_id not in pending:
                    raise ValueError(f"task {unit.task} returned unexpected arm_id {arm_id!r}; "
                                     f"this attempt's arms are {', '.join(pending) or 'none'}")
                try:
                    rec = build_record(unit, pending.pop(arm_id), item, now - last, peak.read(),
                                       last_utc)
                except Exception as exc:  # e.g. a key whose str() raises
                    rec = _failed_record(unit, unit.arm(arm_id), now - last,
                                         f"the arm's record could not be built: "
                                         f"{type(exc).__name__}: {exc}", None, peak.read(),
                                         last_utc)
                if not write(rec):
                    raise _StorageBroken(f"records cannot be written in {paths.records_dir}")
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    except (Exception, SystemExit) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        tb = _tail(traceback.format_exc())
        log.error("task failed: %s\n%s", error, traceback.format_exc())
        status = "oom" if _is_oom(exc) else "failed"
        now = time.monotonic()
        for arm in list(pending.values()):
            write(_failed_record(unit, arm, now - last, error, tb, peak.read(), last_utc,
                                 status=status))
        pending.clear()
    now = time.monotonic()
    for arm in list(pending.values()):  # the task finished without returning these arms
        write(_failed_record(unit, arm, now - last,
                             f"task {unit.task} returned no record for arm {arm.arm_id}", None,
                             peak.read(), last_utc))
    ok = all(s == "ok" for s in statuses.values())
    outcome = {
        "status": "ok" if ok else "failed", "unit_id": unit.unit_id, "attempt": unit.attempt,
        "attempt_id": unit.attempt_id, "pid": os.getpid(), "arms": statuses,
        "error": error, "traceback": tb, "wall_s": round(now - start, 3),
        "peak_rss_mb": max(peak.process_mb, peak.read()),
    }
    atomic_write_json(paths.outcome(unit.unit_id), outcome)
    log.info("unit %s: %s in %.1f s", unit.unit_id, outcome["status"], outcome["wall_s"])
    return outcome


# -- process plumbing ------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die(reason: str) -> None:
    try:
        sys.stderr.write(f"runner.worker pid {os.getpid()}: {reason}; exiting\n")
        sys.stderr.flush()
        kill_descendants()
    finally:
        if os.getpgrp() == os.getpid():  # we lead our own group: take our children along
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(70)


def start_watchdog(interval: float = 0.5) -> int:
    """Start the parent watchdog thread; returns the parent pid it watches."""
    expected = os.getppid()
    env = os.environ.get(PARENT_ENV, "")
    if env.isdigit() and int(env) != expected:
        if not _pid_alive(int(env)):
            _die(f"orchestrator pid {env} is gone before the unit started")
        # started by something else (e.g. a cluster worker) that passed the variable on:
        # watch our actual parent
    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != expected:
                _die(f"parent pid {expected} went away")

    threading.Thread(target=watch, name="runner-parent-watchdog", daemon=True).start()
    return expected


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def setup_logging(log_path: Path) -> None:
    """Log INFO and up to ``log_path`` (through stderr if stderr already goes there)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if _same_file(sys.stderr.fileno(), log_path):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _exit(code: int) -> None:
    n = kill_descendants()  # what the task started and left running (in any session)
    if n:
        log.warning("killed %d process(es) the task left running", n)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the unit described by ``argv[0]`` (a unit.json path). Does not return when run as
    a script (exits with :func:`os._exit`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runner.worker <unit.json>", file=sys.stderr)
        return 2
    start_watchdog()
    become_subreaper()
    faulthandler.enable()
    try:
        unit = Unit.from_dict(read_json(args[0]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"runner.worker: cannot read unit file {args[0]}: {exc}", file=sys.stderr)
        return 2
    setup_logging(Path(unit.paths.get("worker_log", Path(args[0]).with_name("worker.log"))))
    outcome = execute(unit)
    return 0 if outcome["status"] == "ok" else 1


if __name__ == "__main__":
    _exit(main())
