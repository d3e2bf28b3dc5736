"""The dask backend on Slurm through dask-jobqueue (``--backend dask --cluster slurm``).

There is no Slurm here. What is tested: the SLURMCluster built from the user's Dask config plus
the run's options (its job script: #SBATCH lines, cores, memory, walltime, the worker command),
built without submitting anything; the option parsing and refusals; and a whole CLI run whose
``sbatch``/``scancel`` are fakes that run the generated job script on this machine (so the
script really starts a Dask worker that runs the units) and kill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import (  # noqa: E402
    REPO,
    cli_env,
    pid_gone,
    run_cli,
    sweep_dict,
    wait_for,
    write_sweep,
)

import runner  # noqa: E402
from runner.executors import BackendError, get_executor  # noqa: E402

dask = pytest.importorskip("dask")
pytest.importorskip("distributed")
_sigint = signal.getsignal(signal.SIGINT)
pytest.importorskip("dask_jobqueue")  # its import installs a SIGINT handler calling sys.exit()
signal.signal(signal.SIGINT, _sigint)  # ... which must not leak into the rest of the test run

from runner import dask_cluster  # noqa: E402

FAKE_SBATCH = """#!/bin/sh
# fake sbatch: keep the job script, run it in the background in its own session
d="$FAKE_SLURM_DIR"
id=$$
cp "$1" "$d/job-$id.sh"
if [ -n "$FAKE_SLURM_PENDING" ]; then echo "Submitted batch job $id"; exit 0; fi
setsid bash "$d/job-$id.sh" > "$d/job-$id.log" 2>&1 < /dev/null &
echo $! > "$d/job-$id.pid"
echo "Submitted batch job $id"
"""
FAKE_SCANCEL = """#!/bin/sh
echo "$@" >> "$FAKE_SLURM_DIR/scancel.log"
for id in "$@"; do
  [ -f "$FAKE_SLURM_DIR/job-$id.pid" ] && kill -TERM -- -"$(cat "$FAKE_SLURM_DIR/job-$id.pid")"
done
exit 0
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch and scancel on PATH (see the module docstring); returns their state directory."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL),
                       ("squeue", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    return state


USER_CONFIG = {"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "8GiB",
               "jobqueue.slurm.processes": 1, "jobqueue.slurm.walltime": "01:00:00",
               "jobqueue.slurm.queue": "short", "jobqueue.slurm.account": "myproj"}


def test_job_script_from_the_users_config_and_the_run_options(fake_slurm):
    options = dask_cluster.parse_cluster_options(
        ["walltime=02:30:00", "job-extra-directives=[\"--gres=gpu:1\"]",
         "worker_extra_args=[\"--resources\", \"GPU=1\"]"])
    assert options["walltime"] == "02:30:00"  # text, not YAML's base-60 integer
    with dask.config.set(USER_CONFIG):  # as if read from ~/.config/dask/jobqueue.yaml
        _check_job_script(dask_cluster.new_slurm_cluster(options), fake_slurm)
    assert not list(fake_slurm.iterdir())  # and nothing to cancel


def _check_job_script(cluster, fake_slurm: Path) -> None:
    try:
        script = cluster.job_script()
        assert script.startswith("#!/usr/bin/env bash")
        sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
        assert sbatch == ["#SBATCH -J ptycho-sweep", "#SBATCH -p short", "#SBATCH -A myproj",
                          "#SBATCH -n 1", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
                          "#SBATCH -t 02:30:00", "#SBATCH --gres=gpu:1"]
        command = script.strip().splitlines()[-1].split()
        assert command[:4] == [sys.executable, "-m", "distributed.cli.dask_worker",
                               cluster.scheduler_address]
        def flag(name: str) -> str:
            return command[command.index(name) + 1]

        assert flag("--nthreads") == "4" and flag("--memory-limit") == "8.00GiB"
        assert flag("--resources") == "GPU=1" and "--nanny" in command
        # the scheduler runs here, and leaves retries to the sweep
        assert cluster.scheduler.allowed_failures == 0
        assert not cluster.workers and not list(fake_slurm.iterdir())  # nothing submitted
    finally:
        cluster.close()


def test_jobs_and_refusals():
    assert dask_cluster.slurm_jobs({"cores": 4}, None) == (1, 4)  # one job, its threads
    assert dask_cluster.slurm_jobs({"cores": 4}, 10) == (3, 10)
    assert dask_cluster.parse_cluster_options(["cores=8", "memory=16GiB", "queue=gpu"]) == {
        "cores": 8, "memory": "16GiB", "queue": "gpu"}
    with dask.config.set({"jobqueue.slurm.cores": None}):
        with pytest.raises(BackendError, match=r"jobqueue.slurm.cores.*jobqueue.yaml"):
            get_executor("dask", cluster="slurm")
    with pytest.raises(BackendError, match="KEY=VALUE"):
        get_executor("dask", cluster="slurm", cluster_options=["walltime"])
    with pytest.raises(BackendError, match="give one"):
        get_executor("dask", cluster="slurm", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(BackendError, match="go with cluster 'slurm'"):
        get_executor("dask", cluster_options=["cores=2"])
    with pytest.raises(BackendError, match="cannot build the SLURMCluster"):
        with dask.config.set(USER_CONFIG):
            dask_cluster.new_slurm_cluster({"no_such_option": 1})


def test_without_dask_jobqueue_the_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(BackendError, match=r"pip install 'ptycho-sweep\[slurm\]'"):
        get_executor("dask", cluster="slurm", cluster_options={"cores": 2})


JOBQUEUE_YAML = """jobqueue:
  slurm:
    cores: 2
    processes: 1
    memory: 2GiB
    walltime: '00:30:00'
    queue: debug
    death-timeout: 30
"""


def test_cli_runs_a_sweep_on_jobs_of_the_generated_script(fake_slurm, tmp_path):
    """`ptycho-sweep run --backend dask --cluster slurm`: the user's jobqueue.yaml (DASK_CONFIG)
    plus --cluster-option; the fake sbatch runs the job script, whose Dask worker runs the
    units; at the end the job is cancelled and nothing of it is left."""
    config = tmp_path / "dask-config"
    config.mkdir()
    (config / "jobqueue.yaml").write_text(JOBQUEUE_YAML)
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(N=(16, 32)))
    out = tmp_path / "out"
    proc = run_cli("run", sweep, "--out", out, "--backend", "dask", "--cluster", "slurm",
                   "--cluster-option", "walltime=00:10:00", "--no-progress", timeout=240,
                   DASK_CONFIG=config, PATH=os.environ["PATH"],
                   FAKE_SLURM_DIR=fake_slurm)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 Slurm job(s) submitted" in proc.stderr
    scripts = sorted(fake_slurm.glob("job-*.sh"))
    assert len(scripts) == 1
    script = scripts[0].read_text()
    for line in ("#SBATCH -J ptycho-sweep", "#SBATCH -p debug", "#SBATCH --cpus-per-task=2",
                 "#SBATCH -t 00:10:00"):
        assert line in script.splitlines()
    df = runner.load_results(out)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert df["dask_worker"].nunique() == 1
    job_id = scripts[0].stem.split("-")[1]
    assert (fake_slurm / "scancel.log").read_text().split() == [job_id]
    job_pid = int((fake_slurm / f"job-{job_id}.pid").read_text())
    wait_for(lambda: pid_gone(job_pid), timeout=30)
    assert all(pid_gone(int(pid)) for pid in set(df["parent_pid"]))

    def leftovers() -> list[int]:  # any process started by the fake Slurm
        return [p.pid for p in psutil.process_iter(["environ"]) if p.pid != os.getpid()
                and (p.info["environ"] or {}).get("FAKE_SLURM_DIR") == str(fake_slurm)]

    wait_for(lambda: not leftovers(), timeout=30)


def test_ctrl_c_while_the_jobs_queue_cancels_them(fake_slurm, tmp_path):
    """The jobs never start (pending): SIGINT ends the run with 130 at once and scancels them."""
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict())
    env = cli_env(FAKE_SLURM_PENDING=1, FAKE_SLURM_DIR=fake_slurm, PATH=os.environ["PATH"])
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(sweep), "--out",
                             str(tmp_path / "out"), "--backend", "dask", "--cluster", "slurm",
                             "--n-jobs", "4", "--cluster-option", "cores=2",
                             "--cluster-option", "memory=1GiB", "--no-progress"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(fake_slurm.glob("job-*.sh"))) == 2, timeout=60)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert took < 10 and "Traceback" not in err
    jobs = sorted(p.stem.split("-")[1] for p in fake_slurm.glob("job-*.sh"))
    assert sorted((fake_slurm / "scancel.log").read_text().split()) == jobs
    assert not (tmp_path / "out").exists()
