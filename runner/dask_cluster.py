"""Reaching or starting the Dask cluster of a run (part of the ``dask`` backend).

Kept apart from :mod:`runner.dask_executor` (which runs the units) so each reads on its own. Every
function here is built so that a Ctrl-C while the cluster starts stops the run at once and leaves
nothing running:

* a running scheduler (``--scheduler``) is first *probed* on a private event loop of the calling
  thread (:func:`probe_scheduler`); a Ctrl-C cancels the probe cleanly. Only a scheduler that
  answers gets a :class:`distributed.Client` (a client interrupted half-way through its
  connection would hang the interpreter's exit while it closes);
* a cluster started here is created *empty* (:func:`new_local_cluster`, :func:`new_slurm_cluster`
  start only the scheduler, in this process, and no worker), so the executor holds it before
  anything is started; workers are then asked for with ``scale`` and waited for with an
  interruptible wait, and :meth:`DaskExecutor.close` closes whatever exists, workers and Slurm jobs
  included (``scancel``).

Slurm (``cluster="slurm"``, ``--cluster slurm``) goes through `dask-jobqueue
<https://jobqueue.dask.org>`_: a :class:`dask_jobqueue.SLURMCluster` built from the user's Dask
configuration (``jobqueue.slurm`` in ``~/.config/dask/jobqueue.yaml``: cores, memory, walltime,
queue, account, ...) with the run's own settings on top: ``cluster_options`` (``--cluster-option
KEY=VALUE``: any SLURMCluster argument), the job name ``ptycho-sweep``, a scheduler that does not
re-run lost tasks itself (``allowed_failures=0``, the sweep's retries apply). GPUs are the
config's business too: one worker process per job, as many threads as GPUs (``cores: 4``,
``processes: 1``, ``job_extra_directives: ["--gres=gpu:4"]``, ``worker_extra_args:
["--resources", "GPU=4"]``) gives each of a job's concurrent units its own GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .executors import BackendError

__all__ = ["probe_scheduler", "new_local_cluster", "new_slurm_cluster", "slurm_jobs",
           "child_pids", "abort_local_start", "capacity", "parse_cluster_options", "jobqueue",
           "JOBQUEUE_HINT", "PRELOAD"]

log = logging.getLogger(__name__)

JOBQUEUE_HINT = "pip install 'ptycho-sweep[slurm]'"
#: Dask preload of the workers of clusters started here (they ignore SIGINT)
PRELOAD = "runner.dask_task"
#: Scheduler settings of every cluster started here: no dashboard (its HTTP routes on a free
#: port) and no Dask-level re-runs of a unit whose worker died (the sweep's retries apply).
SCHEDULER_OPTIONS = {"dashboard_address": ":0", "allowed_failures": 0}


def probe_scheduler(address: str, timeout_s: float) -> None:
    """Check that a Dask scheduler answers at ``address`` (BackendError if not). Runs on its own
    event loop: a KeyboardInterrupt cancels it and leaves no connection behind."""
    from distributed.comm import connect

    async def identity() -> dict:
        comm = await connect(address, timeout=timeout_s)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), timeout_s)
        finally:
            comm.abort()

    try:
        asyncio.get_running_loop()
        return  # called from async code (a notebook): the Client's own timeout applies
    except RuntimeError:
        pass
    try:
        reply = asyncio.run(identity())
    except (TimeoutError, OSError, ValueError, TypeError) as exc:
        raise BackendError(f"cannot connect to the Dask scheduler {address!r}: "
                           f"{type(exc).__name__}: {exc}") from None
    if not isinstance(reply, Mapping) or reply.get("type") != "Scheduler":
        raise BackendError(f"{address!r} answered, but is not a Dask scheduler (identity: "
                           f"{str(reply)[:200]})")


def new_local_cluster(distributed: Any) -> Any:
    """A LocalCluster with a scheduler and no worker yet (``cluster.scale(n)`` adds them):
    worker processes of one thread, which ignore SIGINT (:data:`PRELOAD`)."""
    return distributed.LocalCluster(
        n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs=dict(SCHEDULER_OPTIONS), silence_logs=logging.ERROR,
        preload=[PRELOAD])


def child_pids() -> set[int]:
    """This process's children now."""
    import psutil

    return {p.pid for p in psutil.Process().children()}


def abort_local_start(cluster: Any, before: set[int]) -> None:
    """Close a LocalCluster whose start was interrupted, at once: SIGKILL the worker processes
    it spawned since ``before`` (:func:`child_pids`; multiprocessing children running
    ``spawn_main``: the cluster only knows its workers once they have started), then close it
    without the tracebacks of the nannies that failed to start."""
    import psutil

    for child in psutil.Process().children():
        if child.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in child.cmdline()):
                child.kill()
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado.application")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        cluster.close(timeout=10)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def capacity(workers: Mapping[str, Mapping[str, Any]], gpus_per_unit: int | str, gpu: str,
             where: str) -> tuple[dict[str, int], int, int, int]:
    """What the cluster's ``workers`` (``scheduler_info()["workers"]``) offer the run:
    ``(worker threads of each worker's host, threads, GPUs per unit, units at once)``.
    BackendError if units ask for ``gpu`` resources that no worker advertises."""
    per_host: dict[str, int] = {}
    for w in workers.values():
        per_host[w.get("host", "")] = per_host.get(w.get("host", ""), 0) + int(
            w.get("nthreads", 1))
    host_slots = {a: per_host[w.get("host", "")] for a, w in workers.items()}
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    gpus = [float((w.get("resources") or {}).get(gpu, 0)) for w in workers.values()]
    k = gpus_per_unit
    if k == "auto":
        k = 1 if any(g > 0 for g in gpus) else 0
    if not k:
        return host_slots, threads, 0, threads
    if not any(g >= k for g in gpus):
        raise BackendError(
            f"gpus_per_unit = {k} but no worker of the Dask {where} advertises {gpu}>={k} "
            f"(worker resources: "
            f"{sorted({str(w.get('resources') or {}) for w in workers.values()})}); start "
            f"workers with --resources {gpu}={k} or use --gpus-per-unit 0")
    return host_slots, threads, int(k), sum(int(g // k) for g in gpus)


def jobqueue() -> Any:
    """``dask_jobqueue`` (BackendError with the install hint without it). Its import replaces
    the SIGINT handler with ``sys.exit()`` (a Ctrl-C would end the run with status 0): the
    handler in place before is put back."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise BackendError(f"cluster 'slurm' needs the optional dask-jobqueue package ({exc}); "
                           f"install it with: {JOBQUEUE_HINT}") from None
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


def _setting(options: Mapping[str, Any], key: str) -> Any:
    """A SLURMCluster setting: the run's option, else the user's Dask config."""
    import dask

    if key in options:
        return options[key]
    return dask.config.get(f"jobqueue.slurm.{key.replace('_', '-')}", None)


def parse_cluster_options(options: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """SLURMCluster arguments from a mapping, or from ``KEY=VALUE`` strings (``--cluster-option``:
    VALUE is read as JSON when it is JSON -- ``cores=8``, ``job_extra_directives=["--gres=gpu:1"]``
    -- else kept as text: ``walltime=02:00:00``, ``memory=16GiB``). Dashes in KEY become
    underscores."""
    if options is None or isinstance(options, Mapping):
        return dict(options or {})
    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise BackendError(f"--cluster-option {item!r} is invalid: must be KEY=VALUE, e.g. "
                               f"walltime=02:00:00")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def slurm_jobs(options: Mapping[str, Any], n_jobs: int | None) -> tuple[int, int]:
    """``(jobs, units in flight)``: the Slurm jobs that give ``n_jobs`` worker threads (one
    unit each; None: one job), from the ``cores`` per job of ``options`` or the Dask config."""
    cores = _setting(options, "cores")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise BackendError(
            f"cluster 'slurm': cores per job = {cores!r}; set jobqueue.slurm.cores (and "
            f"memory, walltime, queue...) in ~/.config/dask/jobqueue.yaml or pass "
            f"--cluster-option cores=N")
    jobs = 1 if n_jobs is None else math.ceil(n_jobs / cores)
    return jobs, (cores * jobs if n_jobs is None else n_jobs)


def new_slurm_cluster(options: Mapping[str, Any] | None = None) -> Any:
    """A :class:`dask_jobqueue.SLURMCluster` with no job submitted yet (``cluster.scale(jobs=
    k)`` submits them; ``cluster.job_script()`` shows the script). ``options`` override the
    user's ``jobqueue.slurm`` Dask config."""
    jq = jobqueue()
    kwargs: dict[str, Any] = {"job_name": "ptycho-sweep", **(options or {})}
    scheduler = dict(SCHEDULER_OPTIONS)
    scheduler.update(kwargs.pop("scheduler_options", None) or {})
    kwargs["scheduler_options"] = scheduler
    try:
        return jq.SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"cluster 'slurm': cannot build the SLURMCluster from "
                           f"~/.config/dask/jobqueue.yaml and --cluster-option: {exc}") from None
