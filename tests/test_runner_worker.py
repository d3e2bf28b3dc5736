"""The worker protocol (run in this process through runner.worker.execute) and the store."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict  # noqa: E402

from runner.paths import OutputPaths  # noqa: E402
from runner.store import (  # noqa: E402
    COLUMNS,
    atomic_write_json,
    consolidate,
    load_results,
    read_json,
    read_records,
    records_frame,
)
from runner.sweep import load_sweep  # noqa: E402
from runner.worker import execute  # noqa: E402


@pytest.fixture
def unit(tmp_path):
    sw = load_sweep(sweep_dict(task="runner_tasks:ok_task", seed=(0, 1)), check_task=False)
    return sw.plan()[0].to_unit(sw, OutputPaths(tmp_path), attempt_id="run-1")


def records(unit):
    return read_records(OutputPaths(unit.paths["out_dir"]))


def test_records_are_written_as_they_are_yielded(unit):
    paths = OutputPaths(unit.paths["out_dir"])
    seen = []

    def task(u):
        for arm in u.arms:
            seen.append(sorted(p.stem for p in paths.records_dir.glob("*.json")))
            yield {"arm_id": arm.arm_id, "amp_ssim": 0.5, "train_s": 1.0}

    outcome = execute(unit, task)
    ids = [a.arm_id for a in unit.arms]
    assert seen == [sorted(ids[:i]) for i in range(len(ids))]  # earlier ones already on disk
    assert outcome["status"] == "ok" and set(outcome["arms"]) == set(ids)
    assert read_json(paths.outcome(unit.unit_id))["status"] == "ok"
    for rec in records(unit).values():
        assert rec["status"] == "ok" and rec["error"] is None and rec["pid"] == os.getpid()
        assert rec["unit_id"] == unit.unit_id and rec["attempt_id"] == "run-1"
        assert rec["wall_s"] >= 0 and rec["peak_rss_mb"] > 0 and rec["amp_ssim"] == 0.5
    assert not [p for p in paths.records_dir.iterdir() if not p.name.endswith(".json")]


def test_worker_keys_win_and_task_values_are_kept_aside(unit):
    def task(u):
        a, b = u.arms[:2]
        yield {"arm_id": a.arm_id, "pid": 1, "loss": "other", "status": "weird",
               "error": "note", "metric": np.float32(0.25), "vec": np.arange(3)}
        yield {"arm_id": b.arm_id, "status": "failed", "error": "NaN loss"}

    execute(unit, task)
    recs = records(unit)
    a = recs[unit.arms[0].arm_id]
    assert a["pid"] == os.getpid() and a["task_pid"] == 1
    assert a["loss"] == unit.arms[0].loss and a["task_loss"] == "other"
    assert a["status"] == "ok" and a["task_status"] == "weird" and a["task_error"] == "note"
    assert a["metric"] == 0.25 and a["vec"] == [0, 1, 2]
    b = recs[unit.arms[1].arm_id]
    assert b["status"] == "failed" and b["error"] == "NaN loss"


def test_task_raising_fails_the_remaining_arms_with_traceback(unit):
    def task(u):
        yield {"arm_id": u.arms[0].arm_id, "amp_ssim": 0.1}
        raise ValueError("boom in the middle")

    outcome = execute(unit, task)
    recs = records(unit)
    assert recs[unit.arms[0].arm_id]["status"] == "ok"
    for arm in unit.arms[1:]:
        r = recs[arm.arm_id]
        assert r["status"] == "failed" and r["error"] == "ValueError: boom in the middle"
        assert "raise ValueError" in r["error_traceback"]
        assert len(r["error_traceback"].splitlines()) <= 20
    assert outcome["status"] == "failed" and "boom" in outcome["traceback"]


@pytest.mark.parametrize("task, error", [
    (lambda u: None, "TypeError: task runner_tasks:ok_task returned NoneType"),
    (lambda u: [{"arm_id": "nope"}], "unexpected arm_id 'nope'"),
    (lambda u: [{"loss": "nll"}], "must be a dict with an 'arm_id'"),
    (lambda u: [{"arm_id": u.arms[0].arm_id}] * 2, "returned arm_id"),
    (lambda u: [{"arm_id": u.arms[0].arm_id}], "returned no record for arm"),
    (lambda u: sys.exit(3), "SystemExit: 3"),
])
def test_task_contract_violations(unit, task, error):
    outcome = execute(unit, task)
    assert outcome["status"] == "failed"
    failed = [r for r in records(unit).values() if r["status"] == "failed"]
    assert failed and all(error in r["error"] for r in failed)
    assert len(records(unit)) == len(unit.arms)


def test_import_errors_are_failures(tmp_path):
    sw = load_sweep(sweep_dict(task="runner_tasks:no_such_fn"), check_task=False)
    u = sw.plan()[0].to_unit(sw, OutputPaths(tmp_path))
    execute(u)
    recs = read_records(OutputPaths(tmp_path))
    assert {r["status"] for r in recs.values()} == {"failed"}
    assert all("has no attribute 'no_such_fn'" in r["error"] for r in recs.values())


# -- store -----------------------------------------------------------------------------------
def test_atomic_json_and_table_columns(tmp_path):
    paths = OutputPaths(tmp_path)
    recs = {
        "a1": {"sweep": "s", "arm_id": "a1", "unit_id": "u", "N": 32, "gridsize": 1,
               "nphotons": 1e4, "loss": "nll", "seed": 0, "status": "ok", "error": None,
               "pid": 5, "amp_ssim": 0.5, "zeta": 1, "alpha": "x"},
        "a0": {"sweep": "s", "arm_id": "a0", "unit_id": "u", "N": 16, "gridsize": 1,
               "nphotons": 1e4, "loss": "nll", "seed": 0, "status": "crashed",
               "error": "killed", "pid": 6, "alpha": 3.0, "beta": float("nan")},
    }
    for arm_id, rec in recs.items():
        atomic_write_json(paths.record(arm_id), rec)
    assert [p.name for p in sorted(paths.records_dir.iterdir())] == ["a0.json", "a1.json"]
    df = consolidate(paths)
    assert list(df.columns) == list(COLUMNS) + ["alpha", "beta", "zeta"]
    assert list(df["arm_id"]) == ["a0", "a1"]  # sorted by N first
    assert math.isnan(df.loc[0, "amp_ssim"]) and df.loc[1, "amp_ssim"] == 0.5
    parquet = pd.read_parquet(paths.metrics_parquet)  # mixed-type 'alpha' survived
    assert len(parquet) == 2 and list(parquet.columns) == list(df.columns)
    assert len(pd.read_csv(paths.metrics_csv)) == 2
    assert list(load_results(tmp_path)["arm_id"]) == ["a0", "a1"]
    (paths.records_dir / ".tmp-a2.json.xyz").write_text("{torn")  # ignored
    assert len(read_records(paths)) == 2
    assert json.loads(paths.record("a0").read_text())["status"] == "crashed"


def test_empty_table_has_the_fixed_columns():
    df = records_frame([])
    assert list(df.columns) == list(COLUMNS) and len(df) == 0
