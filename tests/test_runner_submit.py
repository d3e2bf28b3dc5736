"""The executor seam: ``submit(job) -> handle`` with ``done / result / cancel``, and a backend
added in one class (runner/executors.py, runner/orchestrator.py)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import pid_gone, sweep_dict, use_tasks, wait_for, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner import executors  # noqa: E402
from runner.attempt import AttemptJob, run_worker_process  # noqa: E402
from runner.executors import Executor, FutureHandle, get_executor  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.resources import worker_env  # noqa: E402
from runner.store import atomic_write_json, read_record  # noqa: E402
from runner.sweep import load_sweep  # noqa: E402


def _jobs(tmp_path, monkeypatch, task, **kw) -> tuple[list[AttemptJob], OutputPaths, list]:
    """One attempt job per unit of a small sweep, with its unit.json written."""
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    sw = load_sweep(sweep_dict(task=f"runner_tasks:{task}", loss=("nll",), **kw))
    paths = OutputPaths(tmp_path / "out")
    jobs, units = [], []
    for unit in sw.plan():
        spec = unit.for_attempt(paths, attempt_id="run-1")
        paths.artifact_dir(unit.unit_id).mkdir(parents=True)
        atomic_write_json(paths.unit_json(unit.unit_id), spec.to_dict())
        jobs.append(AttemptJob(unit.unit_id, paths.unit_json(unit.unit_id),
                               paths.worker_log(unit.unit_id), sw.timeout_s, Path.cwd()))
        units.append(spec)
    return jobs, paths, units


def test_local_submit_returns_at_once_and_queues_beyond_n_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_TEST_SLEEP", "1.5")
    jobs, paths, units = _jobs(tmp_path, monkeypatch, "slow_task", N=(16, 32))
    with get_executor("local", n_jobs=1) as ex:
        t0 = time.monotonic()
        first, second = ex.submit(jobs[0]), ex.submit(jobs[1])
        assert time.monotonic() - t0 < 0.5  # nothing waited for a worker
        assert not first.done() and not second.done()
        with pytest.raises(TimeoutError):
            first.result(timeout=0.1)
        second.cancel()  # still queued behind the first (n_jobs = 1): never starts
        res = first.result(timeout=60)
        assert first.done() and res.returncode == 0 and not res.cancelled
        assert read_record(paths, units[0].arms[0].arm_id)["status"] == "ok"
        assert second.result(timeout=10).cancelled
    assert not paths.worker_log(units[1].unit_id).exists()  # no worker was ever started
    assert read_record(paths, units[1].arms[0].arm_id) is None


def test_cancelling_one_handle_kills_its_worker_tree_only(tmp_path, monkeypatch):
    ready = tmp_path / "ready"
    ready.mkdir()
    monkeypatch.setenv("RUNNER_TEST_READY_DIR", str(ready))
    jobs, paths, units = _jobs(tmp_path, monkeypatch, "block_once_task", N=(64, 16),
                               seed=(0, 1))
    with get_executor("local", n_jobs=2, grace_s=1.0) as ex:
        blocked, other = ex.submit(jobs[0]), ex.submit(jobs[1])
        marker = ready / f"{units[0].unit_id}.ready"
        wait_for(marker.exists, timeout=60)
        pid = int(marker.read_text().split()[0])
        blocked.cancel()
        res = blocked.result(timeout=15)
        assert res.cancelled and pid_gone(pid)
        assert other.result(timeout=60).returncode == 0  # the other unit was left alone
    assert read_record(paths, units[0].arms[0].arm_id)["status"] == "ok"  # yielded before
    assert read_record(paths, units[0].arms[1].arm_id) is None
    assert all(read_record(paths, a.arm_id)["status"] == "ok" for a in units[1].arms)


class _SerialBackend(Executor):
    """A whole backend in a few lines: runs each attempt to its end inside submit, through the
    shared supervisor; declares that it does not enforce the per-arm and memory limits."""

    name = "serial-test"
    enforces_limits = False
    submitted: list[str] = []

    def submit(self, job: AttemptJob) -> FutureHandle:
        type(self).submitted.append(job.unit_id)
        env = worker_env(n_jobs=1, slot=0, cwd=job.cwd)
        return FutureHandle.finished(job, run_worker_process(job, env))


def test_a_backend_is_one_class_and_its_capabilities_are_honoured(tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setitem(executors._REGISTRY, "serial-test", _SerialBackend)
    monkeypatch.setattr(_SerialBackend, "submitted", [])
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(
        task="runner_tasks:ok_task", N=(16, 32), sweep={"memory_limit_mb": 4000}))
    with caplog.at_level(logging.WARNING, logger="runner"):
        df = runner.run_sweep(sweep, tmp_path / "out", backend="serial-test", progress=False)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert len(_SerialBackend.submitted) == 2
    assert "does not enforce sweep.memory_limit_mb" in caplog.text


def test_crashed_arms_are_resubmitted_through_the_seam(tmp_path, monkeypatch):
    """A retry is a second submit of the unit (attempt 2); other units go on meanwhile."""
    monkeypatch.setitem(executors._REGISTRY, "serial-test", _SerialBackend)
    monkeypatch.setattr(_SerialBackend, "submitted", [])
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    # mixed_task: N=256 segfaults on its first attempt only, N=16 is ok
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(
        task="runner_tasks:mixed_task", N=(256, 16), retries=1))
    df = runner.run_sweep(sweep, tmp_path / "out", backend="serial-test", progress=False)
    assert set(df["status"]) == {"ok"}
    assert sorted(df.loc[df["N"] == 256, "attempt"]) == [2, 2]
    uid = df.loc[df["N"] == 256, "unit_id"].iloc[0]
    assert _SerialBackend.submitted.count(uid) == 2 and len(_SerialBackend.submitted) == 3
