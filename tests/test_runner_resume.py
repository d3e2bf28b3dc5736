"""Resume, --force, retries on re-run, a killed orchestrator, dry runs, other backends."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import (  # noqa: E402
    REPO,
    cli_env,
    pid_gone,
    sweep_dict,
    use_tasks,
    wait_for,
    write_sweep,
)

import runner  # noqa: E402
from runner import cli, executors  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.sweep import SweepError  # noqa: E402


@pytest.fixture(autouse=True)
def _tasks_on_path(monkeypatch):
    use_tasks(monkeypatch)


def _no_spawn(*args, **kwargs):
    raise AssertionError("a worker was started")


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(out.rglob("*"))}


def test_rerun_skips_ok_arms_and_force_reruns(tmp_path, monkeypatch):
    sweep = sweep_dict(N=(16, 32))
    out = tmp_path / "out"
    first = runner.run_sweep(sweep, out, progress=False)
    assert len(first) == 4 and set(first["status"]) == {"ok"}

    with monkeypatch.context() as m:
        m.setattr(executors.subprocess, "Popen", _no_spawn)
        again = runner.run_sweep(sweep, out, progress=False)
    pd.testing.assert_frame_equal(first, again)

    forced = runner.run_sweep(sweep, out, force=True, progress=False)
    assert len(forced) == 4 and set(forced["status"]) == {"ok"}
    assert not set(forced["pid"]) & set(first["pid"])
    assert len(list(OutputPaths(out).records_dir.iterdir())) == 4


def test_failed_arms_are_retried_on_rerun(tmp_path, monkeypatch):
    sweep = sweep_dict(task="runner_tasks:flaky_task", N=(16, 32))
    out = tmp_path / "out"
    monkeypatch.setenv("RUNNER_TEST_FAIL", "1")
    first = runner.run_sweep(sweep, out, progress=False).set_index("arm_id")
    assert list(first.groupby("N")["status"].unique().map(list)) == [["ok"], ["failed"]]
    assert first["error"].dropna().str.contains("flaky failure").all()
    monkeypatch.delenv("RUNNER_TEST_FAIL")
    plan = runner.plan_run(sweep, out)
    assert plan.n_run == 2 and list(plan.todo) == [u.unit_id for u in plan.units if u.N == 32]
    second = runner.run_sweep(sweep, out, progress=False).set_index("arm_id")
    assert set(second["status"]) == {"ok"}
    kept = first.index[first["N"] == 16]
    assert (second.loc[kept, "pid"] == first.loc[kept, "pid"]).all()
    assert (second.loc[kept, "attempt_id"] == first.loc[kept, "attempt_id"]).all()
    rerun = first.index[first["N"] == 32]
    assert not set(second.loc[rerun, "pid"]) & set(first.loc[rerun, "pid"])


def test_killed_orchestrator_then_resume(tmp_path):
    """SIGKILL the CLI while a worker hangs in its second arm: the orphaned worker dies (its
    watchdog; it would otherwise sleep 1000 s), records stay whole, and a re-run completes only
    the missing arm."""
    sweep = write_sweep(tmp_path / "slow.toml", sweep_dict(
        task="runner_tasks:slow_task", N=(16, 32, 64), timeout_s=900))
    out = tmp_path / "out"
    paths = OutputPaths(out)
    hung_unit = runner.load_sweep(sweep).plan()[-1]
    first_hung_arm = paths.record(hung_unit.arms[0].arm_id)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                             str(out), "--no-progress"], cwd=REPO,
                            env=cli_env(RUNNER_TEST_HANG_N=64), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(first_hung_arm.is_file, timeout=60)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the hanging worker should be running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for w in workers:
        wait_for(lambda w=w: pid_gone(w.pid), timeout=30)  # the watchdog took it down

    before = {p.stem: json.loads(p.read_text()) for p in paths.records_dir.glob("*.json")}
    assert len(before) == 5 and {r["status"] for r in before.values()} == {"ok"}
    df = runner.run_sweep(sweep, out, progress=False)
    assert len(df) == 6 and set(df["status"]) == {"ok"} and df["arm_id"].is_unique
    recs = {p.stem: json.loads(p.read_text()) for p in paths.records_dir.iterdir()}
    assert len(recs) == 6  # every file parses; no duplicates, no leftovers
    for arm_id, rec in before.items():
        assert recs[arm_id] == rec  # finished arms keep their original record
    rerun = recs[hung_unit.arms[1].arm_id]
    assert rerun["pid"] != before[hung_unit.arms[0].arm_id]["pid"]
    assert len(pd.read_parquet(paths.metrics_parquet)) == 6


def test_dry_run_writes_and_starts_nothing(tmp_path, monkeypatch, capsys):
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(N=(16, 32)))
    out = tmp_path / "out"
    monkeypatch.setattr(executors.subprocess, "Popen", _no_spawn)
    plan = runner.run_sweep(sweep, out, dry_run=True)
    assert list(plan["action"]) == ["run"] * 4 and not out.exists()
    assert cli.main(["run", str(sweep), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "2 unit(s) x 2 arm(s)" in text and "to run: 4 arm(s)" in text
    assert not out.exists()

    monkeypatch.undo()
    use_tasks(monkeypatch)
    runner.run_sweep(sweep, out, progress=False)
    snap = _snapshot(out)
    monkeypatch.setattr(executors.subprocess, "Popen", _no_spawn)
    assert list(runner.run_sweep(sweep, out, dry_run=True)["action"]) == ["skip"] * 4
    forced = runner.run_sweep(sweep, out, dry_run=True, force=True)
    assert list(forced["action"]) == ["run"] * 4 and set(forced["previous_status"]) == {"ok"}
    assert cli.main(["run", str(sweep), "--out", str(out), "--dry-run"]) == 0
    assert "skipped (already ok): 4" in capsys.readouterr().out
    assert _snapshot(out) == snap


def test_inprocess_backend_and_default_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = runner.run_sweep(sweep_dict(name="dbg"), backend="inprocess", progress=False)
    assert set(df["status"]) == {"ok"} and set(df["pid"]) == {__import__("os").getpid()}
    assert (tmp_path / "results" / "dbg" / "metrics.parquet").is_file()
    with pytest.raises(ValueError, match="valid backends: dask, inprocess, local"):
        runner.run_sweep(sweep_dict(name="x"), backend="nosuch")
    assert not (tmp_path / "results" / "x").exists()


def test_a_second_run_into_a_busy_directory_is_refused(tmp_path):
    sweep = sweep_dict()
    out = tmp_path / "out"
    runner.run_sweep(sweep, out, progress=False)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # what a running orchestrator holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SweepError, match="another ptycho-sweep run"):
            runner.run_sweep(sweep, out, force=True, progress=False)
        OutputPaths(out).lock.unlink(missing_ok=True)  # deleting a file cannot defeat it
        with pytest.raises(SweepError, match="another ptycho-sweep run"):
            runner.run_sweep(sweep, out, force=True, progress=False)
    finally:
        os.close(fd)


def test_cli_exit_codes_and_status(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict())
    out = tmp_path / "out"
    assert cli.main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    assert cli.main(["status", str(out)]) == 0
    assert "ok            2" in capsys.readouterr().out
    paths = OutputPaths(out)
    victim = sorted(paths.records_dir.glob("*.json"))[0]
    victim.unlink()  # one arm now pending
    assert cli.main(["status", str(out)]) == 1
    assert "pending       1" in capsys.readouterr().out
    assert cli.main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    assert len(list(paths.records_dir.glob("*.json"))) == 2
