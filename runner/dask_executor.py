"""The ``dask`` backend: each unit attempt runs on a Dask worker, still in a fresh interpreter.

Install with ``pip install 'ptycho-sweep[dask]'``. This module imports ``distributed`` only when
a :class:`DaskExecutor` is built, so ``import runner`` and the local backend never load Dask;
without it the executor raises :class:`~runner.executors.BackendError` with the install hint
(the CLI exits with status 2).

Cluster
    ``scheduler="tcp://host:8786"`` reaches a running cluster (``dask scheduler`` plus ``dask
    worker`` processes). Otherwise one is started for the run and closed at the end:
    ``cluster="slurm"`` submits Slurm jobs running Dask workers through dask-jobqueue (the
    user's ``jobqueue.slurm`` Dask config plus ``cluster_options``), else a LocalCluster of
    ``n_jobs`` (default: the usable cores) single-threaded worker processes. ``n_jobs`` (units
    in flight) defaults to the cluster's worker threads (for GPU units: at most the GPUs it
    advertises); extra units wait in the scheduler, their timeout starting only when a worker
    takes them. A Ctrl-C while the cluster starts or is reached stops the run at once, leaving
    nothing running (:mod:`runner.dask_cluster`). A unit resource that no worker advertises
    (``gpus_per_unit``) is refused at start, before anything is written.

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
    By default the unit runs in a scratch directory under the Dask worker's local directory (the
    task rewrites the unit's paths to it). Each arm's record is sent back through Dask as soon
    as it is written there (an event on the run's topic, :mod:`runner.dask_task`) and written
    into ``<out>/records/`` by the orchestrator thread waiting for that unit (the attempt's
    handle, :mod:`runner.dask_attempt`): progress moves per arm, and an arm finished before its
    Dask worker died is kept. When the unit's process has ended, the task returns the attempt's
    records again (the last one received wins), its outcome, log (last 1 MiB) and artifacts
    (``.npz``, up to ``max_artifact_mb`` per unit; the rest is named in the log), deletes the
    scratch directory, and the orchestrator writes them into ``<out>/`` as a local worker would
    (:mod:`runner.dask_results`), then classifies the attempt as on the local backend. Only the
    orchestrator writes into ``<out>/``. With ``shared_dir=True`` (``--shared-dir``: ``<out>``
    mounted at the same path on every worker) the unit's process writes there itself; a worker
    that cannot see this attempt's ``unit.json`` reports the unit as crashed. Every record of an
    arm run on a Dask worker carries ``host`` (the machine's name) and ``dask_worker`` (its
    address; with ``--shared-dir`` added when the unit's task returns, so not after a lost
    worker).

When a Dask worker dies mid-unit
    The unit's process dies with it (its watchdog kills its process group when its parent, the
    Dask worker process, goes away). Dask re-runs a task whose worker died up to
    ``distributed.scheduler.allowed-failures`` times (default 3) elsewhere -- the same attempt,
    from scratch -- then raises ``KilledWorker``; clusters started here set 0, and
    ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` does the same for yours. ``KilledWorker``
    (or a task cancelled by a lost scheduler) is a crash of the attempt naming the lost worker:
    the orchestrator records its arms left without a record as ``crashed`` and re-runs them up
    to ``sweep.retries`` times as a new attempt.

GPUs
    ``gpus_per_unit`` (``--gpus-per-unit``): with ``k > 0`` each unit is submitted with
    ``resources={"GPU": k}``, so it only runs on workers started with ``--resources GPU=n``
    (at most ``n / k`` at a time there); ``"auto"`` (default) means 1 when a worker advertises
    a ``GPU`` resource, else 0. The unit's ``CUDA_VISIBLE_DEVICES`` is chosen on the worker as
    on the local backend, from the devices that Dask worker sees: one GPU per Dask worker
    (``CUDA_VISIBLE_DEVICES=i dask worker ... --resources GPU=1``, or dask-cuda) gives the unit
    that GPU; a worker with several gives its concurrent units one each; several workers of a
    host that all see the same GPUs would all use the first one. A LocalCluster started here
    advertises no resources; its worker ``i`` gives its unit GPU ``i`` (modulo the GPUs).

Workers need the project (``runner``, the task module) importable; the orchestrator's current
directory and ``PYTHONPATH`` entries that exist on the worker join the unit's ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import dask_cluster as cl
from .dask_attempt import DaskAttempt
from .dask_task import run_unit_on_dask_worker
from .executors import AttemptHandle, AttemptJob, BackendError, Executor
from .resources import usable_cores
from .store import read_json

__all__ = ["DaskExecutor", "run_unit_on_dask_worker", "INSTALL_HINT", "GPU_RESOURCE",
           "CLUSTERS"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ptycho-sweep[dask]'"
#: Name of the Dask worker resource a GPU unit asks for (``dask worker --resources GPU=1``).
GPU_RESOURCE = "GPU"
#: Clusters the backend can start itself (``cluster=``; ``scheduler=`` reaches a running one).
CLUSTERS = ("local", "slurm")
#: Default wait for the first worker of a Slurm cluster (its jobs may queue).
SLURM_WAIT_S = 3600.0


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise BackendError(f"backend 'dask' needs the optional dask and distributed packages "
                           f"({exc}); install them with: {INSTALL_HINT}") from None
    return distributed


# -- in the orchestrator ---------------------------------------------------------------------
class DaskExecutor(Executor):
    """Runs unit attempts as Dask tasks, each a fresh interpreter (see the module docstring).

    Args:
        n_jobs: units in flight; None: the cluster's worker threads (a LocalCluster started
            here gets ``n_jobs`` workers, default the usable cores; a Slurm cluster gets the
            jobs that give ``n_jobs`` worker threads, default one job).
        scheduler: address of a running scheduler (``tcp://host:8786``); None starts a
            cluster for the run (``cluster``).
        cluster: ``"local"`` (default) or ``"slurm"`` (dask-jobqueue); only without
            ``scheduler``.
        cluster_options: SLURMCluster arguments over the user's ``jobqueue.slurm`` config
            (a dict, or ``KEY=VALUE`` strings).
        gpus_per_unit: ``"auto"`` (1 if a worker advertises a GPU resource, else 0) or an
            integer >= 0; units with ``k > 0`` are submitted with ``resources={"GPU": k}``.
        shared_dir: the output directory is visible at the same path on every worker: units
            write into it directly instead of shipping their results back.
        grace_s, poll_s: as for the local backend (SIGTERM grace, supervision interval).
        max_artifact_mb: artifacts shipped back per unit attempt (scratch mode).
        connect_timeout_s: time to reach the scheduler and to wait for a first worker
            (default 30 s; 3600 s for the jobs of a Slurm cluster, which may queue).
        arm_timeout_s, memory_limit_mb: default limits of the units that set none (enforced
            on the Dask worker, see :mod:`runner.attempt`).
    """

    name = "dask"

    def __init__(self, n_jobs: int | None = None, *, scheduler: str | None = None,
                 cluster: str | None = None, cluster_options: Any = None,
                 gpus_per_unit: int | str = "auto", shared_dir: bool = False,
                 grace_s: float = 5.0, poll_s: float = 0.25, max_artifact_mb: float = 100.0,
                 connect_timeout_s: float | None = None, arm_timeout_s: float | None = None,
                 memory_limit_mb: float | None = None, **options: Any):
        super().__init__(n_jobs, **options)
        self._set_limits(arm_timeout_s, memory_limit_mb)
        self._requested_n_jobs = n_jobs
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise BackendError(f"scheduler = {scheduler!r} is invalid: must be an address such "
                               f"as 'tcp://host:8786'")
        if cluster is not None and cluster not in CLUSTERS:
            raise BackendError(f"cluster = {cluster!r} is invalid: must be one of "
                               f"{', '.join(CLUSTERS)}")
        if cluster is not None and scheduler is not None:
            raise BackendError(f"cluster = {cluster!r} and scheduler = {scheduler!r}: give "
                               f"one (a cluster to start, or the scheduler of a running one)")
        cluster_options = cl.parse_cluster_options(cluster_options)
        if cluster_options and cluster != "slurm":
            raise BackendError("cluster_options (--cluster-option) go with cluster 'slurm'")
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
        self.cluster = None if scheduler is not None else (cluster or "local")
        if self.cluster == "local" and gpus_per_unit not in ("auto", 0):
            raise BackendError(
                f"gpus_per_unit = {gpus_per_unit} needs Dask workers that advertise a "
                f"{GPU_RESOURCE!r} resource, and the LocalCluster started without a scheduler "
                f"advertises none: pass --scheduler of a cluster whose workers run with "
                f"--resources {GPU_RESOURCE}=1 (or use --backend local, which gives each unit "
                f"a GPU)")
        if self.cluster == "slurm":  # refused now (--dry-run too), not once the run starts
            cl.jobqueue()
            cl.slurm_jobs(cluster_options, n_jobs)
        self.scheduler = scheduler.strip() if scheduler else None
        self.cluster_options = cluster_options
        self.gpus_per_unit = gpus_per_unit
        self.shared_dir = shared_dir
        self.grace_s, self.poll_s = float(grace_s), float(poll_s)
        self.max_artifact_bytes = int(max_artifact_mb * 2**20)
        self.connect_timeout_s = float(connect_timeout_s or (
            SLURM_WAIT_S if self.cluster == "slurm" else 30.0))
        self._distributed = _import_distributed()
        self._client = self._cluster = None
        self._started, self._children_before = False, set()
        self._resources: dict[str, int] | None = None
        self._host_slots: dict[str, int] = {}
        self._cancelled = threading.Event()
        self._live: dict[str, Any] = {}
        self._streams: dict[str, queue.SimpleQueue] = {}
        self._topic = f"ptycho-sweep-records-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def _workers(self) -> dict[str, dict[str, Any]]:
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except TypeError:  # distributed < 2025: no n_workers argument, all workers
            info = self._client.scheduler_info()
        return dict(info.get("workers", {}))

    def start(self) -> None:
        """Reach the scheduler, or start a cluster, wait for workers and size the run. Every
        wait is interruptible; on any exception (KeyboardInterrupt included) the caller's
        :meth:`close` releases what was started (``with executor:`` does)."""
        if self._client is not None:
            return
        d = self._distributed
        wait_for = 1
        if self.cluster == "local":
            n_workers = self._requested_n_jobs or usable_cores()
            self._cluster = cl.new_local_cluster(d)  # the scheduler only: held before workers
            self._client = d.Client(self._cluster, set_as_default=False)
            self._children_before = cl.child_pids()
            self._cluster.scale(n_workers)
            wait_for = n_workers
            where = f"LocalCluster of {n_workers} worker process(es) at " \
                    f"{self._cluster.scheduler_address}"
        elif self.cluster == "slurm":
            jobs, n = cl.slurm_jobs(self.cluster_options, self._requested_n_jobs)
            self._requested_n_jobs = self.n_jobs = n
            self._cluster = cl.new_slurm_cluster(self.cluster_options)
            self._client = d.Client(self._cluster, set_as_default=False)
            self._cluster.scale(jobs=jobs)
            where = f"Slurm cluster of {jobs} job(s) at {self._cluster.scheduler_address}"
            log.info("dask: %d Slurm job(s) submitted (job name %s); waiting up to %g s for the "
                     "first to start (squeue --me)", jobs, self._cluster.job_name,
                     self.connect_timeout_s)
        else:
            cl.probe_scheduler(self.scheduler, self.connect_timeout_s)
            try:
                self._client = d.Client(self.scheduler, timeout=self.connect_timeout_s,
                                        set_as_default=False)
            except Exception as exc:
                raise BackendError(f"cannot connect to the Dask scheduler {self.scheduler!r}: "
                                   f"{type(exc).__name__}: {exc}") from None
            where = f"scheduler {self.scheduler}"
        self._client.subscribe_topic(self._topic, self._on_record_event)
        workers = self._workers()
        if len(workers) < wait_for:
            try:
                self._client.wait_for_workers(wait_for, timeout=self.connect_timeout_s)
            except (TimeoutError, OSError) as exc:
                hint = ("check the jobs with squeue and their logs" if self.cluster == "slurm"
                        else "start some with 'dask worker <scheduler address>'")
                raise BackendError(f"the Dask {where} has no workers (waited "
                                   f"{self.connect_timeout_s:g} s: {exc}); {hint}") from None
            workers = self._workers()
        self._size(workers, where)
        self._started = True

    def _size(self, workers: Mapping[str, Mapping[str, Any]], where: str) -> None:
        self._host_slots, threads, k, capacity = cl.capacity(workers, self.gpus_per_unit,
                                                             GPU_RESOURCE, where)
        self._resources = {GPU_RESOURCE: k} if k else None
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
        """Close the client and the cluster started here. A LocalCluster closed before it
        finished starting (an interrupted start) has its worker processes killed first: its
        close would otherwise wait for them to finish starting."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic(self._topic)
        if self.cluster == "local" and self._cluster is not None and not self._started:
            with contextlib.suppress(Exception):
                cl.abort_local_start(self._cluster, self._children_before)
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
    def _on_record_event(self, event: Any) -> None:
        """A record streamed by a worker-side task (runs on the client's event loop): queued
        for the thread that waits for that task, which writes it."""
        _, msg = event
        if isinstance(msg, Mapping):
            with self._lock:
                stream = self._streams.get(msg.get("key"))
            if stream is not None:
                stream.put(msg)

    def submit(self, job: AttemptJob) -> AttemptHandle:
        """Submit the attempt as a Dask task; the handle writes the records it streams back
        (in :meth:`~runner.dask_attempt.DaskAttempt.done` and ``result``), then the shipped
        results (see the module docstring)."""
        if self._client is None:
            raise RuntimeError("DaskExecutor.submit before start() (use it as a context "
                               "manager)")
        job = self._with_limits(job)
        unit = read_json(job.unit_json)
        if self._cancelled.is_set():
            return DaskAttempt(self, job, unit, "", None)
        payload = {
            "unit_id": job.unit_id, "unit": unit, "unit_json": str(job.unit_json),
            "timeout_s": job.timeout_s, "cwd": str(Path(job.cwd).resolve()),
            "pythonpath": [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p],
            "n_jobs": self.n_jobs, "host_slots": self._host_slots,
            "shared_dir": self.shared_dir, "grace_s": self.grace_s, "poll_s": self.poll_s,
            "max_artifact_bytes": self.max_artifact_bytes,
            "arm_timeout_s": job.arm_timeout_s, "memory_limit_mb": job.memory_limit_mb,
            "stream_topic": None if self.shared_dir else self._topic,
        }
        key = f"ptycho-unit-{job.unit_id}-{unit.get('attempt_id', '')}-{uuid.uuid4().hex[:8]}"
        attempt = DaskAttempt(self, job, unit, key, queue.SimpleQueue())
        with self._lock:
            self._streams[key] = attempt.stream
        future = self._client.submit(run_unit_on_dask_worker, payload, key=key, pure=False,
                                     resources=self._resources)
        attempt.future = future
        with self._lock:
            self._live[key] = future
        return attempt

    def _forget(self, key: str) -> None:
        with self._lock:
            self._live.pop(key, None)
            self._streams.pop(key, None)
