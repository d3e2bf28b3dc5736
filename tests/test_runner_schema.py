"""The record schema: one declaration of every column, fixed table dtypes, tables of two
sweeps that concatenate, and metrics tables that change together or not at all."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from runner import schema, store
from runner.paths import OutputPaths


def _rec(arm_id, status="ok", error=None, sweep="s", **extra):
    return {"sweep": sweep, "arm_id": arm_id, "unit_id": "u", "N": 16, "gridsize": 1,
            "nphotons": 1e4, "loss": "nll", "seed": 0, "status": status, "error": error,
            "pid": 7, "wall_s": 1.0, **extra}


def test_every_declared_column_is_declared_once_with_a_dtype():
    groups = (schema.IDENTITY, schema.OUTCOME, schema.RESOURCES, schema.PROVENANCE,
              schema.PLACEMENT, schema.METRICS)
    names = [k for g in groups for k in g]
    assert len(names) == len(set(names)) == len(schema.DTYPES)
    assert set(schema.COLUMNS) <= set(schema.DTYPES)
    for col in schema.DTYPES:
        schema.table_dtype(col)  # every dtype name is one pandas knows
    assert store.COLUMNS is schema.COLUMNS and store.STATUSES is schema.STATUSES


def test_table_dtypes_are_fixed_and_two_sweeps_concatenate():
    ok_only = store.records_frame([_rec("a", amp_ssim=0.5), _rec("b", amp_ssim=0.6)])
    failing = store.records_frame([_rec("c", status="failed", error="boom", sweep="t")])
    # no error at all is still a string column, not float NaN; status has fixed categories
    assert ok_only["error"].dtype == "string" and ok_only["error"].isna().all()
    for df in (ok_only, failing):
        assert list(df["status"].cat.categories) == list(schema.STATUSES)
        assert df["N"].dtype == "int64" and df["pid"].dtype == "Int64"
        assert df["arm_id"].dtype == "string" and df["nphotons"].dtype == "float64"
    both = pd.concat([ok_only, failing], ignore_index=True)
    assert both["status"].dtype == ok_only["status"].dtype  # still the categorical
    assert both["error"].dtype == "string" and both["N"].dtype == "int64"
    assert list(both["error"].fillna("")) == ["", "", "boom"]


def test_a_task_value_of_another_type_keeps_its_column():
    df = store.records_frame([_rec("a", amp_ssim="n/a")])
    assert df.loc[0, "amp_ssim"] == "n/a"


def test_metrics_tables_change_together_or_not_at_all(tmp_path, monkeypatch):
    paths = OutputPaths(tmp_path)
    store.atomic_write_json(paths.record("a"), _rec("a"))
    store.consolidate(paths)
    before = {p: p.read_bytes() for p in (paths.metrics_parquet, paths.metrics_csv)}
    store.atomic_write_json(paths.record("b"), _rec("b"))
    real_fdopen = os.fdopen

    calls = []

    def fdopen(fd, *a, **k):
        calls.append(fd)
        if len(calls) == 2:  # the second file (metrics.csv) hits a full disk
            os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *a, **k)

    monkeypatch.setattr(store.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space"):
        store.consolidate(paths)
    monkeypatch.setattr(store.os, "fdopen", real_fdopen)
    assert {p: p.read_bytes() for p in before} == before  # neither table changed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    store.consolidate(paths)
    assert len(pd.read_parquet(paths.metrics_parquet)) == len(pd.read_csv(paths.metrics_csv)) == 2
