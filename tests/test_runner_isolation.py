"""Process isolation: one fresh worker per unit, no state leaks, no TensorFlow in the
orchestrator. These start real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import REPO, cli_env, sweep_dict, use_tasks  # noqa: E402

import runner  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.resources import thread_counts  # noqa: E402


def test_every_unit_runs_in_its_own_fresh_process(tmp_path, monkeypatch):
    use_tasks(monkeypatch)
    out = tmp_path / "out"
    df = runner.run_sweep(sweep_dict(N=(16, 32), gridsize=(1, 2)), out, n_jobs=2,
                          progress=False)
    assert len(df) == 8 and set(df["status"]) == {"ok"}
    pids = df.groupby("unit_id")["pid"].agg(["nunique", "first"])
    assert (pids["nunique"] == 1).all()  # the arms of a unit share one process
    assert pids["first"].nunique() == 4  # and no process ran two units
    assert os.getpid() not in set(df["pid"])
    assert set(df["parent_pid"]) == {os.getpid()}  # started by the orchestrator itself
    assert not df["tf_loaded"].any()  # the worker machinery does not import TensorFlow
    intra, inter = thread_counts(2)
    for col, value in [("env_OMP_NUM_THREADS", intra), ("env_TF_NUM_INTRAOP_THREADS", intra),
                       ("env_PTYCHO_SWEEP_THREADS", intra), ("env_TF_NUM_INTEROP_THREADS", inter),
                       ("env_TF_CPP_MIN_LOG_LEVEL", 2)]:
        assert set(df[col].astype(int)) == {value}, col
    # the arm's training config reached the task with the arm's dose, seed and loss
    assert (df["cfg_nphotons"] == df["nphotons"]).all() and (df["cfg_seed"] == df["seed"]).all()
    assert ((df["loss"] == "mae") == (df["cfg_mae_weight"] == 1.0)).all()
    # the layout
    paths = OutputPaths(out)
    assert len(pd.read_parquet(paths.metrics_parquet)) == 8 and paths.metrics_csv.is_file()
    assert "runner_tasks:ok_task" in paths.sweep_toml.read_text()
    for uid in df["unit_id"].unique():
        unit = json.loads(paths.unit_json(uid).read_text())
        assert unit["unit_id"] == uid and len(unit["arms"]) == 2
        assert json.loads(paths.outcome(uid).read_text())["status"] == "ok"
        assert "unit " + uid in paths.worker_log(uid).read_text()
        assert len(list(paths.artifact_dir(uid).glob("*.npz"))) == 2


WRAPPER = """
import json, sys
import runner
df = runner.run_sweep(json.loads(sys.argv[1]), sys.argv[2], n_jobs=1, progress=False)
print("TF_IN_ORCHESTRATOR", "tensorflow" in sys.modules)
print("STATUSES", sorted(set(df["status"])))
"""


def test_poisoned_global_state_does_not_reach_the_next_unit(tmp_path):
    """Each unit observes pristine TensorFlow and params.cfg state, then poisons it (threading
    config, eager mode, params.cfg, an XLA-compiled trace); units run one after the other. The
    orchestrator (a separate process running run_sweep) never imports TensorFlow."""
    sweep = sweep_dict(task="runner_tasks:tf_poison_task", N=(32, 64), loss=("nll",),
                       timeout_s=300)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(sweep), str(out)],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TF_IN_ORCHESTRATOR False" in proc.stdout
    df = runner.load_results(out)
    assert list(df["status"]) == ["ok", "ok"], df["error"].tolist()
    assert df["pid"].nunique() == 2
    assert not df["tf_loaded_before_task"].any()
    assert list(df["obs_cfg_N"]) == [64, 64]  # params.cfg default, not 2 * previous N
    assert not df["obs_eager"].any() and not df["obs_fn_defined"].any()
    assert list(df["obs_traces"]) == [0, 0] and list(df["obs_intra"]) == [0, 0]
    assert [tuple(s) for s in df["out_shape"]] == [(32, 32), (64, 64)]
    assert list(df["tf_intra_after"]) == [3, 3]  # the poisoning did happen
