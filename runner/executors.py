"""Executors: how a unit attempt is run. Selected by name from a small registry.

The orchestrator hands an executor one :class:`AttemptJob` at a time per concurrency slot
(``n_jobs`` joblib threads call :meth:`Executor.run_attempt` concurrently) and reads results back
from the output directory; the executor only reports how the attempt ended
(:class:`AttemptResult`: exit code, timeout, cancellation, log tail).

Registered executors:

``local``
    Every attempt is a new interpreter ``[sys.executable, -m, runner.worker, unit.json]`` in
    its own session, stdout/stderr appended to the unit's ``worker.log``, with the thread and
    GPU environment of :mod:`runner.resources`. On timeout or :meth:`Executor.cancel` its whole
    process group gets SIGTERM, then SIGKILL after ``grace_s``.
``inprocess``
    Runs the task in the orchestrator's own process and thread, one unit at a time. For
    debugging only: **not isolated** (TensorFlow and any global state persist between units
    and in the caller), no timeout, a crash takes the orchestrator down.

``dask`` (optional: ``pip install 'ptycho-sweep[dask]'``)
    :class:`runner.dask_executor.DaskExecutor`: every attempt is a Dask task that starts the
    same fresh interpreter on whichever Dask worker takes it (through
    :func:`run_worker_process`, so timeouts and process-group kills are the same) and ships the
    records, outcome, log and artifacts back to the orchestrator. Loaded on first use; without
    ``distributed`` installed it fails with an install hint.

Adding one: subclass :class:`Executor`, implement :meth:`~Executor.run_attempt` (blocking,
thread-safe) and, as needed, :meth:`~Executor.start` (connect; called when the orchestrator
enters the executor, before anything is written), :meth:`~Executor.cancel` and
:meth:`~Executor.close`, and call ``register_executor("name", "package.module:Class")``;
options such as ``scheduler=...`` arrive as keyword arguments of the constructor, which must
be cheap (the CLI's ``--dry-run`` builds and closes the executor to validate them).
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .resources import detect_gpus, worker_env

__all__ = ["BackendError", "AttemptJob", "AttemptResult", "Executor", "LocalExecutor",
           "InProcessExecutor", "register_executor", "available_executors", "get_executor",
           "run_worker_process", "log_tail"]

log = logging.getLogger(__name__)


class BackendError(ValueError):
    """Unknown executor name or bad executor options."""


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


# -- the interface and registry --------------------------------------------------------------
class Executor(ABC):
    """Runs unit attempts. ``n_jobs`` attempts may be in flight (one per calling thread).

    ``n_jobs=None`` means the backend's default (1 here; a cluster backend may size it to the
    cluster when it starts). Use as a context manager: ``__enter__`` calls :meth:`start`,
    ``__exit__`` :meth:`close`.
    """

    name: ClassVar[str] = "?"
    #: every attempt runs in a fresh process
    isolated: ClassVar[bool] = True
    #: :attr:`AttemptJob.timeout_s` is enforced
    enforces_timeout: ClassVar[bool] = True

    def __init__(self, n_jobs: int | None = 1, **options: Any):
        if options:
            raise BackendError(f"backend {self.name!r} takes no option(s) "
                               f"{', '.join(sorted(options))}")
        if n_jobs is None:
            n_jobs = 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise BackendError(f"n_jobs = {n_jobs!r} is invalid: must be an integer >= 1")
        self.n_jobs = n_jobs

    @abstractmethod
    def run_attempt(self, job: AttemptJob) -> AttemptResult:
        """Run one attempt to its end (blocking; called from up to ``n_jobs`` threads)."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop every running attempt now; pending :meth:`run_attempt` calls return soon with
        ``cancelled=True``. Called from the orchestrator's main thread on interruption."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (connect to a cluster...); raise BackendError if unusable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def __enter__(self) -> Executor:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_REGISTRY: dict[str, type[Executor] | str] = {}


def register_executor(name: str, factory: type[Executor] | str) -> None:
    """Register an executor class, or a lazy ``"module:Class"`` reference, under ``name``."""
    _REGISTRY[name] = factory


def available_executors() -> list[str]:
    """Names of the registered executors."""
    return sorted(_REGISTRY)


def get_executor(name: str, n_jobs: int | None = None, **options: Any) -> Executor:
    """Instantiate the executor registered as ``name`` (``n_jobs=None``: its default);
    BackendError lists the valid names, or says what an optional backend needs."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise BackendError(f"unknown backend {name!r}; valid backends: "
                           f"{', '.join(available_executors())}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise BackendError(f"backend {name!r} is not available ({exc}); install its "
                               f"dependencies") from None
    return factory(n_jobs=n_jobs, **options)


# -- local subprocesses ----------------------------------------------------------------------
def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace_s``, reap ``proc``."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)  # also children that ignored SIGTERM
    proc.wait()


def run_worker_process(job: AttemptJob, env: dict[str, str], *, grace_s: float = 5.0,
                       poll_s: float = 0.25, cancelled: threading.Event | None = None,
                       on_start: Callable[[subprocess.Popen], None] | None = None
                       ) -> AttemptResult:
    """Start ``python -m runner.worker job.unit_json`` in a new session and supervise it:
    timeout, cancellation, and a final SIGKILL of the group for stray children."""
    if cancelled is not None and cancelled.is_set():
        return AttemptResult(job.unit_id, None, None, cancelled=True)
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as logf:
        logf.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} runner: starting worker for "
                   f"{job.unit_json} =====\n".encode())
        logf.flush()
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.worker", str(job.unit_json)],
            cwd=job.cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    if on_start is not None:
        on_start(proc)
    timed_out = was_cancelled = False
    try:
        while True:
            try:
                proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if job.on_poll is not None:
                job.on_poll()
            if cancelled is not None and cancelled.is_set():
                was_cancelled = True
                terminate_group(proc, grace_s)
                break
            if time.monotonic() - start >= job.timeout_s:
                timed_out = True
                log.debug("unit %s: timeout after %.0f s; killing worker pid %d",
                            job.unit_id, job.timeout_s, proc.pid)
                terminate_group(proc, grace_s)
                break
    finally:
        if proc.poll() is None:  # interrupted while waiting (e.g. KeyboardInterrupt)
            terminate_group(proc, grace_s)
        _signal_group(proc.pid, signal.SIGKILL)  # stray children of a finished worker
    if cancelled is not None and cancelled.is_set():
        was_cancelled = True  # cancel() may have killed it before we noticed the flag
    return AttemptResult(job.unit_id, proc.pid, proc.returncode, timed_out=timed_out,
                         cancelled=was_cancelled, wall_s=time.monotonic() - start,
                         log_tail=log_tail(job.log_path))


class LocalExecutor(Executor):
    """One fresh interpreter per unit attempt on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, n_jobs: int | None = 1, *, grace_s: float = 5.0, poll_s: float = 0.25,
                 **options: Any):
        super().__init__(n_jobs, **options)
        self.grace_s, self.poll_s = grace_s, poll_s
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(self.n_jobs):
            self._slots.put(i)
        self._gpus = detect_gpus()
        self._cancelled = threading.Event()
        self._live: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def run_attempt(self, job: AttemptJob) -> AttemptResult:
        slot = self._slots.get()
        try:
            env = worker_env(n_jobs=self.n_jobs, slot=slot, gpus=self._gpus, cwd=job.cwd)

            def started(proc: subprocess.Popen) -> None:
                with self._lock:
                    self._live[proc.pid] = proc
                log.debug("unit %s: worker pid %d in slot %d", job.unit_id, proc.pid, slot)

            result = run_worker_process(job, env, grace_s=self.grace_s, poll_s=self.poll_s,
                                        cancelled=self._cancelled, on_start=started)
            with self._lock:
                self._live.pop(result.pid, None)
            return result
        finally:
            self._slots.put(slot)

    def cancel(self) -> None:
        """SIGTERM every live worker group, wait ``grace_s``, SIGKILL the rest."""
        self._cancelled.set()
        with self._lock:
            live = list(self._live.values())
        for proc in live:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc.pid, signal.SIGKILL)


class InProcessExecutor(Executor):
    """Runs tasks in the calling process, one at a time: for debugging only, NOT isolated."""

    name = "inprocess"
    isolated = False
    enforces_timeout = False

    def __init__(self, n_jobs: int | None = 1, **options: Any):
        super().__init__(n_jobs, **options)
        if n_jobs not in (None, 1):
            log.warning("backend 'inprocess' runs one unit at a time (n_jobs=%d ignored)",
                        n_jobs)
        self.n_jobs = 1

    def run_attempt(self, job: AttemptJob) -> AttemptResult:
        from .store import read_json
        from .unit import Unit
        from .worker import execute

        unit = Unit.from_dict(read_json(job.unit_json))
        handler = logging.FileHandler(job.log_path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        start = time.monotonic()
        try:
            outcome = execute(unit)
            code = 0 if outcome["status"] == "ok" else 1
        finally:
            root.removeHandler(handler)
            handler.close()
        return AttemptResult(job.unit_id, os.getpid(), code, wall_s=time.monotonic() - start,
                             log_tail=log_tail(job.log_path))


register_executor("local", LocalExecutor)
register_executor("inprocess", InProcessExecutor)
register_executor("dask", "runner.dask_executor:DaskExecutor")  # imports dask only when used
