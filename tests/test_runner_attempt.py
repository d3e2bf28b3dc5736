"""The attempt supervisor: process-tree kills, timeouts enforced from outside the worker,
the per-arm timeout and the memory limit (runner/attempt.py, runner/proctree.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import pid_gone, sweep_dict, use_tasks, wait_for, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner.executors import BackendError, get_executor  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402


def _run(tmp_path, monkeypatch, task, **kw):
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    options = {k: kw.pop(k) for k in ("arm_timeout_s", "memory_limit_mb") if k in kw}
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(task=f"runner_tasks:{task}", **kw))
    out = tmp_path / "out"
    df = runner.run_sweep(sweep, out, progress=False, **options)
    return df, OutputPaths(out)


def _pids(paths: OutputPaths, unit_id: str, *names: str) -> list[int]:
    return [int((paths.artifact_dir(unit_id) / n).read_text()) for n in names]


def test_timeout_kills_descendants_in_other_sessions(tmp_path, monkeypatch):
    """D10: a child that called setsid, and a daemon re-parented away from its parent, die
    with the unit on its timeout."""
    df, paths = _run(tmp_path, monkeypatch, "setsid_task", timeout_s=4, retries=0)
    assert set(df["status"]) == {"timeout"}
    for pid in _pids(paths, df["unit_id"][0], "child.pid", "daemon.pid"):
        wait_for(lambda pid=pid: pid_gone(pid), timeout=5)


def test_finished_worker_leaves_no_process_in_another_session(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_TEST_RETURN", "1")
    df, paths = _run(tmp_path, monkeypatch, "setsid_task", timeout_s=60)
    assert set(df["status"]) == {"ok"}
    for pid in _pids(paths, df["unit_id"][0], "child.pid", "daemon.pid"):
        wait_for(lambda pid=pid: pid_gone(pid), timeout=5)


def test_timeout_is_enforced_within_a_second_while_the_worker_holds_its_gil(tmp_path,
                                                                            monkeypatch):
    """D12: the task ignores SIGTERM and never lets its interpreter run Python code again; the
    kill still lands less than a second after the deadline."""
    df, paths = _run(tmp_path, monkeypatch, "gil_hog_task", timeout_s=3, retries=0)
    assert set(df["status"]) == {"timeout"}
    late = df["wall_s"].max() - 3
    assert late < 1.0, f"killed {late:.2f} s after the deadline"
    (pid,) = _pids(paths, df["unit_id"][0], "spinning.pid")
    assert pid_gone(pid)


def test_arm_timeout_records_the_arm_and_runs_the_next_ones(tmp_path, monkeypatch):
    df, _ = _run(tmp_path, monkeypatch, "arm_hang_task", loss=("nll",), seed=(0, 1, 2),
                 timeout_s=60, retries=1, arm_timeout_s=3)
    by = {r.seed: r for r in df.itertuples()}
    assert by[0].status == by[2].status == "ok"
    assert by[1].status == "timeout" and "arm_timeout_s" in by[1].error
    assert by[1].started_at and by[1].host  # a supervisor's record has provenance too
    assert set(df["attempt"]) == {1}  # one attempt: the remaining arm ran in a new worker
    assert by[0].worker_pid != by[2].worker_pid


def test_memory_limit_records_oom_and_does_not_retry(tmp_path, monkeypatch):
    df, paths = _run(tmp_path, monkeypatch, "memory_hog_task", timeout_s=60, retries=2,
                     memory_limit_mb=250)
    by = {r.loss: r for r in df.itertuples()}
    assert by["nll"].status == "ok"
    oom = by["mae"]
    assert oom.status == "oom" and "memory_limit_mb = 250" in oom.error
    assert oom.attempt == 1  # not retried
    assert runner.plan_run(paths.root / "sweep.toml", paths.root).n_run == 1  # a re-run would


@pytest.mark.parametrize("name, value", [("memory_limit_mb", 0), ("arm_timeout_s", -1),
                                         ("memory_limit_mb", "lots"), ("arm_timeout_s", True)])
def test_limit_options_are_validated(name, value):
    with pytest.raises(BackendError, match=f"{name} = .* is invalid"):
        get_executor("local", **{name: value})
    with pytest.raises(BackendError, match="takes no option"):
        get_executor("inprocess", memory_limit_mb=100)


def test_limits_from_the_sweep_file(tmp_path, monkeypatch):
    """[sweep] arm_timeout_s / memory_limit_mb reach the supervisor; bad values are bad input."""
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    d = sweep_dict(task="runner_tasks:arm_hang_task", loss=("nll",), seed=(0, 1), timeout_s=60)
    d["sweep"]["arm_timeout_s"] = 3
    df = runner.run_sweep(write_sweep(tmp_path / "s.toml", d), tmp_path / "out",
                          progress=False)
    assert dict(zip(df["seed"], df["status"], strict=True)) == {0: "ok", 1: "timeout"}
    assert "3" in open(tmp_path / "out" / "sweep.toml").read()
    from runner.sweep import SweepError, load_sweep

    for key, bad in (("arm_timeout_s", 0), ("memory_limit_mb", "lots")):
        d["sweep"][key] = bad
        with pytest.raises(SweepError, match=f"sweep.{key} = .* is invalid"):
            load_sweep(d)
