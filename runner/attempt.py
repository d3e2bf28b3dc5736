"""One unit attempt as a supervised process tree: spawn, watch, enforce the limits, report.

Backend-neutral: the local executor calls :func:`run_worker_process` in one of its threads, the
Dask executor on the Dask worker that took the unit. The supervisor is the worker's *parent*, so
every limit is enforced from outside the worker and does not depend on the worker's interpreter
getting the GIL back (a task stuck in C code cannot delay it):

``timeout_s`` (the unit's wall time)
    The supervisor waits for the worker with a timeout ending exactly at the deadline, then
    kills the worker's whole process tree (:meth:`runner.proctree.ProcessTree.kill`: frozen,
    SIGTERM, ``timeout_grace_s`` -- 0.5 s by default -- then SIGKILL), so the kill lands less than
    a second after the deadline even when the task ignores SIGTERM. The orchestrator records the
    arms left without a record as ``timeout``.
``arm_timeout_s`` (optional: one arm's wall time)
    The supervisor watches ``records/`` for the records of this attempt. An arm's clock starts
    when the previous arm's record appears (the first arm's when the worker starts, so it
    includes the interpreter start and the task's setup). Tasks are expected to run the arms in
    the order of ``unit.arms`` (the default task does): the running arm is taken to be the first
    one without a record. When it exceeds ``arm_timeout_s`` the tree is killed, that arm is
    recorded here as ``timeout``, and, while the unit's own deadline allows, a fresh worker runs
    the unit's remaining arms (same attempt id; ``unit.json`` is rewritten with those arms).
``memory_limit_mb`` (optional)
    Each poll sums the resident memory (RSS) of the worker's process tree; above the limit the
    tree is killed and every arm of the attempt left without a record is recorded here as
    ``oom`` (not retried). Memory shared between the tree's processes counts once per process;
    an allocation faster than one poll (``poll_s``) can still meet the kernel's OOM killer
    first, which the orchestrator reports as a crash by SIGKILL.

Whatever ends an attempt (exit, timeout, limit, cancellation, an exception in the supervising
thread), the worker's whole tree -- including descendants that started their own session, and
orphans re-parented away from the worker -- is killed before :func:`run_worker_process` returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import OutputPaths
from .proctree import ProcessTree
from .provenance import arm_provenance, utc_now
from .store import atomic_write_json, read_json
from .unit import Unit

__all__ = ["AttemptJob", "AttemptResult", "run_worker_process", "log_tail", "TIMEOUT_GRACE_S"]

#: SIGTERM-to-SIGKILL grace when a limit (timeout, memory) ends an attempt.
TIMEOUT_GRACE_S = 0.5


@dataclass(frozen=True)
class AttemptJob:
    """One attempt of one unit: the unit file is already written."""

    unit_id: str
    unit_json: Path
    log_path: Path
    timeout_s: float
    cwd: Path
    #: called from the waiting thread about every ``poll_s`` (progress updates)
    on_poll: Callable[[], None] | None = None
    #: wall-time limit of one arm (None: none; see the module docstring)
    arm_timeout_s: float | None = None
    #: limit on the resident memory of the worker's process tree, MiB (None: none)
    memory_limit_mb: float | None = None


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended. ``returncode`` < 0 means killed by that signal."""

    unit_id: str
    pid: int | None
    returncode: int | None
    timed_out: bool = False
    cancelled: bool = False
    wall_s: float = 0.0
    log_tail: str = ""
    #: why the attempt ended without a worker exit status (e.g. a lost cluster worker);
    #: used as the ``error`` of the arms it left without a record
    error: str | None = None
    #: killed for exceeding ``memory_limit_mb`` (its unrecorded arms were recorded ``oom``)
    oom: bool = False
    #: arms recorded ``timeout`` for exceeding ``arm_timeout_s``
    arm_timeouts: tuple[str, ...] = field(default_factory=tuple)
    #: highest resident memory of the worker's tree seen while polling, MiB (None: not watched)
    peak_tree_rss_mb: float | None = None


def log_tail(path: Path, n_lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``n_lines`` lines of a log file ('' if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.rstrip().splitlines()[-n_lines:])


class _Records:
    """The arms of an attempt and which of them have a record of this attempt yet."""

    def __init__(self, unit: dict[str, Any]):
        self.unit = unit
        self.paths = OutputPaths(unit["paths"]["out_dir"])
        self.attempt_id = unit.get("attempt_id", "")
        self.pending = [a["arm_id"] for a in unit["arms"]]
        self._stamp = {a: self._stat(a) for a in self.pending}

    def _stat(self, arm_id: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.paths.record(arm_id))
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def poll(self) -> bool:
        """Drop the arms whose record of this attempt appeared; True if any did."""
        done = []
        for arm_id in self.pending:
            stamp = self._stat(arm_id)
            if stamp is None or stamp == self._stamp.get(arm_id):
                continue
            self._stamp[arm_id] = stamp
            try:
                rec = read_json(self.paths.record(arm_id))
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("attempt_id") == self.attempt_id:
                done.append(arm_id)
        self.pending = [a for a in self.pending if a not in done]
        return bool(done)

    def record(self, arm_id: str, status: str, error: str, *, pid: int | None,
               returncode: int | None, wall_s: float, started_at: str, tail: str) -> None:
        """Write the record of an arm this supervisor ended (``timeout`` or ``oom``)."""
        u = self.unit
        unit = Unit.from_dict(u)
        rec = {**unit.arm_columns(arm_id), "status": status, "error": error,
               "pid": pid, "wall_s": round(wall_s, 3), "attempt": u.get("attempt", 1),
               "attempt_id": self.attempt_id, "exit_code": returncode, "log_tail": tail,
               **arm_provenance(u, started_at, utc_now(), unit.arm(arm_id))}
        atomic_write_json(self.paths.record(arm_id), rec)
        self.pending.remove(arm_id)

    def rewrite_unit(self, unit_json: Path) -> None:
        """``unit.json`` with only the pending arms (for the next worker of this attempt)."""
        self.unit = {**self.unit, "arms": [a for a in self.unit["arms"]
                                           if a["arm_id"] in self.pending]}
        atomic_write_json(unit_json, self.unit)


def _spawn(job: AttemptJob, env: dict[str, str], note: str = "") -> subprocess.Popen:
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as logf:
        logf.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} runner: starting worker for "
                   f"{job.unit_json}{note} =====\n".encode())
        logf.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "runner.worker", str(job.unit_json)],
            cwd=job.cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


class _Handle:
    """A running worker and its tree, as given to ``on_start`` (``kill`` is thread-safe)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.pid = proc, proc.pid
        self.tree = ProcessTree(proc.pid)

    def kill(self, grace_s: float) -> None:
        self.tree.kill(grace_s, self.proc)


def _watch(h: _Handle, job: AttemptJob, deadline: float, records: _Records | None,
           cancelled: threading.Event | None, poll_s: float) -> str:
    """Wait for the worker; return why the wait ended: ``exit``, ``cancelled``, ``timeout``,
    ``oom`` or ``arm_timeout`` (the tree is still alive unless ``exit``)."""
    limit = job.memory_limit_mb * 2**20 if job.memory_limit_mb else None
    arm_start = time.monotonic()
    while True:
        now = time.monotonic()
        wake = deadline
        if job.arm_timeout_s and records is not None:
            wake = min(wake, arm_start + job.arm_timeout_s)
        try:
            h.proc.wait(timeout=max(0.0, min(poll_s, wake - now)))
            return "exit"
        except subprocess.TimeoutExpired:
            pass
        if cancelled is not None and cancelled.is_set():
            return "cancelled"
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        if limit is not None:
            if h.tree.rss_bytes() > limit:
                return "oom"
        else:
            h.tree.scan()  # keep track of descendants, even those that leave the tree
        if records is not None and job.arm_timeout_s:
            if records.poll():
                arm_start = now
            elif records.pending and now >= arm_start + job.arm_timeout_s:
                return "arm_timeout"
        if job.on_poll is not None:
            job.on_poll()


def run_worker_process(job: AttemptJob, env: dict[str, str], *, grace_s: float = 5.0,
                       poll_s: float = 0.25, cancelled: threading.Event | None = None,
                       on_start: Callable[[_Handle], None] | None = None,
                       timeout_grace_s: float = TIMEOUT_GRACE_S) -> AttemptResult:
    """Start ``python -m runner.worker job.unit_json`` in a new session and supervise it to
    its end (see the module docstring). ``grace_s``: SIGTERM-to-SIGKILL grace on
    cancellation; ``on_start(handle)`` is called for every worker started (``handle.kill``)."""
    if cancelled is not None and cancelled.is_set():
        return AttemptResult(job.unit_id, None, None, cancelled=True)
    start = time.monotonic()
    deadline = start + job.timeout_s
    records = None
    if job.arm_timeout_s or job.memory_limit_mb:
        records = _Records(read_json(job.unit_json))
    arm_timeouts: list[str] = []
    ending, note, h, peak = "exit", "", None, None
    while True:
        arm_started, arm_clock = utc_now(), time.monotonic()
        h = _Handle(_spawn(job, env, note))
        if on_start is not None:
            on_start(h)
        try:
            ending = _watch(h, job, deadline, records, cancelled, poll_s)
        finally:  # whatever happened, nothing of this worker survives
            h.kill(grace_s if ending == "cancelled" else timeout_grace_s)
        if job.memory_limit_mb:
            peak = max(peak or 0.0, h.tree.peak_rss / 2**20)
        if ending == "oom" and records is not None:
            records.poll()
            error = (f"out of memory: the unit's processes used {h.tree.peak_rss / 2**20:.0f} "
                     f"MiB, over its memory_limit_mb = {job.memory_limit_mb:g}; worker killed")
            for arm_id in list(records.pending):
                records.record(arm_id, "oom", error, pid=h.pid, returncode=h.proc.returncode,
                               wall_s=time.monotonic() - arm_clock, started_at=arm_started,
                               tail=log_tail(job.log_path))
        if ending != "arm_timeout" or records is None:
            break
        records.poll()
        if records.pending:
            arm_id = records.pending[0]
            records.record(arm_id, "timeout",
                           f"arm timed out after {job.arm_timeout_s:g} s (arm_timeout_s); its "
                           f"worker was killed, the unit's other arms go on in a new worker",
                           pid=h.pid, returncode=h.proc.returncode,
                           wall_s=time.monotonic() - arm_clock, started_at=arm_started,
                           tail=log_tail(job.log_path))
            arm_timeouts.append(arm_id)
        if not records.pending:
            ending = "exit"
            break
        if time.monotonic() >= deadline:
            ending = "timeout"
            break
        records.rewrite_unit(job.unit_json)
        note = f" (after arm {arm_timeouts[-1]} timed out: {len(records.pending)} arm(s) left)"
    was_cancelled = ending == "cancelled" or (cancelled is not None and cancelled.is_set())
    return AttemptResult(job.unit_id, h.pid, h.proc.returncode, timed_out=ending == "timeout",
                         cancelled=was_cancelled, wall_s=time.monotonic() - start,
                         log_tail=log_tail(job.log_path), oom=ending == "oom",
                         arm_timeouts=tuple(arm_timeouts),
                         peak_tree_rss_mb=round(peak, 1) if peak is not None else None)
