"""The ``dask`` backend: each unit attempt runs on a Dask worker, still in a fresh interpreter.

Install with ``pip install 'ptycho-sweep[dask]'``. This module imports ``distributed`` only when
a :class:`DaskExecutor` is built, so ``import runner`` and the local backend never load Dask;
without it the executor raises :class:`~runner.executors.BackendError` with the install hint
(the CLI exits with status 2).

Cluster
    ``scheduler="tcp://host:8786"`` connects to a running cluster (``dask scheduler`` plus
    ``dask worker`` processes). Without a scheduler a :class:`distributed.LocalCluster` is
    started here -- worker processes, ``threads_per_worker=1``, ``n_workers = n_jobs`` or the
    usable cores -- and closed at the end. ``n_jobs`` (units in flight) defaults to the
    cluster's worker threads (for GPU units: at most the GPUs it advertises); extra units wait
    in the scheduler, and their timeout starts only when a worker takes them.

Isolation
    The Dask task (:func:`runner.dask_task.run_unit_on_dask_worker`) starts ``python -m
    runner.worker unit.json`` on the worker machine through
    :func:`runner.attempt.run_worker_process` -- the supervisor of the local backend: own
    session, the unit's timeout, ``arm_timeout_s`` and ``memory_limit_mb`` enforced from
    outside the unit's process, SIGTERM then SIGKILL of its whole process tree, the thread
    environment of :func:`runner.resources.worker_env` (the worker host's cores split between
    the units that host runs at once) -- and only returns when that process has ended. The
    Dask worker thread only waits; no task code runs in it.

How results come back
    By default the unit runs in a scratch directory under the Dask worker's local directory: the
    task rewrites the unit's paths to it, and when the process has ended returns, through Dask,
    the records of this attempt (the per-arm JSON dicts), the tagged outcome, the attempt's log
    (the last 1 MiB) and the files of the artifact directory (``.npz``; at most
    ``max_artifact_mb`` per unit, the rest is named in the log and not shipped), then deletes
    the scratch directory. The orchestrator writes them into ``<out>/`` with the same atomic
    writes and names as a local worker -- log, artifacts and outcome first, records last -- and
    then classifies the attempt exactly as for the local backend. Only the orchestrator writes
    into ``<out>/``, once per attempt, so there are no duplicate or torn records. The catch:
    records travel at the end of the unit, so a lost Dask worker loses every arm of the
    attempt it was running (they are then retried, see below), and progress moves per unit.

    With ``shared_dir=True`` (``--shared-dir``; the output directory is mounted at the same path
    on every worker) the unit's process writes its records, log and artifacts straight into
    ``<out>/`` as the local backend does, so records stream and an arm finished before a
    worker died is kept; nothing but the exit status is shipped. A worker that cannot see this
    attempt's ``unit.json`` at that path reports the unit as crashed with a message saying so.

When a Dask worker dies mid-unit
    The unit's process dies with it (the worker's watchdog kills its process group when its
    parent, the Dask worker process, goes away). Dask itself re-runs a task whose worker died
    up to ``distributed.scheduler.allowed-failures`` times (default 3) on other workers -- the
    same attempt again, from scratch, invisible here except for the time it takes -- and then
    raises ``KilledWorker``. A LocalCluster started here sets ``allowed_failures=0``, so the
    first loss surfaces at once. The executor reports ``KilledWorker`` (or a task cancelled by
    a lost scheduler) as a crash of the attempt naming the lost worker; the orchestrator then
    records every arm of the attempt left without a record as ``crashed`` and re-runs them up to
    ``sweep.retries`` times as a new attempt (new ``attempt_id``, any worker). For clusters you
    start yourself, ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` in the scheduler's
    environment makes the sweep's retries the only ones. The scheduler also recomputes a unit
    whose finished result was lost with its worker before the orchestrator fetched it; either
    way the orchestrator only ever writes the result it receives.

GPUs
    ``gpus_per_unit`` (``--gpus-per-unit``): with ``k > 0`` each unit is submitted with
    ``resources={"GPU": k}``, so it only runs on workers started with ``--resources GPU=n``
    (and at most ``n / k`` at a time there); ``"auto"`` (default) means 1 when any worker
    advertises a ``GPU`` resource, else 0 (nothing is asked on CPU-only clusters). The unit's
    ``CUDA_VISIBLE_DEVICES`` is chosen on the worker as the local backend does, from the
    devices that Dask worker sees (its ``CUDA_VISIBLE_DEVICES`` restricted to ``nvidia-smi``'s
    list): with one GPU per Dask worker (``CUDA_VISIBLE_DEVICES=i dask worker ...
    --resources GPU=1``, or ``dask cuda worker`` from dask-cuda, which sets it per worker) the
    unit gets that worker's GPU; a worker with several gives its concurrent units one each.
    Several workers of one host that all see the same GPUs (``dask worker --nworkers 2`` without
    a per-worker ``CUDA_VISIBLE_DEVICES``) would all use the first one. A LocalCluster started
    here advertises no resources; its worker ``i`` gives its unit GPU ``i`` (modulo the GPUs),
    as the local backend's slots do.

Requirements on the workers: the same project (``runner`` and the task module) importable by the
Dask worker's Python; the orchestrator's current directory and ``PYTHONPATH`` entries that
exist on the worker are added to the unit's ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

from .dask_task import run_unit_on_dask_worker
from .executors import AttemptJob, AttemptResult, BackendError, Executor
from .paths import OutputPaths
from .resources import usable_cores
from .store import atomic_write_bytes, atomic_write_json, read_json

__all__ = ["DaskExecutor", "run_unit_on_dask_worker", "INSTALL_HINT", "GPU_RESOURCE"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ptycho-sweep[dask]'"
#: Name of the Dask worker resource a GPU unit asks for (``dask worker --resources GPU=1``).
GPU_RESOURCE = "GPU"


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise BackendError(f"backend 'dask' needs the optional dask and distributed packages "
                           f"({exc}); install them with: {INSTALL_HINT}") from None
    return distributed


# -- in the orchestrator ---------------------------------------------------------------------
@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while the block starts processes, which inherit it: the Dask workers of a
    LocalCluster (same process group) then leave a terminal's Ctrl-C to the orchestrator,
    which cancels the units and closes the cluster. No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class DaskExecutor(Executor):
    """Runs unit attempts as Dask tasks, each a fresh interpreter (see the module docstring).

    Args:
        n_jobs: units in flight; None: the cluster's worker threads (a LocalCluster started
            here gets ``n_jobs`` workers, default the usable cores).
        scheduler: address of a running scheduler (``tcp://host:8786``); None starts a
            LocalCluster for the run.
        gpus_per_unit: ``"auto"`` (1 if a worker advertises a GPU resource, else 0) or an
            integer >= 0; units with ``k > 0`` are submitted with ``resources={"GPU": k}``.
        shared_dir: the output directory is visible at the same path on every worker: units
            write into it directly instead of shipping their results back.
        grace_s, poll_s: as for the local backend (SIGTERM grace, supervision interval).
        max_artifact_mb: artifacts shipped back per unit attempt (scratch mode).
        connect_timeout_s: time to reach the scheduler and to wait for a first worker.
        arm_timeout_s, memory_limit_mb: default limits of the units that set none (enforced
            on the Dask worker, see :mod:`runner.attempt`).
    """

    name = "dask"

    def __init__(self, n_jobs: int | None = None, *, scheduler: str | None = None,
                 gpus_per_unit: int | str = "auto", shared_dir: bool = False,
                 grace_s: float = 5.0, poll_s: float = 0.25, max_artifact_mb: float = 100.0,
                 connect_timeout_s: float = 30.0, arm_timeout_s: float | None = None,
                 memory_limit_mb: float | None = None, **options: Any):
        super().__init__(n_jobs, **options)
        self._set_limits(arm_timeout_s, memory_limit_mb)
        self._requested_n_jobs = n_jobs
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise BackendError(f"scheduler = {scheduler!r} is invalid: must be an address such "
                               f"as 'tcp://host:8786'")
        if isinstance(gpus_per_unit, str) and gpus_per_unit.strip().isdigit():
            gpus_per_unit = int(gpus_per_unit)
        if gpus_per_unit != "auto" and (isinstance(gpus_per_unit, bool) or not isinstance(
                gpus_per_unit, int) or gpus_per_unit < 0):
            raise BackendError(f"gpus_per_unit = {gpus_per_unit!r} is invalid: must be 'auto' "
                               f"or an integer >= 0")
        if not isinstance(shared_dir, bool):
            raise BackendError(f"shared_dir = {shared_dir!r} is invalid: must be true or false")
        if not max_artifact_mb >= 0:
            raise BackendError(f"max_artifact_mb = {max_artifact_mb!r} is invalid: must be >= 0")
        if scheduler is None and gpus_per_unit not in ("auto", 0):
            raise BackendError(
                f"gpus_per_unit = {gpus_per_unit} needs Dask workers that advertise a "
                f"{GPU_RESOURCE!r} resource, and the LocalCluster started without a scheduler "
                f"advertises none: pass --scheduler of a cluster whose workers run with "
                f"--resources {GPU_RESOURCE}=1 (or use --backend local, which gives each unit "
                f"a GPU)")
        self.scheduler = scheduler.strip() if scheduler else None
        self.gpus_per_unit = gpus_per_unit
        self.shared_dir = shared_dir
        self.grace_s, self.poll_s = float(grace_s), float(poll_s)
        self.max_artifact_bytes = int(max_artifact_mb * 2**20)
        self.connect_timeout_s = float(connect_timeout_s)
        self._distributed = _import_distributed()
        self._client = None
        self._cluster = None
        self._resources: dict[str, int] | None = None
        self._host_slots: dict[str, int] = {}
        self._cancelled = threading.Event()
        self._live: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def _workers(self) -> dict[str, dict[str, Any]]:
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except TypeError:  # distributed < 2025: no n_workers argument, all workers
            info = self._client.scheduler_info()
        return dict(info.get("workers", {}))

    def start(self) -> None:
        """Connect to the scheduler (or start a LocalCluster) and size the run."""
        if self._client is not None:
            return
        d = self._distributed
        if self.scheduler is None:
            n_workers = self._requested_n_jobs or usable_cores()
            with _sigint_ignored():  # a Ctrl-C reaches the orchestrator, which stops the run
                self._cluster = d.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=None,  # no dashboard; its HTTP routes on a free port:
                    scheduler_kwargs={"allowed_failures": 0, "dashboard_address": ":0"},
                    silence_logs=logging.ERROR)
            self._client = d.Client(self._cluster, set_as_default=False)
            where = f"LocalCluster of {n_workers} worker process(es) at " \
                    f"{self._cluster.scheduler_address}"
        else:
            try:
                self._client = d.Client(self.scheduler, timeout=self.connect_timeout_s,
                                        set_as_default=False)
            except Exception as exc:
                raise BackendError(f"cannot connect to the Dask scheduler {self.scheduler!r}: "
                                   f"{type(exc).__name__}: {exc}") from None
            where = f"scheduler {self.scheduler}"
        workers = self._workers()
        if not workers:
            try:
                self._client.wait_for_workers(1, timeout=self.connect_timeout_s)
            except Exception:
                raise BackendError(f"the Dask {where} has no workers (waited "
                                   f"{self.connect_timeout_s:g} s); start some with "
                                   f"'dask worker <scheduler address>'") from None
            workers = self._workers()
        self._size(workers, where)

    def _size(self, workers: Mapping[str, Mapping[str, Any]], where: str) -> None:
        per_host: dict[str, int] = {}
        for w in workers.values():
            per_host[w.get("host", "")] = per_host.get(w.get("host", ""), 0) + int(
                w.get("nthreads", 1))
        self._host_slots = {a: per_host[w.get("host", "")] for a, w in workers.items()}
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        gpu = [float((w.get("resources") or {}).get(GPU_RESOURCE, 0)) for w in workers.values()]
        k = self.gpus_per_unit
        if k == "auto":
            k = 1 if any(g > 0 for g in gpu) else 0
        if k:
            if not any(g >= k for g in gpu):
                raise BackendError(
                    f"gpus_per_unit = {k} but no worker of the Dask {where} advertises "
                    f"{GPU_RESOURCE}>={k} (worker resources: "
                    f"{sorted({str(w.get('resources') or {}) for w in workers.values()})}); "
                    f"start workers with --resources {GPU_RESOURCE}={k} or use "
                    f"--gpus-per-unit 0")
            self._resources = {GPU_RESOURCE: k}
            capacity = sum(int(g // k) for g in gpu)
        else:
            self._resources = None
            capacity = threads
        if self._requested_n_jobs is None:
            self.n_jobs = max(1, min(threads, capacity))
        allowed = None
        if self._cluster is None:
            with contextlib.suppress(Exception):
                allowed = self._client.run_on_scheduler(
                    lambda dask_scheduler: dask_scheduler.allowed_failures)
        log.info("dask: %s, %d worker(s), %d thread(s)%s; %d unit(s) in flight; results %s",
                 where, len(workers), threads,
                 f", {k} {GPU_RESOURCE} per unit" if k else "", self.n_jobs,
                 "written in the shared output directory" if self.shared_dir
                 else "shipped back through Dask")
        if allowed:
            log.info("dask: the scheduler re-runs a unit whose worker died up to %d time(s) "
                     "(distributed.scheduler.allowed-failures) before sweep.retries apply",
                     allowed)

    def close(self) -> None:
        for obj in (self._client, self._cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception as exc:  # never mask the run's own outcome
                    log.debug("closing %r: %s", obj, exc)
        self._client = self._cluster = None

    def cancel(self) -> None:
        """Cancel every unit in flight: each worker-side task sees its future cancelled and
        kills its unit's process group (SIGTERM, SIGKILL after ``grace_s``)."""
        self._cancelled.set()
        with self._lock:
            futures = list(self._live.values())
        if futures and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.cancel(futures)

    # -- attempts ----------------------------------------------------------------------------
    def run_attempt(self, job: AttemptJob) -> AttemptResult:
        if self._client is None:
            raise RuntimeError("DaskExecutor.run_attempt before start() (use it as a context "
                               "manager)")
        if self._cancelled.is_set():
            return AttemptResult(job.unit_id, None, None, cancelled=True)
        job = self._with_limits(job)
        unit = read_json(job.unit_json)
        payload = {
            "unit_id": job.unit_id, "unit": unit, "unit_json": str(job.unit_json),
            "timeout_s": job.timeout_s, "cwd": str(Path(job.cwd).resolve()),
            "pythonpath": [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p],
            "n_jobs": self.n_jobs, "host_slots": self._host_slots,
            "shared_dir": self.shared_dir, "grace_s": self.grace_s, "poll_s": self.poll_s,
            "max_artifact_bytes": self.max_artifact_bytes,
            "arm_timeout_s": job.arm_timeout_s, "memory_limit_mb": job.memory_limit_mb,
        }
        key = f"ptycho-unit-{job.unit_id}-{unit.get('attempt_id', '')}-{uuid.uuid4().hex[:8]}"
        start = time.monotonic()
        future = self._client.submit(run_unit_on_dask_worker, payload, key=key, pure=False,
                                     resources=self._resources)
        with self._lock:
            self._live[key] = future
        try:
            while not future.done():
                if job.on_poll is not None:
                    job.on_poll()
                if self._cancelled.wait(self.poll_s):
                    with contextlib.suppress(Exception):
                        future.cancel()
                    return AttemptResult(job.unit_id, None, None, cancelled=True,
                                         wall_s=time.monotonic() - start)
            try:
                shipped = future.result()
            except Exception as exc:
                if self._cancelled.is_set():
                    return AttemptResult(job.unit_id, None, None, cancelled=True,
                                         wall_s=time.monotonic() - start)
                error = self._lost(exc)
                log.warning("unit %s: %s", job.unit_id, error)
                return AttemptResult(job.unit_id, None, None, wall_s=time.monotonic() - start,
                                     error=error)
        finally:
            with self._lock:
                self._live.pop(key, None)
            with contextlib.suppress(Exception):
                future.release()
        result: AttemptResult = shipped["result"]
        log.debug("unit %s: attempt ended on Dask worker %s (exit %s)", job.unit_id,
                  shipped.get("worker"), result.returncode)
        if not self.shared_dir:
            self._write_back(unit, shipped)
        return result

    def _lost(self, exc: BaseException) -> str:
        """The error of the arms of an attempt whose Dask task did not return."""
        if isinstance(exc, self._distributed.KilledWorker):
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

    @staticmethod
    def _write_back(unit: Mapping[str, Any], shipped: Mapping[str, Any]) -> None:
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
        arm_ids = {a["arm_id"] for a in unit["arms"]}
        for rec in shipped.get("records", []):
            arm_id = rec.get("arm_id")
            if arm_id in arm_ids and rec.get("attempt_id") == unit["attempt_id"]:
                atomic_write_json(paths.record(arm_id), rec)
            else:
                log.warning("unit %s: shipped record for arm %r of attempt %r ignored (not "
                            "an arm of attempt %s)", unit_id, arm_id, rec.get("attempt_id"),
                            unit["attempt_id"])
