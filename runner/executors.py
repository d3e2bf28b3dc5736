"""Executors: how a unit attempt is run. Selected by name from a small registry.

The seam is :meth:`Executor.submit`: the orchestrator submits one :class:`AttemptJob` (the unit
file is already written) and gets an :class:`AttemptHandle` back at once, with ``done()``,
``result()`` and ``cancel()``; it keeps up to ``n_jobs`` handles in flight from its one thread
and reads results back from the output directory. The executor only reports how the attempt
ended (:class:`AttemptResult`: exit code, timeout, cancellation, log tail). What every backend
reads from the job: ``timeout_s``, ``arm_timeout_s``, ``memory_limit_mb``; threads and GPUs
come from :func:`runner.resources.worker_env`. What a backend can enforce it declares in its
capability flags (:attr:`Executor.isolated`, :attr:`~Executor.enforces_timeout`,
:attr:`~Executor.enforces_limits`), which the orchestrator reports before a run.

Registered executors:

``local``
    Every attempt is a new interpreter ``[sys.executable, -m, runner.worker, unit.json]`` in
    its own session, stdout/stderr appended to the unit's ``worker.log``, with the thread and
    GPU environment of :mod:`runner.resources`, supervised by :func:`runner.attempt.
    run_worker_process` in one of ``n_jobs`` threads of a :class:`concurrent.futures.
    ThreadPoolExecutor`: the unit's timeout, the optional per-arm timeout (``arm_timeout_s``)
    and memory limit (``memory_limit_mb``, arms recorded ``oom``) are enforced from this
    process. On a limit its whole process tree (descendants in other sessions included) gets
    SIGTERM, then SIGKILL after ``timeout_grace_s`` (0.5 s); on cancellation after ``grace_s``.
``inprocess``
    Runs the task in the caller's own process and thread, within :meth:`~Executor.submit`
    (the handle it returns is already done). For debugging only: **not isolated**
    (TensorFlow and any global state persist between units and in the caller), no timeout,
    a crash takes the orchestrator down.

``dask`` (optional: ``pip install 'ptycho-sweep[dask]'``)
    :class:`runner.dask_executor.DaskExecutor`: every attempt is a Dask task that starts the
    same fresh interpreter on whichever Dask worker takes it (through
    :func:`run_worker_process`, so limits and process-tree kills are the same) and ships the
    records, outcome, log and artifacts back to the orchestrator. Loaded on first use; without
    ``distributed`` installed it fails with an install hint.

Adding one (one file): subclass :class:`Executor`, implement :meth:`~Executor.submit` (return
at once; the attempt runs elsewhere) with an :class:`AttemptHandle` -- :class:`FutureHandle`
wraps a :class:`concurrent.futures.Future` -- and, as needed, :meth:`~Executor.start`
(connect; called when the orchestrator enters the executor, before anything is written),
:meth:`~Executor.cancel` (every attempt in flight) and :meth:`~Executor.close`; set the
capability flags; call ``register_executor("name", "package.module:Class")``. Options such as
``scheduler=...`` arrive as keyword arguments of the constructor, which must be cheap (the
CLI's ``--dry-run`` builds and closes the executor to validate them).

Resource limits: :attr:`AttemptJob.arm_timeout_s` and :attr:`AttemptJob.memory_limit_mb` come
with the job; ``arm_timeout_s=`` and ``memory_limit_mb=`` given to an executor that enforces
them (``local``, ``dask``; see :data:`Executor.enforces_limits`) are the defaults for jobs that
set none. A backend that cannot enforce them refuses them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import logging
import math
import os
import queue
import subprocess  # noqa: F401  (the module tests reach as executors.subprocess)
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .attempt import TIMEOUT_GRACE_S, AttemptJob, AttemptResult, log_tail, run_worker_process
from .resources import detect_gpus, worker_env

__all__ = ["BackendError", "AttemptJob", "AttemptResult", "AttemptHandle", "FutureHandle",
           "Executor", "LocalExecutor",
           "InProcessExecutor", "register_executor", "available_executors", "get_executor",
           "run_worker_process", "log_tail"]

log = logging.getLogger(__name__)


class BackendError(ValueError):
    """Unknown executor name or bad executor options."""


# -- the interface and registry --------------------------------------------------------------
class AttemptHandle(ABC):
    """One submitted attempt, as :meth:`Executor.submit` returns it.

    ``done()`` never blocks (a backend may do a little bookkeeping in it, e.g. write records
    streamed back so far); ``result()`` blocks until the attempt has ended and returns how it
    ended (``cancelled=True`` after :meth:`cancel`); ``cancel()`` returns at once: an attempt
    not yet started never starts, a running one has its worker's tree killed."""

    def __init__(self, job: AttemptJob):
        self.job = job

    @abstractmethod
    def done(self) -> bool:
        """True once the attempt has ended (or was cancelled before it started)."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> AttemptResult:
        """How the attempt ended; waits up to ``timeout`` s (None: for ever), then raises
        :class:`TimeoutError`."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop the attempt (see the class docstring)."""


class FutureHandle(AttemptHandle):
    """An attempt run by a :class:`concurrent.futures.Future` whose function watches the
    ``cancelled`` event (e.g. :func:`run_worker_process`)."""

    def __init__(self, job: AttemptJob, future: concurrent.futures.Future,
                 cancelled: threading.Event):
        super().__init__(job)
        self.future, self.cancelled = future, cancelled

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> AttemptResult:
        try:
            return self.future.result(timeout)
        except concurrent.futures.CancelledError:  # cancelled before it started
            return AttemptResult(self.job.unit_id, None, None, cancelled=True)

    def cancel(self) -> None:
        self.cancelled.set()
        self.future.cancel()

    @classmethod
    def finished(cls, job: AttemptJob, result: AttemptResult) -> FutureHandle:
        """The handle of an attempt that already ran to its end (inside ``submit``)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(result)
        return cls(job, future, threading.Event())


class Executor(ABC):
    """Runs unit attempts; up to ``n_jobs`` may be in flight at once.

    ``n_jobs=None`` means the backend's default (1 here; a cluster backend may size it to the
    cluster when it starts). Use as a context manager: ``__enter__`` calls :meth:`start`,
    ``__exit__`` :meth:`close`.
    """

    name: ClassVar[str] = "?"
    #: every attempt runs in a fresh process
    isolated: ClassVar[bool] = True
    #: :attr:`AttemptJob.timeout_s` is enforced
    enforces_timeout: ClassVar[bool] = True
    #: :attr:`AttemptJob.arm_timeout_s` and :attr:`AttemptJob.memory_limit_mb` are enforced
    enforces_limits: ClassVar[bool] = True

    def __init__(self, n_jobs: int | None = 1, **options: Any):
        if options:
            raise BackendError(f"backend {self.name!r} takes no option(s) "
                               f"{', '.join(sorted(options))}")
        if n_jobs is None:
            n_jobs = 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise BackendError(f"n_jobs = {n_jobs!r} is invalid: must be an integer >= 1")
        self.n_jobs = n_jobs
        self.arm_timeout_s: float | None = None
        self.memory_limit_mb: float | None = None

    def _set_limits(self, arm_timeout_s: float | None, memory_limit_mb: float | None) -> None:
        """Validate and keep the default limits of this executor's jobs."""
        for name, value in (("arm_timeout_s", arm_timeout_s),
                            ("memory_limit_mb", memory_limit_mb)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise BackendError(f"{name} = {value!r} is invalid: must be a number > 0")
            setattr(self, name, float(value))

    def _with_limits(self, job: AttemptJob) -> AttemptJob:
        """``job`` with this executor's default limits where it sets none."""
        return dataclasses.replace(
            job, arm_timeout_s=job.arm_timeout_s or self.arm_timeout_s,
            memory_limit_mb=job.memory_limit_mb or self.memory_limit_mb)

    @abstractmethod
    def submit(self, job: AttemptJob) -> AttemptHandle:
        """Start one attempt and return its handle at once (thread-safe). The caller keeps
        at most ``n_jobs`` attempts in flight."""

    def run_attempt(self, job: AttemptJob) -> AttemptResult:
        """Run one attempt to its end: ``submit(job).result()``."""
        return self.submit(job).result()

    def wait(self, handles: list[AttemptHandle], timeout: float) -> None:
        """Block until one of ``handles`` may be done, at most ``timeout`` s (the orchestrator
        then asks each). :class:`FutureHandle` s are waited for at once; other handles are
        polled: override this where the backend can do better."""
        futures = [h.future for h in handles if isinstance(h, FutureHandle)]
        if futures and len(futures) == len(handles):
            concurrent.futures.wait(futures, timeout,
                                    return_when=concurrent.futures.FIRST_COMPLETED)
        else:
            time.sleep(timeout)

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop every attempt in flight now; their handles' :meth:`~AttemptHandle.result`
        return soon with ``cancelled=True``. Called on interruption (from any thread)."""

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
class LocalExecutor(Executor):
    """One fresh interpreter per unit attempt on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, n_jobs: int | None = 1, *, grace_s: float = 5.0, poll_s: float = 0.25,
                 timeout_grace_s: float = TIMEOUT_GRACE_S, arm_timeout_s: float | None = None,
                 memory_limit_mb: float | None = None, **options: Any):
        super().__init__(n_jobs, **options)
        self._set_limits(arm_timeout_s, memory_limit_mb)
        self.grace_s, self.poll_s, self.timeout_grace_s = grace_s, poll_s, timeout_grace_s
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(self.n_jobs):
            self._slots.put(i)
        self._gpus = detect_gpus()
        self._cancelled = threading.Event()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._events: set[threading.Event] = set()  # of the attempts not yet ended
        self._live: dict[int, Any] = {}  # worker pid -> handle (kill(grace_s))
        self._lock = threading.Lock()

    def submit(self, job: AttemptJob) -> AttemptHandle:
        """Queue the attempt on one of ``n_jobs`` supervising threads."""
        cancelled = threading.Event()
        with self._lock:
            if self._cancelled.is_set():
                cancelled.set()
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.n_jobs, thread_name_prefix="ptycho-sweep-unit")
            self._events.add(cancelled)
            future = self._pool.submit(self._run, job, cancelled)
        future.add_done_callback(lambda _: self._forget(cancelled))
        return FutureHandle(job, future, cancelled)

    def _forget(self, cancelled: threading.Event) -> None:
        with self._lock:
            self._events.discard(cancelled)

    def _run(self, job: AttemptJob, cancelled: threading.Event) -> AttemptResult:
        slot = self._slots.get()
        started_pids: list[int] = []
        try:
            env = worker_env(n_jobs=self.n_jobs, slot=slot, gpus=self._gpus, cwd=job.cwd)

            def started(handle: Any) -> None:
                with self._lock:
                    for pid in started_pids:  # an earlier worker of this attempt: gone
                        self._live.pop(pid, None)
                    self._live[handle.pid] = handle
                started_pids.append(handle.pid)
                log.debug("unit %s: worker pid %d in slot %d", job.unit_id, handle.pid, slot)

            return run_worker_process(self._with_limits(job), env, grace_s=self.grace_s,
                                      poll_s=self.poll_s, cancelled=cancelled,
                                      on_start=started, timeout_grace_s=self.timeout_grace_s)
        finally:
            with self._lock:
                for pid in started_pids:
                    self._live.pop(pid, None)
            self._slots.put(slot)

    def cancel(self) -> None:
        """Kill every live worker's process tree (SIGTERM, SIGKILL after ``grace_s``) and
        wait for that; attempts not started never start. Handles return ``cancelled=True``."""
        with self._lock:
            self._cancelled.set()
            for event in self._events:
                event.set()
            live = list(self._live.values())
        threads = [threading.Thread(target=h.kill, args=(self.grace_s,), daemon=True)
                   for h in live]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        """Wait for the supervising threads (each ends with its worker's tree killed)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class InProcessExecutor(Executor):
    """Runs tasks in the calling process, one at a time: for debugging only, NOT isolated."""

    name = "inprocess"
    isolated = False
    enforces_timeout = False
    enforces_limits = False

    def __init__(self, n_jobs: int | None = 1, **options: Any):
        super().__init__(n_jobs, **options)
        if n_jobs not in (None, 1):
            log.warning("backend 'inprocess' runs one unit at a time (n_jobs=%d ignored)",
                        n_jobs)
        self.n_jobs = 1

    def submit(self, job: AttemptJob) -> AttemptHandle:
        """Run the attempt here and now; the handle returned is already done."""
        return FutureHandle.finished(job, self._execute(job))

    def _execute(self, job: AttemptJob) -> AttemptResult:
        from .store import read_json
        from .unit import Unit
        from .worker import execute

        if job.arm_timeout_s or job.memory_limit_mb:
            log.warning("backend 'inprocess' does not enforce arm_timeout_s / memory_limit_mb")
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
