"""``ptycho-sweep merge``: sweeps run in parts become one directory, as if one sweep had run
there; incompatible parts are refused before anything is written, sources are only read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.runplan import plan_run  # noqa: E402
from runner.store import load_results  # noqa: E402
from runner.sweep import load_sweep  # noqa: E402


@pytest.fixture(autouse=True)
def _tasks_on_path(monkeypatch):
    from runner_testlib import use_tasks

    use_tasks(monkeypatch)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def parts(tmp_path):
    """Two parts of one study: a prior's weight 0.3 at 1e4; no prior at 1e4 and 1e6."""
    a, b = tmp_path / "a", tmp_path / "b"
    runner.run_sweep(sweep_dict(training={"realspace_weight": 0.3}), a, progress=False)
    runner.run_sweep(sweep_dict(nphotons=(1e4, 1e6)), b, progress=False)
    return a, b


def test_parts_merge_into_one_directory_as_if_one_sweep_had_run(parts, tmp_path, capsys):
    a, b = parts
    dest = tmp_path / "dest"
    before = {p: _files(p) for p in parts}
    ids = set(load_results(a)["arm_id"]) | set(load_results(b)["arm_id"])
    assert cli.main(["merge", str(a), str(b), "--into", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"2 copied from {a}" in out and f"4 copied from {b}" in out
    df = load_results(dest)
    assert set(df["arm_id"]) == ids and set(df["status"]) == {"ok"}
    assert len(runner.load_results(dest)) == 6 and OutputPaths(dest).metrics_parquet.is_file()
    assert {p.stem for p in OutputPaths(dest).artifact_files("*.npz")} == ids
    assert sorted(df["realspace_weight"].fillna(0)) == [0, 0, 0, 0, 0.3, 0.3]
    # the directory's sweep is the union: the weight became an axis, the doses joined
    merged = load_sweep(OutputPaths(dest).sweep_toml)
    assert dict(merged.arm_settings) == {"realspace_weight": (0.3, 0.0)}
    assert merged.nphotons == (1e4, 1e6)
    # running that sweep there runs only what no part ran: weight 0.3 at 1e6
    plan = plan_run(OutputPaths(dest).sweep_toml, dest)
    assert plan.n_arms == 8 and plan.n_run == 2
    assert {p: _files(p) for p in parts} == before  # sources only read
    # merging again copies nothing and changes no record
    records = _files(OutputPaths(dest).records_dir)
    assert cli.main(["merge", str(a), str(b), "--into", str(dest)]) == 0
    assert "6 not copied" in capsys.readouterr().out
    assert _files(OutputPaths(dest).records_dir) == records


def test_an_ok_arm_replaces_a_failed_one_and_never_the_reverse(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("RUNNER_TEST_FAIL", "1")
    runner.run_sweep(sweep_dict(task="runner_tasks:flaky_task", N=(16, 32)), a, progress=False)
    assert sorted(load_results(a)["status"]) == ["failed", "failed", "ok", "ok"]
    monkeypatch.setenv("RUNNER_TEST_FAIL", "0")
    runner.run_sweep(sweep_dict(task="runner_tasks:flaky_task", N=(32,)), b, progress=False)
    assert cli.main(["merge", str(b), "--into", str(a)]) == 0
    assert set(load_results(a)["status"]) == {"ok"}
    # and a failed part does not displace those ok arms
    c = tmp_path / "c"
    monkeypatch.setenv("RUNNER_TEST_FAIL", "1")
    runner.run_sweep(sweep_dict(task="runner_tasks:flaky_task", N=(32,)), c, progress=False)
    assert cli.main(["merge", str(c), "--into", str(a)]) == 0
    assert set(load_results(a)["status"]) == {"ok"}


def test_parts_that_cannot_share_a_directory_are_refused_before_anything_is_written(
        parts, tmp_path, capsys):
    a, _ = parts
    other = tmp_path / "other"
    runner.run_sweep(sweep_dict(training={"lr_schedule": "constant"}), other, progress=False)
    dest = tmp_path / "dest"
    assert cli.main(["merge", str(a), str(other), "--into", str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.lr_schedule" in err[0] and "sweep.toml" in err[0]
    assert not dest.exists()  # no record, no sweep.toml, no table, not even the directory
    # not a sweep directory; a source that is also the destination
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["merge", str(empty), "--into", str(dest)]) == 2
    assert "not a sweep output directory" in capsys.readouterr().err
    assert cli.main(["merge", str(a), "--into", str(a)]) == 2
    assert "both a source and --into" in capsys.readouterr().err
    (empty / "notes.txt").write_text("not a sweep")  # a directory of other files
    assert cli.main(["merge", str(a), "--into", str(empty)]) == 2
    assert "holds no sweep.toml" in capsys.readouterr().err
    assert [p.name for p in empty.iterdir()] == ["notes.txt"]
