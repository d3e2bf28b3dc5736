"""The result store: hand-edited records are quarantined, provenance columns have dtypes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, use_tasks, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.store import (  # noqa: E402
    PROVENANCE,
    QUARANTINE_DIR,
    STATUSES,
    atomic_write_json,
    consolidate,
    read_records,
    records_frame,
)


def _rec(arm_id: str, N: int = 16, **kw) -> dict:
    return {"sweep": "s", "arm_id": arm_id, "unit_id": "u", "N": N, "gridsize": 1,
            "nphotons": 1e4, "loss": "nll", "seed": 0, "status": "ok", "error": None,
            "pid": 5, **kw}


BAD = {
    "n_text": json.dumps(_rec("n_text", N="sixteen")),
    "status_num": json.dumps(_rec("status_num", status=5)),
    "other_id": json.dumps(_rec("somebody_else")),
    "torn": '{"arm_id": "torn", "sta',
    "a_list": "[1, 2]",
    "nan_dose": json.dumps(_rec("nan_dose", nphotons=float("nan"))),
    "no_seed": json.dumps({k: v for k, v in _rec("no_seed").items() if k != "seed"}),
}


def test_bad_records_are_quarantined_with_a_warning(tmp_path, caplog):
    paths = OutputPaths(tmp_path)
    atomic_write_json(paths.record("good"), _rec("good", N=32))
    for arm_id, text in BAD.items():
        paths.record(arm_id).write_text(text)
    with caplog.at_level(logging.WARNING, logger="runner.store"):
        recs = read_records(paths)
    assert list(recs) == ["good"]
    qdir = tmp_path / QUARANTINE_DIR
    assert sorted(p.name for p in qdir.iterdir()) == sorted(f"{a}.json" for a in BAD)
    assert sorted(p.name for p in paths.records_dir.iterdir()) == ["good.json"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for arm_id in BAD:
        assert f"{arm_id}.json" in warned
    assert "'sixteen' is not a int" in warned and "status 5 is not one of" in warned
    df = consolidate(paths)  # the table builds
    assert list(df["arm_id"]) == ["good"]
    # a second bad file of the same name does not overwrite the first quarantined one
    paths.record("torn").write_text("{")
    assert list(read_records(paths)) == ["good"]
    assert (qdir / "torn.json.1").is_file()


def test_status_and_run_survive_a_hand_edited_record(tmp_path, monkeypatch):
    use_tasks(monkeypatch)
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(N=(16, 32)))
    out = tmp_path / "out"
    assert cli.main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    paths = OutputPaths(out)
    first, second = sorted(paths.records_dir.glob("*.json"))[:2]
    rec = json.loads(first.read_text())
    first.write_text(json.dumps({**rec, "N": "sixteen"}))
    second.write_text(json.dumps({**json.loads(second.read_text()), "status": 5}))
    assert cli.main(["status", str(out)]) == 1  # two arms pending, no traceback
    assert cli.main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    df = runner.load_results(out)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert len(list((out / QUARANTINE_DIR).iterdir())) == 2


def test_oom_is_a_status_and_provenance_columns_have_fixed_dtypes():
    assert "oom" in STATUSES
    rows = [_rec("a", started_at="2024-01-01T00:00:00+00:00", host="h", nepochs=5,
                 batch_size=16, n_train=512, learning_rate=1e-3, status="oom"),
            _rec("b", N=32)]
    df = records_frame(rows)
    for col, dtype in PROVENANCE.items():
        assert str(df[col].dtype) == dtype, col
    assert df.loc[0, "nepochs"] == 5 and pd.isna(df.loc[1, "nepochs"])
    assert df.loc[0, "host"] == "h" and pd.isna(df.loc[1, "host"])
    both = pd.concat([df, records_frame([_rec("c", nepochs=7)])])
    assert str(both["nepochs"].dtype) == "Int64"
