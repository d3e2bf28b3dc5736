"""A unit that raises, segfaults, hangs, or crashes once costs only its own arms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import pid_gone, sweep_dict, use_tasks, wait_for, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402


def test_failed_crashed_timeout_and_retried_units(tmp_path, monkeypatch):
    use_tasks(monkeypatch)
    sweep = write_sweep(tmp_path / "mixed.toml", sweep_dict(
        task="runner_tasks:mixed_task", N=(16, 32, 64, 128, 256), timeout_s=3, retries=1))
    out = tmp_path / "out"
    assert cli.main(["run", str(sweep), "--out", str(out), "--n-jobs", "2",
                     "--no-progress"]) == 1
    df = runner.load_results(out)
    assert len(df) == 10
    by = {(r.N, r.loss): r for r in df.itertuples()}
    paths = OutputPaths(out)

    # N=16: fine
    assert by[16, "nll"].status == by[16, "mae"].status == "ok"
    # N=32: the arm yielded before the exception is kept, the other one failed
    assert by[32, "nll"].status == "ok"
    failed = by[32, "mae"]
    assert failed.status == "failed" and failed.error == "ValueError: boom at N=32"
    assert "raise ValueError" in failed.error_traceback
    outcome = json.loads(paths.outcome(failed.unit_id).read_text())
    assert outcome["status"] == "failed" and "boom at N=32" in outcome["traceback"]
    # N=64: segfault, retried once, still crashed; the signal is named
    for loss in ("nll", "mae"):
        r = by[64, loss]
        assert r.status == "crashed" and r.attempt == 2
        assert r.error == "worker killed by signal SIGSEGV (-11)"
        assert "Segmentation fault" in r.log_tail  # faulthandler's dump from the log
    # N=128: timeout; the worker's child died with it
    for loss in ("nll", "mae"):
        r = by[128, loss]
        assert r.status == "timeout" and "timed out after 3 s" in r.error and r.attempt == 1
    child = int((paths.artifact_dir(by[128, "nll"].unit_id) / "child.pid").read_text())
    wait_for(lambda: pid_gone(child), timeout=10)
    # N=256: crashed on attempt 1, ok on the retry
    assert by[256, "nll"].status == by[256, "mae"].status == "ok"
    assert by[256, "nll"].attempt == 2
    # every unit had its own worker process (retries get a new one)
    assert df.groupby("unit_id")["pid"].nunique().max() == 1
    assert df.drop_duplicates("unit_id")["pid"].nunique() == 5

    # status reports the damage (exit 1); a re-run retries exactly the non-ok arms
    assert cli.main(["status", str(out)]) == 1
    plan = runner.plan_run(sweep, out)
    assert {a.arm_id for arms in plan.todo.values() for a in arms} == set(
        df.loc[df["status"] != "ok", "arm_id"])


def test_interrupted_orchestrator_kills_worker_and_children(tmp_path, monkeypatch):
    """SIGINT/SIGTERM to the orchestrator: its workers and their children are killed, the
    interrupted arms get no record (a re-run runs them), the exit status is 130."""
    import signal
    import subprocess

    import psutil
    from runner_testlib import REPO, cli_env

    use_tasks(monkeypatch)
    sweep = write_sweep(tmp_path / "hang.toml", sweep_dict(
        task="runner_tasks:mixed_task", N=(128,), nphotons=(1e4, 1e5), timeout_s=600))
    units = runner.load_sweep(sweep).plan()
    for sig, n_jobs in ((signal.SIGINT, 2), (signal.SIGTERM, 1)):
        out = tmp_path / f"out-{sig.name}"
        paths = OutputPaths(out)
        pid_files = [paths.artifact_dir(u.unit_id) / "child.pid" for u in units[:n_jobs]]
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                                 str(out), "--no-progress", "--n-jobs", str(n_jobs)],
                                cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            children = []
            for f in pid_files:  # every running worker has started its `sleep 1000`
                wait_for(lambda f=f: f.is_file() and f.read_text().strip(), timeout=60)
                children.append(int(f.read_text()))
            workers = [p.pid for p in psutil.Process(proc.pid).children()]
            assert len(workers) == n_jobs
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "interrupted" in err and "crashed" not in err
        for pid in children + workers:
            wait_for(lambda pid=pid: pid_gone(pid), timeout=10)
        assert not list(paths.records_dir.glob("*.json"))
        assert runner.plan_run(sweep, out).n_run == 4
