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
    return sw.plan()[0].for_attempt(OutputPaths(tmp_path), attempt_id="run-1")


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
    u = sw.plan()[0].for_attempt(OutputPaths(tmp_path))
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
    # fixed columns, then the declared metrics present, then a task's own columns, sorted
    assert list(df.columns) == list(COLUMNS) + ["amp_ssim", "alpha", "beta", "zeta"]
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


# -- records that cannot be written (D3), out of memory (D9), per-arm peak RSS (D12) ---------
def test_a_record_that_cannot_be_written_is_an_error_never_ok(unit, monkeypatch):
    """The last arm's record cannot be written, nor its failed record: the unit is not ok."""
    import runner.worker as worker

    last = unit.arms[-1].arm_id
    real = worker.atomic_write_json

    def write(path, obj):
        if Path(path).name == f"{last}.json":
            raise OSError(28, "No space left on device")
        real(path, obj)

    monkeypatch.setattr(worker, "atomic_write_json", write)
    outcome = execute(unit, lambda u: ({"arm_id": a.arm_id, "amp_ssim": 0.5} for a in u.arms))
    assert outcome["status"] == "failed" and outcome["arms"][last] == "failed"
    assert "records cannot be written" in outcome["error"]
    recs = records(unit)
    assert last not in recs and all(r["status"] == "ok" for r in recs.values())


def test_unwritable_records_stop_the_task(unit, monkeypatch):
    import runner.worker as worker

    real = worker.atomic_write_json

    def write(path, obj):
        if Path(path).parent.name == "records":
            raise PermissionError(13, "Permission denied")
        real(path, obj)

    monkeypatch.setattr(worker, "atomic_write_json", write)
    asked = []

    def task(u):
        for a in u.arms:
            asked.append(a.arm_id)
            yield {"arm_id": a.arm_id}

    outcome = execute(unit, task)
    assert outcome["status"] == "failed" and set(outcome["arms"].values()) == {"failed"}
    assert len(asked) == 1  # storage is broken: the task is not asked for more arms
    assert "records cannot be written" in outcome["error"]


def test_an_unserialisable_record_becomes_a_failed_record(unit):
    loop: dict = {}
    loop["self"] = loop

    def task(u):
        yield {"arm_id": u.arms[0].arm_id, "bad": loop}
        for a in u.arms[1:]:
            yield {"arm_id": a.arm_id, "amp_ssim": 0.5}

    outcome = execute(unit, task)
    recs = records(unit)
    bad = recs[unit.arms[0].arm_id]
    assert bad["status"] == "failed" and "could not be written" in bad["error"]
    assert bad["unit_id"] == unit.unit_id and bad["attempt_id"] == "run-1"
    assert all(recs[a.arm_id]["status"] == "ok" for a in unit.arms[1:])  # the others ran
    assert outcome["status"] == "failed"


def test_memory_error_is_oom(unit):
    def task(u):
        yield {"arm_id": u.arms[0].arm_id}
        raise MemoryError

    outcome = execute(unit, task)
    recs = records(unit)
    assert recs[unit.arms[0].arm_id]["status"] == "ok"
    for a in unit.arms[1:]:
        assert recs[a.arm_id]["status"] == "oom" and recs[a.arm_id]["error"] == "MemoryError"
    assert outcome["status"] == "failed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_peak_rss_is_each_arms_own(unit):
    def task(u):
        first, *rest = u.arms
        block = bytearray(300 * 2**20)  # touched (zero-filled): resident
        n = len(block)
        del block  # freed before the arm ends: only its own window saw it
        yield {"arm_id": first.arm_id, "n": n}
        for a in rest:
            yield {"arm_id": a.arm_id}

    outcome = execute(unit, task)
    recs = records(unit)
    big = recs[unit.arms[0].arm_id]["peak_rss_mb"]
    for a in unit.arms[1:]:
        assert big - recs[a.arm_id]["peak_rss_mb"] > 200
    assert outcome["peak_rss_mb"] >= big


# -- provenance (issue 11 item 4) ------------------------------------------------------------
def test_every_record_carries_its_provenance(unit):
    import socket
    import subprocess
    from datetime import datetime
    from importlib import metadata

    from runner.provenance import cpu_model, git_commit
    from runner.store import PROVENANCE

    def task(u):
        yield {"arm_id": u.arms[0].arm_id, "n_train": 7}  # the task's own value wins
        raise RuntimeError("second arm fails")

    execute(unit, task)
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    tf = sys.modules.get("tensorflow")
    for arm in unit.arms:
        rec = records(unit)[arm.arm_id]
        assert set(PROVENANCE) <= set(rec)
        start, end = (datetime.fromisoformat(rec[k]) for k in ("started_at", "ended_at"))
        assert start.utcoffset().total_seconds() == 0 and start <= end
        assert rec["host"] == socket.gethostname()
        assert rec["cpu_model"] == cpu_model() and isinstance(rec["cpu_model"], str)
        assert rec["package_version"] == metadata.version("ptycho-sweep")
        assert rec["git_commit"] == head and len(head) == 40
        assert rec["python_version"] == ".".join(map(str, sys.version_info[:3]))
        assert rec["numpy_version"] == np.__version__
        assert rec["tensorflow_version"] == (tf.__version__ if tf else "")
        assert rec["nepochs"] == unit.training["nepochs"]
        assert rec["batch_size"] == unit.training["batch_size"]
        assert rec["learning_rate"] == unit.training["learning_rate"]
    recs = records(unit)
    assert recs[unit.arms[0].arm_id]["n_train"] == 7
    assert recs[unit.arms[1].arm_id]["n_train"] == unit.simulation["n_train"]
    df = records_frame(recs.values())
    assert all(str(df[c].dtype) == d for c, d in PROVENANCE.items())
    # a directory that is not the top of a git checkout has no commit; never an error
    assert git_commit(str(repo / "runner")) == "" and git_commit("/nonexistent") == ""


def test_the_held_out_fraction_is_a_setting_every_record_carries(tmp_path):
    """``holdout`` is provenance, not a metric: a failed arm has it from the unit, and the
    aggregate makes no pivot of it."""
    from runner.report import aggregate
    from runner.store import records_frame

    sw = load_sweep(sweep_dict(task="runner_tasks:ok_task", seed=(0, 1),
                               training={"holdout": 0.1}), check_task=False)
    unit = sw.plan()[0].for_attempt(OutputPaths(tmp_path), attempt_id="run-1")

    def task(u):
        yield {"arm_id": u.arms[0].arm_id, "amp_ssim": 0.5}
        raise RuntimeError("second arm fails")

    execute(unit, task)
    recs = records(unit)
    assert [recs[a.arm_id]["status"] for a in unit.arms] == ["ok", "failed", "failed", "failed"]
    assert all(r["holdout"] == 0.1 for r in recs.values())
    _, pivots = aggregate(records_frame(recs.values()))
    assert "amp_ssim" in pivots and "holdout" not in pivots


def test_cpu_model_names_the_processor_and_never_raises(monkeypatch):
    import builtins
    import platform

    from runner.provenance import cpu_model

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    first = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)
             if v.strip()}
    if first.get("model name"):  # Linux: the kernel's name for it, as lscpu shows it
        assert cpu_model().startswith(first["model name"])
        if "cpu family" in first:  # x86: the generation too
            assert f"(family {first['cpu family']}, model " in cpu_model()
    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            raise PermissionError(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(platform, "processor", lambda: "x86_64")
    assert cpu_model() == "x86_64"
    monkeypatch.setattr(platform, "processor", lambda: 1 / 0)
    assert cpu_model() == ""


def test_git_commit_is_the_one_checked_out_when_the_unit_started(unit, monkeypatch):
    from runner import provenance

    head = {"sha": "a" * 40}
    monkeypatch.setattr(provenance, "git_commit", lambda: head["sha"])
    provenance.process_provenance.cache_clear()

    def task(u):
        for arm in u.arms:
            head["sha"] = "b" * 40  # a commit lands while the unit trains
            yield {"arm_id": arm.arm_id, "amp_ssim": 0.5}

    try:
        assert execute(unit, task)["status"] == "ok"
        assert {rec["git_commit"] for rec in records(unit).values()} == {"a" * 40}
    finally:
        provenance.process_provenance.cache_clear()
