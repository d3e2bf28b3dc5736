"""The dask backend on real distributed.LocalClusters: every unit is still a fresh process
(started by a Dask worker), results are shipped back into the orchestrator's output directory,
and failures, lost Dask workers and interruptions end as they do on the local backend."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import (  # noqa: E402
    REPO,
    cli_env,
    pid_gone,
    run_cli,
    sweep_dict,
    tasks_pythonpath,
    use_tasks,
    wait_for,
    write_sweep,
)

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.executors import BackendError, get_executor  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402

IDENTITY = ["arm_id", "unit_id", "N", "gridsize", "nphotons", "loss", "seed", "status", "error",
            "attempt"]
METRICS = ["amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "amp_frc50", "phase_frc50",
           "amp_mae", "amp_mse", "phase_mae", "phase_mse", "final_loss"]
HINT = "pip install 'ptycho-sweep[dask]'"


@contextlib.contextmanager
def local_cluster(**kwargs):
    """A real cluster: 2 worker processes (each under a nanny) of 1 thread, and a client."""
    distributed = pytest.importorskip("distributed")
    scheduler_kwargs = {"dashboard_address": ":0", **kwargs.pop("scheduler_kwargs", {})}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR,
                                  scheduler_kwargs=scheduler_kwargs, **kwargs) as cl, \
            distributed.Client(cl, set_as_default=False) as client:
        yield cl, client


@pytest.fixture(scope="module")
def ready_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ready")


@pytest.fixture(scope="module")
def cluster(ready_dir):
    """One CPU-only cluster for the module; its workers see the test tasks and ready_dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", tasks_pythonpath())
        mp.setenv("RUNNER_TEST_READY_DIR", str(ready_dir))
        with local_cluster() as (cl, client):
            yield cl, client


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df[IDENTITY + METRICS].sort_values("arm_id").reset_index(drop=True)


def worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


# -- without Dask ----------------------------------------------------------------------------
NO_DASK = """
import json, sys
import runner
from runner import cli
assert "dask" in runner.available_executors()
df = runner.run_sweep(json.loads(sys.argv[1]), sys.argv[2], n_jobs=2, progress=False)
assert cli.main(["run", sys.argv[3], "--out", sys.argv[2] + "-cli", "--no-progress"]) == 0
print("STATUSES", sorted(set(df["status"])))
print("DASK_MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""


def test_runner_and_the_local_backend_never_import_dask(tmp_path):
    sweep = sweep_dict(N=(16, 32))
    toml = write_sweep(tmp_path / "s.toml", sweep)
    proc = subprocess.run([sys.executable, "-c", NO_DASK, json.dumps(sweep),
                           str(tmp_path / "out"), str(toml)], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUSES ['ok']" in proc.stdout
    assert "DASK_MODULES []" in proc.stdout


def test_dask_backend_without_dask_fails_cleanly(tmp_path, monkeypatch, capsys):
    use_tasks(monkeypatch)
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # `import distributed` -> ImportError
    with pytest.raises(BackendError, match=r"pip install 'ptycho-sweep\[dask\]'"):
        get_executor("dask")
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict())
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"], ["--scheduler", "tcp://127.0.0.1:8786"]):
        assert cli.main(["run", str(sweep), "--out", str(out), "--backend", "dask",
                         "--no-progress", *extra]) == 2
        assert HINT in capsys.readouterr().err
    assert not out.exists()


# -- on a cluster ----------------------------------------------------------------------------
def test_same_table_as_local_each_unit_a_fresh_process(cluster, tmp_path, monkeypatch):
    cl, client = cluster
    use_tasks(monkeypatch)
    sweep = sweep_dict(N=(16, 32), gridsize=(1, 2))
    local = runner.run_sweep(sweep, tmp_path / "local", n_jobs=2, progress=False)
    remote = runner.run_sweep(sweep, tmp_path / "dask", backend="dask",
                              scheduler=cl.scheduler_address, progress=False)
    assert len(remote) == 8 and set(remote["status"]) == {"ok"}
    pd.testing.assert_frame_equal(comparable(local), comparable(remote))
    env_cols = sorted(c for c in local if c.startswith("env_"))  # same thread split
    pd.testing.assert_frame_equal(local.sort_values("arm_id")[env_cols].reset_index(drop=True),
                                  remote.sort_values("arm_id")[env_cols].reset_index(drop=True))

    # isolation: one fresh process per unit, started by a Dask worker, which it is not
    dask_pids = set(worker_pids(client).values())
    per_unit = remote.groupby("unit_id")["pid"].agg(["nunique", "first"])
    assert (per_unit["nunique"] == 1).all() and per_unit["first"].nunique() == 4
    assert not set(remote["pid"]) & (dask_pids | {os.getpid()})
    assert set(remote["parent_pid"]) <= dask_pids
    assert not remote["tf_loaded"].any()
    # where each arm ran: the Dask worker's address and its host
    assert set(remote["dask_worker"]) <= set(worker_pids(client))
    assert set(remote["host"]) == {socket.gethostname()}
    assert "dask_worker" not in local

    # the output directory looks as if the units had run here
    lp, dp = OutputPaths(tmp_path / "local"), OutputPaths(tmp_path / "dask")
    assert len(pd.read_parquet(dp.metrics_parquet)) == 8 and dp.metrics_csv.is_file()
    for uid in remote["unit_id"].unique():
        assert json.loads(dp.outcome(uid).read_text())["status"] == "ok"
        log_text = dp.worker_log(uid).read_text()
        assert "on Dask worker tcp://" in log_text and f"unit {uid}: ok" in log_text
        shipped = sorted(p.name for p in dp.artifact_dir(uid).iterdir())
        assert shipped == sorted(p.name for p in lp.artifact_dir(uid).iterdir())
        for name in shipped:
            with np.load(dp.artifact_dir(uid) / name) as a, \
                    np.load(lp.artifact_dir(uid) / name) as b:
                assert np.array_equal(a["amplitude"], b["amplitude"])
    # and the workers' scratch directories are gone
    leftovers = client.run(lambda dask_worker: sorted(
        p.name for p in Path(dask_worker.local_directory).glob("ptycho-unit-*")))
    assert not any(leftovers.values()), leftovers


def test_failed_crashed_and_timed_out_units_as_on_local(cluster, tmp_path, monkeypatch):
    """mixed_task: N=16 ok; N=32 first arm ok then raises; N=64 segfaults (retried once);
    N=128 hangs with a child process past the timeout."""
    cl, _ = cluster
    use_tasks(monkeypatch)
    sweep = sweep_dict(task="runner_tasks:mixed_task", N=(16, 32, 64, 128), timeout_s=3,
                       retries=1)
    local = runner.run_sweep(sweep, tmp_path / "local", n_jobs=2, progress=False)
    remote = runner.run_sweep(sweep, tmp_path / "dask", backend="dask",
                              scheduler=cl.scheduler_address, progress=False)
    pd.testing.assert_frame_equal(comparable(local), comparable(remote))
    by = {(r.N, r.loss): r for r in remote.itertuples()}
    assert by[32, "nll"].status == "ok" and by[32, "mae"].error == "ValueError: boom at N=32"
    assert by[64, "nll"].error == "worker killed by signal SIGSEGV (-11)"
    assert "Segmentation fault" in by[64, "nll"].log_tail and by[64, "nll"].attempt == 2
    assert by[128, "nll"].status == "timeout" and "timed out after 3 s" in by[128, "nll"].error
    # the hanging unit's child was killed with its process group (its pid file came back)
    child = OutputPaths(tmp_path / "dask").artifact_dir(by[128, "nll"].unit_id) / "child.pid"
    wait_for(lambda: pid_gone(int(child.read_text())), timeout=10)
    assert remote.drop_duplicates("unit_id")["pid"].nunique() == 4


def test_arm_timeout_and_memory_limit_are_enforced_on_the_dask_worker(cluster, tmp_path,
                                                                      monkeypatch):
    """The limits travel with the unit and are enforced by its supervisor on the Dask worker;
    the records it writes there (timeout, oom) are shipped back like the worker's."""
    cl, _ = cluster
    use_tasks(monkeypatch)
    df = runner.run_sweep(sweep_dict(task="runner_tasks:arm_hang_task", loss=("nll",),
                                     seed=(0, 1, 2), timeout_s=60),
                          tmp_path / "arm", backend="dask", scheduler=cl.scheduler_address,
                          progress=False, arm_timeout_s=3)
    assert dict(zip(df["seed"], df["status"], strict=True)) == {0: "ok", 1: "timeout", 2: "ok"}
    df = runner.run_sweep(sweep_dict(task="runner_tasks:memory_hog_task", timeout_s=60,
                                     retries=2),
                          tmp_path / "mem", backend="dask", scheduler=cl.scheduler_address,
                          progress=False, memory_limit_mb=250)
    assert dict(zip(df["loss"], df["status"], strict=True)) == {"nll": "ok", "mae": "oom"}
    assert set(df["attempt"]) == {1}


def test_cli_runs_its_own_local_cluster_and_rejects_bad_options(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    use_tasks(monkeypatch)
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(N=(16, 32)))
    out = tmp_path / "out"
    assert cli.main(["run", str(sweep), "--out", str(out), "--backend", "dask", "--n-jobs", "2",
                     "--no-progress"]) == 0
    df = runner.load_results(out)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert not set(df["parent_pid"]) & before  # the cluster started for the run ran them
    # ... and was closed with everything it started
    wait_for(lambda: {p.pid for p in me.children(recursive=True)} <= before, timeout=30)

    bad = tmp_path / "bad"
    for args in (["--backend", "dask", "--gpus-per-unit", "1"],  # a LocalCluster has no GPUs
                 ["--backend", "dask", "--gpus-per-unit", "many"],
                 ["--shared-dir"],  # the local backend takes no such option
                 ["--scheduler", "tcp://127.0.0.1:8786"]):
        assert cli.main(["run", str(sweep), "--out", str(bad), "--no-progress", *args]) == 2
    with pytest.raises(BackendError, match="cannot connect to the Dask scheduler"):
        runner.run_sweep(sweep, bad, backend="dask", scheduler="tcp://127.0.0.1:9",
                         connect_timeout_s=1, progress=False)
    assert not bad.exists()


def test_gpu_units_ask_for_a_gpu_resource_only_where_there_are_gpus(cluster, tmp_path,
                                                                     monkeypatch):
    import distributed

    cl, _ = cluster
    use_tasks(monkeypatch)
    asked = []
    submit = distributed.Client.submit

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("resources"))
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "submit", spy)
    sweep = sweep_dict(N=(16, 32))
    # CPU-only cluster: nothing is asked; asking anyway is refused before anything is written
    assert set(runner.run_sweep(sweep, tmp_path / "cpu", backend="dask",
                                scheduler=cl.scheduler_address, progress=False)["status"]) == {"ok"}
    assert asked == [None, None]
    with pytest.raises(BackendError, match="advertises GPU>=1"):
        runner.run_sweep(sweep, tmp_path / "x", backend="dask", scheduler=cl.scheduler_address,
                         gpus_per_unit=1, progress=False)
    assert not (tmp_path / "x").exists()

    # workers started with --resources GPU=1 on a host with 4 GPUs (a fake nvidia-smi) of
    # which they see 2: each unit gets the device of the worker that runs it, of those 2
    asked.clear()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nfor i in 0 1 2 3; do echo \"GPU $i: Fake (UUID: GPU-$i)\"; done\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with local_cluster(resources={"GPU": 1}) as (gcl, gclient):
        df = runner.run_sweep(sweep_dict(N=(16, 32), nphotons=(1e4, 1e5)), tmp_path / "gpu",
                              backend="dask", scheduler=gcl.scheduler_address, progress=False)
        names = gclient.run(lambda dask_worker: dask_worker.name)
        by_pid = {pid: names[addr] for addr, pid in worker_pids(gclient).items()}
        with get_executor("dask", scheduler=gcl.scheduler_address, gpus_per_unit=0) as ex:
            assert ex.n_jobs == 2
    assert asked == [{"GPU": 1}] * 4
    assert set(df["status"]) == {"ok"}
    for row in df.itertuples():
        assert row.env_CUDA_VISIBLE_DEVICES == ["2", "3"][by_pid[row.parent_pid]]


@pytest.mark.parametrize("allowed_failures, retries, shared_dir", [
    (0, 1, False),  # KilledWorker -> the sweep's retry runs the unrecorded arm again: attempt 2
    (0, 0, False),  # no retry left: crashed, naming the worker; the arm streamed back stays
    (0, 0, True),   # the same, the arm recorded in the shared directory stays
    (3, 0, False),  # Dask re-runs the task on another worker itself: ok, attempt 1
], ids=["sweep-retry", "crashed-scratch", "crashed-shared-dir", "dask-retry"])
def test_killed_dask_worker_never_loses_or_duplicates_a_row(tmp_path, monkeypatch,
                                                           allowed_failures, retries,
                                                           shared_dir):
    """block_once_task: the N=64 unit records its first arm, signals readiness, then blocks;
    the test SIGKILLs the Dask worker process running it."""
    use_tasks(monkeypatch)
    ready = tmp_path / "ready"
    ready.mkdir()
    monkeypatch.setenv("RUNNER_TEST_READY_DIR", str(ready))
    sweep = sweep_dict(task="runner_tasks:block_once_task", N=(16, 64), retries=retries,
                       timeout_s=120)
    victim = next(u for u in runner.load_sweep(sweep).plan() if u.N == 64)
    out = tmp_path / "out"
    result: dict = {}
    with local_cluster(scheduler_kwargs={"allowed_failures": allowed_failures}) as (cl, client):
        def run() -> None:
            try:
                result["df"] = runner.run_sweep(sweep, out, backend="dask", progress=False,
                                                scheduler=cl.scheduler_address,
                                                shared_dir=shared_dir)
            except BaseException as exc:  # reported below
                result["exc"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        marker = ready / f"{victim.unit_id}.ready"
        wait_for(marker.is_file, timeout=60)
        unit_pid, dask_pid = map(int, marker.read_text().split())
        pids = worker_pids(client)
        assert dask_pid in pids.values() and unit_pid not in pids.values()
        lost = next(addr for addr, pid in pids.items() if pid == dask_pid)
        first_arm = OutputPaths(out).record(victim.arms[0].arm_id)
        wait_for(first_arm.is_file, timeout=10)  # streamed back (or written: --shared-dir)
        os.kill(dask_pid, signal.SIGKILL)
        wait_for(lambda: pid_gone(unit_pid), timeout=10)  # the unit died with its Dask worker
        thread.join(timeout=90)
        assert not thread.is_alive() and "exc" not in result, result.get("exc")

    df = result["df"]
    paths = OutputPaths(out)
    assert len(df) == 4 and df["arm_id"].is_unique
    assert len(list(paths.records_dir.glob("*.json"))) == 4
    assert len(pd.read_parquet(paths.metrics_parquet)) == 4
    assert set(df.loc[df["N"] == 16, "status"]) == {"ok"}
    hit = df[df["unit_id"] == victim.unit_id].set_index("loss")
    first, second = hit.loc["nll"], hit.loc["mae"]
    if allowed_failures:  # Dask ran the whole attempt again elsewhere: its records replace
        assert list(hit["status"]) == ["ok", "ok"] and set(hit["attempt"]) == {1}
        assert unit_pid not in set(hit["pid"]) and dask_pid not in set(hit["parent_pid"])
        assert lost not in set(hit["dask_worker"])
        return
    # the arm recorded before the worker died is kept, from the process that ran it
    assert first["status"] == "ok" and first["pid"] == unit_pid and first["attempt"] == 1
    assert first["host"] == socket.gethostname()
    if not shared_dir:  # (--shared-dir: dask_worker is added when the unit's task returns)
        assert first["dask_worker"] == lost
    if retries:  # the other arm: retried elsewhere, in a new process
        assert second["status"] == "ok" and second["attempt"] == 2
        assert second["pid"] != unit_pid and second["dask_worker"] != lost
    else:
        assert second["status"] == "crashed" and second["attempt"] == 1
        assert f"Dask worker {lost} died" in second["error"]


def test_interrupted_orchestrator_stops_units_on_the_workers(cluster, ready_dir, tmp_path):
    """SIGINT to `ptycho-sweep run --backend dask`: the unit's process on the Dask worker is
    killed, the Dask workers survive, nothing is recorded (a re-run runs the unit), exit 130."""
    cl, client = cluster
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(
        task="runner_tasks:block_once_task", N=(64,), nphotons=(3e4,), timeout_s=600))
    unit = runner.load_sweep(sweep).plan()[0]
    out = tmp_path / "out"
    pids = worker_pids(client)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                             str(out), "--backend", "dask", "--scheduler", cl.scheduler_address,
                             "--no-progress"], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        marker = ready_dir / f"{unit.unit_id}.ready"
        wait_for(marker.is_file, timeout=60)
        unit_pid, dask_pid = map(int, marker.read_text().split())
        assert dask_pid in pids.values()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err
    wait_for(lambda: pid_gone(unit_pid), timeout=15)
    assert worker_pids(client) == pids
    assert not list(OutputPaths(out).records_dir.glob("*.json"))
    assert runner.plan_run(sweep, out).n_run == 2


def test_records_stream_back_as_each_arm_finishes(cluster, ready_dir, tmp_path, monkeypatch):
    """Scratch mode: the first arm's record reaches <out> while its unit is still running (it
    blocks after that arm), tagged with the Dask worker and host that ran it."""
    cl, client = cluster
    use_tasks(monkeypatch)
    sweep = sweep_dict(task="runner_tasks:block_once_task", N=(64,), nphotons=(5e4,),
                       timeout_s=8, retries=0)
    unit = runner.load_sweep(sweep).plan()[0]
    paths = OutputPaths(tmp_path / "out")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(df=runner.run_sweep(
        sweep, paths.root, backend="dask", scheduler=cl.scheduler_address, progress=False)),
        daemon=True)
    thread.start()
    marker = ready_dir / f"{unit.unit_id}.ready"
    wait_for(marker.is_file, timeout=60)
    unit_pid, dask_pid = map(int, marker.read_text().split())
    first = paths.record(unit.arms[0].arm_id)
    wait_for(first.is_file, timeout=5)  # the unit is still running (it times out at 8 s)
    assert not pid_gone(unit_pid)
    rec = json.loads(first.read_text())
    assert rec["status"] == "ok" and rec["pid"] == unit_pid
    address = next(a for a, pid in worker_pids(client).items() if pid == dask_pid)
    assert rec["dask_worker"] == address and rec["host"] == socket.gethostname()
    assert not paths.record(unit.arms[1].arm_id).exists()
    thread.join(timeout=60)
    df = result["df"].set_index("loss")
    assert df.loc["nll", "status"] == "ok" and df.loc["mae", "status"] == "timeout"
    assert df.loc["nll", "dask_worker"] == address


# -- Ctrl-C while the cluster starts (D8) ----------------------------------------------------
def _interrupt_run(args: list[str], tmp_path: Path, ready, env: dict | None = None) -> tuple:
    """Start `python -m runner run ... --backend dask *args`, wait for ``ready()``, send SIGINT;
    return (exit code, seconds from SIGINT to exit, stderr, pids it had started)."""
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict())
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                             str(tmp_path / "out"), "--backend", "dask", "--no-progress",
                             *args], cwd=REPO, env=env or cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready, timeout=60)
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - sent, err, children
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_while_connecting_to_a_silent_scheduler_stops_at_once(tmp_path):
    """A scheduler address that accepts TCP connections and never answers."""
    pytest.importorskip("distributed")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nobody ever reads or writes
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        code, took, err, _ = _interrupt_run(["--scheduler", address], tmp_path,
                                            lambda: time.monotonic() - started > 3)
    assert code == 130, err[-3000:]
    assert took < 5, f"exit {took:.1f} s after SIGINT"
    assert "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


SLOW_SPAWN = """
import os, sys, time
if os.environ.get("RUNNER_TEST_SLOW_SPAWN") and "--multiprocessing-fork" in sys.argv:
    open(os.path.join(os.environ["RUNNER_TEST_SLOW_SPAWN"], str(os.getpid())), "w").close()
    time.sleep(60)
"""


def test_ctrl_c_while_the_local_cluster_starts_stops_at_once(tmp_path):
    """The LocalCluster's worker processes take 60 s to start (a sitecustomize sleeps in
    them): SIGINT meanwhile ends the run with 130 at once and kills them."""
    pytest.importorskip("distributed")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SPAWN)
    spawned = tmp_path / "spawned"
    spawned.mkdir()
    env = cli_env(RUNNER_TEST_SLOW_SPAWN=spawned)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    code, took, err, children = _interrupt_run(
        ["--n-jobs", "2"], tmp_path, lambda: len(list(spawned.iterdir())) == 2, env)
    assert code == 130, err[-3000:]
    assert took < 10, f"exit {took:.1f} s after SIGINT"
    assert "interrupted" in err and "Traceback" not in err
    workers = [int(p.name) for p in spawned.iterdir()]
    assert set(workers) <= set(children)
    wait_for(lambda: all(pid_gone(pid) for pid in children), timeout=10)
    assert not (tmp_path / "out").exists()


# -- a cluster started with the dask command line --------------------------------------------
def test_sweep_on_a_cluster_started_with_dask_scheduler_and_dask_worker(tmp_path):
    """`dask scheduler` and `dask worker` (two processes), as the README shows; then
    `ptycho-sweep run --backend dask --scheduler ADDRESS`."""
    distributed = pytest.importorskip("distributed")
    info = tmp_path / "scheduler.json"
    env = cli_env(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0)
    dask_cli = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(info)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        wait_for(info.is_file, timeout=60)
        address = json.loads(info.read_text())["address"]
        procs.append(subprocess.Popen([*dask_cli, "worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"], cwd=tmp_path,
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        sweep = write_sweep(tmp_path / "s.toml", sweep_dict(N=(16, 32)))
        out = tmp_path / "out"
        proc = run_cli("run", sweep, "--out", out, "--backend", "dask", "--scheduler", address,
                       "--no-progress", timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "2 worker(s), 2 thread(s)" in proc.stderr
        df = runner.load_results(out)
        assert len(df) == 4 and set(df["status"]) == {"ok"}
        assert df["dask_worker"].nunique() >= 1 and set(df["host"]) == {socket.gethostname()}
        dask_pids = {c.pid for p in procs for c in psutil.Process(p.pid).children(True)}
        assert set(df["parent_pid"]) <= dask_pids  # run by those Dask workers
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_terminal_ctrl_c_reaches_the_whole_group_and_the_local_workers_ignore_it(
        tmp_path, monkeypatch):
    """A terminal's Ctrl-C goes to the whole foreground process group (the run's own
    LocalCluster workers included): exit 130, no traceback, the unit and workers gone."""
    pytest.importorskip("distributed")
    use_tasks(monkeypatch)
    ready = tmp_path / "ready"
    ready.mkdir()
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(
        task="runner_tasks:block_once_task", N=(64,), timeout_s=600))
    unit = runner.load_sweep(sweep).plan()[0]
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                             str(tmp_path / "out"), "--backend", "dask", "--n-jobs", "1",
                             "--no-progress"], cwd=REPO, env=cli_env(RUNNER_TEST_READY_DIR=ready),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        marker = ready / f"{unit.unit_id}.ready"
        wait_for(marker.is_file, timeout=60)
        unit_pid, dask_pid = map(int, marker.read_text().split())
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err[-3000:]
    wait_for(lambda: pid_gone(unit_pid) and pid_gone(dask_pid), timeout=15)


def test_a_closing_worker_does_not_log_the_heartbeat_it_cut_but_a_running_one_does(caplog):
    """The preload of the workers started here drops the heartbeat failure of a worker that is
    closing (its own close cuts the heartbeat's connection: the traceback a Ctrl-C printed
    now and then), and keeps that of a running worker (a scheduler really lost)."""
    distributed = pytest.importorskip("distributed")
    from distributed.core import Status

    from runner.dask_task import HeartbeatTeardownFilter, dask_setup

    class FakeWorker:
        status = Status.running

    worker = FakeWorker()
    t = threading.Thread(target=dask_setup, args=(worker,))  # not the main thread: no signal
    t.start()
    t.join()
    logger = logging.getLogger("distributed.worker")
    added = [f for f in logger.filters if isinstance(f, HeartbeatTeardownFilter)]
    try:
        def heartbeat():  # what distributed's Worker.heartbeat logs on a failed heartbeat
            logger.error("Failed to communicate with scheduler during heartbeat.")

        def other():
            logger.error("another error")

        with caplog.at_level(logging.INFO, logger="distributed.worker"):
            heartbeat()
            worker.status = Status.closing
            heartbeat()
            other()
            worker.status = Status.closed
            heartbeat()
        assert [r.funcName for r in caplog.records] == ["heartbeat", "other"]
        assert distributed.worker.logger is logger  # the logger distributed writes to
    finally:
        for f in added:
            logger.removeFilter(f)
