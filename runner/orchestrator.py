"""The orchestrator: run the units of a sweep and record their results.

:func:`run_sweep` validates the sweep, makes the output directory absolute, takes its lock
(:func:`runner.outdir.output_lock`) and only then checks and plans against it
(:mod:`runner.runplan`), before anything is written; it skips arms whose record is ``ok``
(resume; ``force=True`` reruns everything), and runs each remaining unit through an executor
(:mod:`runner.executors`): from its one thread it keeps up to ``n_jobs`` attempts in flight
(:meth:`~runner.executors.Executor.submit`, then the handles' ``done``/``result``; on
interruption :meth:`~runner.executors.Executor.cancel`). Results travel only through files of
the output directory (a cluster executor writes the records it ships back there before its
handle reports the attempt's result, see :mod:`runner.dask_executor`): after an attempt, every
arm of the unit without a record from that attempt gets one written here -- ``timeout``, or
``crashed`` (killed by a signal / nonzero exit / a lost cluster worker, with the log tail). A
crashed unit is re-run for its crashed arms up to ``sweep.retries`` times; ``failed`` (the task
raised) and ``timeout`` are not retried within a run, but are on the next run.
``metrics.parquet`` and ``metrics.csv`` are rewritten after each unit and at the end.

This module never imports TensorFlow (nor the task module).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .executors import AttemptHandle, AttemptJob, AttemptResult, Executor, get_executor
from .outdir import output_lock
from .paths import OutputPaths
from .progress import RunProgress
from .runplan import DEFAULT_ROOT, RunPlan, plan_run, resolve_out
from .store import atomic_write_json, atomic_write_text, consolidate, read_record
from .sweep import Problem, Sweep, SweepError, load_sweep
from .unit import Arm, Unit

__all__ = ["run_sweep", "plan_run", "resolve_out", "RunPlan", "DEFAULT_ROOT", "OutputError"]

log = logging.getLogger(__name__)

# -- running ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _on_interrupt(executor: Executor) -> Iterator[threading.Event]:
    """On SIGINT/SIGTERM (main thread only): kill the running workers, raise KeyboardInterrupt.

    Yields an event set by the signal: the exception can land inside a library callback that
    swallows it (distributed's garbage-collection hook does), so the caller checks the event
    too and raises again."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        log.warning("%s received: stopping the running workers", signal.Signals(signum).name)
        stop.set()
        executor.cancel()
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _crash_error(res: AttemptResult) -> str:
    if res.error:  # the executor knows better (e.g. the cluster worker running it died)
        return res.error
    rc = res.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = " (often the out-of-memory killer)" if -rc == signal.SIGKILL else ""
        return f"worker killed by signal {name} ({rc}){hint}"
    return f"worker exited with code {rc} without recording this arm"


class _UnitRun:
    """One unit's attempts in this run: the arms still pending and the attempt in flight."""

    def __init__(self, unit: Unit, arms: Sequence[Arm]):
        self.unit, self.pending = unit, list(arms)
        self.attempt = 0
        self.attempt_id = ""
        self.handle: AttemptHandle | None = None
        self.last_poll = 0.0


class _Run:
    """State of one run, driven from the orchestrator's one thread: submits attempts to the
    executor, classifies how they ended, retries crashed arms, moves the progress."""

    def __init__(self, plan: RunPlan, executor: Executor, progress: RunProgress, run_id: str):
        self.plan, self.executor, self.progress, self.run_id = plan, executor, progress, run_id
        self.sweep, self.paths = plan.sweep, plan.paths
        self.cwd = Path.cwd()
        self._settled: set[str] = set()

    # progress
    def settle(self, arm_id: str, status: str) -> None:
        if arm_id not in self._settled:
            self._settled.add(arm_id)
            self.progress.arm_done(status)

    def poll(self, ur: _UnitRun) -> None:
        """Settle the arms of the running attempt that have their record (every 1 s)."""
        now = time.monotonic()
        if now - ur.last_poll < 1.0:
            return
        ur.last_poll = now
        for a in ur.pending:
            if a.arm_id not in self._settled:
                rec = read_record(self.paths, a.arm_id)
                if rec and rec.get("attempt_id") == ur.attempt_id:
                    self.settle(a.arm_id, rec.get("status", "?"))

    def submit(self, ur: _UnitRun) -> None:
        """Write the unit file of the next attempt of ``ur`` and submit it."""
        ur.attempt += 1
        ur.attempt_id = f"{self.run_id}-{ur.attempt}"
        unit, paths = ur.unit, self.paths
        if ur.attempt == 1:
            self.progress.unit_started(unit.unit_id)
        spec = unit.for_attempt(paths, ur.pending, ur.attempt, ur.attempt_id)
        paths.artifact_dir(unit.unit_id).mkdir(parents=True, exist_ok=True)
        atomic_write_json(paths.unit_json(unit.unit_id), spec.to_dict())
        ur.handle = self.executor.submit(AttemptJob(
            unit.unit_id, paths.unit_json(unit.unit_id), paths.worker_log(unit.unit_id),
            self.sweep.timeout_s, self.cwd, arm_timeout_s=self.sweep.arm_timeout_s,
            memory_limit_mb=self.sweep.memory_limit_mb))

    def finish(self, ur: _UnitRun, res: AttemptResult) -> bool:
        """Classify an ended attempt; resubmit its crashed arms while retries allow. True
        when the unit is finished in this run."""
        if res.cancelled:
            return True
        crashed = self._classify(ur, res)
        if not crashed:
            return True
        if ur.attempt <= self.sweep.retries:
            log.warning("unit %s crashed (%s); retrying %d arm(s), attempt %d of %d",
                        ur.unit.unit_id, _crash_error(res), len(crashed), ur.attempt + 1,
                        self.sweep.retries + 1)
            ur.pending = crashed
            self.submit(ur)
            return False
        for a in crashed:
            self.settle(a.arm_id, "crashed")
        return True

    def _classify(self, ur: _UnitRun, res: AttemptResult) -> list[Arm]:
        """Settle arms recorded by the worker; record the others (timeout/crashed). Returns
        the crashed arms."""
        unit, crashed = ur.unit, []
        for a in ur.pending:
            rec = read_record(self.paths, a.arm_id)
            if rec is not None and rec.get("attempt_id") == ur.attempt_id:
                self.settle(a.arm_id, rec.get("status", "?"))
                continue
            rec = {**unit.arm_columns(a), "pid": res.pid, "wall_s": round(res.wall_s, 3),
                   "attempt": ur.attempt, "attempt_id": ur.attempt_id,
                   "exit_code": res.returncode, "log_tail": res.log_tail}
            if res.timed_out:
                rec.update(status="timeout", error=f"timed out after {self.sweep.timeout_s:g} s "
                                                   f"(sweep.timeout_s); worker killed")
            else:
                rec.update(status="crashed", error=_crash_error(res))
                crashed.append(a)
            atomic_write_json(self.paths.record(a.arm_id), rec)
            if rec["status"] == "timeout":
                self.settle(a.arm_id, "timeout")
        if res.timed_out:
            log.warning("unit %s timed out after %g s; log tail:\n%s", unit.unit_id,
                        self.sweep.timeout_s, res.log_tail)
        elif crashed:
            log.warning("unit %s: %s; log tail:\n%s", unit.unit_id, _crash_error(res),
                        res.log_tail)
        return crashed


def _refresh_records(paths: OutputPaths, records: dict[str, dict], unit: Unit) -> None:
    for a in unit.arms:
        rec = read_record(paths, a.arm_id)
        if rec is not None:
            records[a.arm_id] = rec


def _consolidate(paths: OutputPaths, records: Mapping[str, Mapping[str, Any]] | None = None):
    try:
        return consolidate(paths, records)
    except Exception:  # never lose a run over the derived table; records are the truth
        log.exception("could not write %s", paths.metrics_parquet)
        return None


class OutputError(RuntimeError):
    """The output directory could not be written (disk full, permissions...), or the results
    table could not be built; whatever was recorded before stays on disk."""


def run_sweep(sweep: str | Path | Mapping[str, Any] | Sweep, out_dir: str | Path | None = None,
              n_jobs: int | None = None, backend: str = "local", force: bool = False,
              dry_run: bool = False, progress: bool = True, overrides: Sequence[str] = (),
              **backend_options: Any):
    """Run a sweep; return its results table (one row per recorded arm).

    Args:
        sweep: path of a TOML sweep file, an equivalent dict, or a :class:`Sweep`.
        out_dir: output directory (default ``results/<sweep name>`` under the current
            directory); made absolute before anything runs. It may hold the same sweep
            (resume) or one with the same settings and another grid or arms (a study grows
            in place: only the new arms run, every old row is kept).
        n_jobs: units run concurrently (each in its own worker process); None: the
            backend's default (1 locally; for ``"dask"`` the size of the cluster).
        backend: executor name (``"local"``, ``"inprocess"``, ``"dask"``... see
            :func:`runner.executors.available_executors`); ``backend_options`` go to it
            (for ``"dask"``: ``scheduler=``, ``gpus_per_unit=``, ``shared_dir=``; see
            :class:`runner.dask_executor.DaskExecutor`).
        force: rerun arms whose record is already ``ok``.
        dry_run: validate and plan only; log the plan and return it as a table (columns
            ``action`` and ``previous_status``) without writing or starting anything.
        progress: show a progress bar (only when stderr is a terminal).
        overrides: ``"section.key=value"`` settings applied over the file's (see
            :func:`runner.sweep.apply_overrides`); recorded in the copied ``sweep.toml``.

    Raises:
        SweepError: invalid sweep or output directory (nothing run).
        BackendError: unknown or unavailable backend, bad backend options, or a cluster
            that cannot be reached (nothing run).
        OutputError: the arms ran but the results table could not be written.
        KeyboardInterrupt: interrupted; running workers were killed, finished arms kept.
    """
    sw = load_sweep(sweep, overrides=overrides)
    out = resolve_out(sw, out_dir)
    if dry_run:
        plan = plan_run(sw, out, force)
        log.info("dry run, nothing written:\n%s", plan.describe())
        return plan.frame()
    executor = get_executor(backend, n_jobs=n_jobs, **backend_options)  # validates options
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(sw.source, [Problem("--out", f"--out {out}: cannot create the output "
                                                      f"directory: {exc.strerror or exc}")]) \
            from None
    paths = OutputPaths(out)
    try:
        with output_lock(paths):  # lock first, then check: two starts cannot both pass
            plan = plan_run(sw, out, force)
            with executor:  # started (e.g. connected to a cluster) before anything is written
                df = _run_locked(plan, executor, progress)
    except OSError as exc:  # e.g. disk full while writing unit files or records
        raise OutputError(f"cannot write to the output directory {out}: "
                          f"{exc.strerror or exc}; the arms recorded so far are kept: free "
                          f"space (or fix permissions) and run again to resume") from exc
    except BaseException:
        if created and not any(p.name != paths.lock.name for p in out.iterdir()):
            with contextlib.suppress(OSError):
                paths.lock.unlink(missing_ok=True)
                out.rmdir()
        raise
    if df is None:
        raise OutputError(f"could not write the results table {paths.metrics_parquet} (see the "
                         f"log above); the arms' records are kept in {paths.root}: fix the "
                         f"cause and run again to rebuild it")
    counts = df["status"].value_counts()
    log.info("sweep %s finished: %s arm(s) in the table (%s)", sw.name, len(df),
             ", ".join(f"{n} {s}" for s, n in counts.items()))
    return df


def _run_locked(plan: RunPlan, executor: Executor, progress: bool):
    """The run proper, with the executor started and the output directory locked; returns
    the consolidated table (None if it could not be written)."""
    paths, sw = plan.paths, plan.sweep
    text = (plan.recorded or sw).to_toml()
    if not paths.sweep_toml.is_file() or paths.sweep_toml.read_text("utf-8") != text:
        atomic_write_text(paths.sweep_toml, text)
    records = dict(plan.existing)
    log.info("sweep %s: %d arm(s) in %d unit(s) to run, %d already ok; backend %s, "
             "n_jobs %d, output %s", sw.name, plan.n_run, len(plan.todo),
             plan.n_arms - plan.n_run, executor.name, executor.n_jobs, paths.root)
    done = False
    try:
        if plan.todo:
            _warn_capabilities(sw, executor)
            _execute(plan, executor, records, progress)
        done = True
    finally:  # the records in memory are complete after a full run: no second read of them all
        df = _consolidate(paths, records if done else None)
    return df


def _warn_capabilities(sw: Sweep, executor: Executor) -> None:
    """Say what the backend will not do that the sweep asks for (its capability flags)."""
    if not executor.isolated:
        log.warning("backend %r runs tasks in this process: NOT isolated", executor.name)
    if not executor.enforces_timeout:
        log.warning("backend %r does not enforce sweep.timeout_s (%g s)", executor.name,
                    sw.timeout_s)
    limits = [k for k in ("arm_timeout_s", "memory_limit_mb") if getattr(sw, k) is not None]
    if limits and not executor.enforces_limits:
        log.warning("backend %r does not enforce sweep.%s", executor.name,
                    " / sweep.".join(limits))


#: How often the orchestrator looks at the attempts in flight, seconds.
POLL_S = 0.2


def _execute(plan: RunPlan, executor: Executor, records: dict[str, dict], progress: bool) -> None:
    """Keep up to ``executor.n_jobs`` units in flight until every unit of the plan is done;
    after each unit, refresh its records and rewrite the tables."""
    by_id = {u.unit_id: u for u in plan.units}
    tracker = RunProgress.for_plan(plan, bar=progress)  # a bar only on a terminal
    bar = tracker.bar
    run = _Run(plan, executor, tracker, uuid.uuid4().hex[:12])
    redirect = contextlib.nullcontext()
    if bar is not None:  # route console log lines through tqdm.write (bar stays intact)
        from tqdm.contrib.logging import logging_redirect_tqdm

        consoles = [lg for lg in (logging.getLogger(), logging.getLogger("runner"))
                    if any(type(h) is logging.StreamHandler for h in lg.handlers)]
        if consoles:
            redirect = logging_redirect_tqdm(loggers=consoles)
    waiting = collections.deque(_UnitRun(by_id[uid], arms) for uid, arms in plan.todo.items())
    running: list[_UnitRun] = []
    try:
        with redirect, _on_interrupt(executor) as stop:
            while waiting or running:
                while waiting and len(running) < executor.n_jobs:
                    ur = waiting.popleft()
                    run.submit(ur)
                    running.append(ur)
                ended = False
                for ur in list(running):
                    if stop.is_set():  # interrupted, but the exception was swallowed
                        raise KeyboardInterrupt
                    if not ur.handle.done():
                        run.poll(ur)
                        continue
                    ended = True
                    if not run.finish(ur, ur.handle.result()):
                        continue  # a retry is in flight
                    running.remove(ur)
                    uid = ur.unit.unit_id
                    _refresh_records(plan.paths, records, by_id[uid])
                    _consolidate(plan.paths, records)
                    statuses = [records.get(a.arm_id, {}).get("status")
                                for a in by_id[uid].arms]
                    tracker.unit_done(uid, statuses)  # one log line: statuses, time, ETA
                if stop.is_set():
                    raise KeyboardInterrupt
                if not ended and running:
                    executor.wait([ur.handle for ur in running], POLL_S)
    except BaseException:
        executor.cancel()
        raise
    finally:
        tracker.close()
