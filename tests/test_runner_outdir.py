"""Output directories: growing a study in place, overrides, locking, and bad input at the
edges (paths, encodings, huge values) -- issue 10 D1/D2/D5/D6/D11 and issue 11 items 1-2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import REPO, cli_env, sweep_dict, use_tasks, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner import cli, orchestrator  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.store import load_results, read_records  # noqa: E402
from runner.sweep import SweepError, load_sweep  # noqa: E402


@pytest.fixture(autouse=True)
def _tasks_on_path(monkeypatch):
    use_tasks(monkeypatch)


def _attempts(out):
    return {k: r["attempt_id"] for k, r in read_records(OutputPaths(out)).items()}


def test_a_study_grows_in_place_and_keeps_every_row(tmp_path, capsys):
    out = tmp_path / "out"
    small = write_sweep(tmp_path / "small.toml", sweep_dict(nphotons=(1e4,)))
    assert cli.main(["run", str(small), "--out", str(out), "--no-progress"]) == 0
    before = _attempts(out)
    assert len(before) == 2
    grown = write_sweep(tmp_path / "grown.toml", sweep_dict(nphotons=(1e4, 1e6), seed=(0, 1)))
    assert cli.main(["run", str(grown), "--out", str(out), "--no-progress"]) == 0
    after = _attempts(out)
    assert len(after) == 8
    assert {k: after[k] for k in before} == before  # the old arms did not run again
    recorded = load_sweep(OutputPaths(out).sweep_toml)
    assert recorded.nphotons == (1e4, 1e6) and recorded.seed == (0, 1)
    # the small sweep again: nothing runs, nothing is lost, the record keeps the union
    assert cli.main(["run", str(small), "--out", str(out), "--no-progress"]) == 0
    assert _attempts(out) == after and len(load_results(out)) == 8
    assert load_sweep(OutputPaths(out).sweep_toml).seed == (0, 1)
    # another grid axis: the union of both grids is recorded; status lists the gap as pending
    other = write_sweep(tmp_path / "other.toml", sweep_dict(N=(32,), nphotons=(1e5,)))
    assert cli.main(["run", str(other), "--out", str(out), "--no-progress"]) == 0
    rec = load_sweep(OutputPaths(out).sweep_toml)
    assert rec.N == (16, 32) and rec.nphotons == (1e4, 1e6, 1e5)
    header = OutputPaths(out).sweep_toml.read_text().splitlines()[0]
    assert header.startswith("# the union of the sweeps") and str(other) in header
    assert str(out) not in header  # the directory's own path: not recorded in it
    capsys.readouterr()
    assert cli.main(["status", str(out)]) == 1
    assert "pending" in capsys.readouterr().out


def test_a_changed_setting_is_refused_naming_the_key(tmp_path, capsys):
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(training={"nepochs": 2}), out, progress=False)
    path = write_sweep(tmp_path / "s.toml", sweep_dict(training={"nepochs": 3},
                                                       nphotons=(1e4, 1e5)))
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.nepochs = 3 here but 2 there" in err[0]
    assert "--out" in err[0] and str(path) in err[0]
    assert len(read_records(OutputPaths(out))) == 2


def test_a_changed_default_is_refused_not_run_beside_the_old_arms(tmp_path, capsys):
    """Round 7 changed simulation.feature_scale's default from 1 to "auto" (2 at N = 64): a
    directory written before, whose sweep.toml leaves it out, now reads as another object
    with the same text. Its arms' ids say so; the run is refused, nothing is written."""
    out = tmp_path / "out"
    old = sweep_dict(N=(64,), simulation={"object_size": 300, "feature_scale": 1.0})
    runner.run_sweep(old, out, progress=False)
    before = _attempts(out)
    # the directory as the code before the option wrote it: the setting left out
    toml = OutputPaths(out).sweep_toml
    toml.write_text("".join(line for line in toml.read_text().splitlines(keepends=True)
                            if not line.startswith("feature_scale")))
    path = write_sweep(tmp_path / "s.toml", sweep_dict(N=(64,), nphotons=(1e4, 1e5)))
    capsys.readouterr()
    assert cli.main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 2 arm(s) that this code would run under other ids" in err[0]
    assert "N=64 gridsize=1 nphotons=10000" in err[0] and str(path) in err[0]
    assert _attempts(out) == before
    # pinned to its old value, the same study grows in place
    pinned = write_sweep(tmp_path / "p.toml", sweep_dict(
        N=(64,), nphotons=(1e4, 1e5), simulation={"object_size": 300, "feature_scale": 1.0}))
    assert f"into the sweep file and into {toml}" in err[0]
    toml.write_text(toml.read_text().replace("[simulation]\n",
                                             "[simulation]\nfeature_scale = 1.0\n"))
    assert cli.main(["run", str(pinned), "--out", str(out), "--no-progress"]) == 0
    after = _attempts(out)
    assert len(after) == 4 and {k: after[k] for k in before} == before


def test_overrides_are_validated_applied_and_recorded(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.toml", sweep_dict(training={"nepochs": 2}))
    out = tmp_path / "out"
    rc = cli.main(["run", str(path), "training.nepochs=3", "grid.nphotons=[1e5, 1e6]",
                   "arms.loss=[\"mae\"]", "--out", str(out), "--no-progress"])
    assert rc == 0
    df = load_results(out)
    assert sorted(df["nphotons"]) == [1e5, 1e6] and set(df["loss"]) == {"mae"}
    assert set(df["nepochs"]) == {3}
    text = OutputPaths(out).sweep_toml.read_text()
    assert "command-line overrides: training.nepochs=3" in text
    assert tomllib.loads(text)["training"]["nepochs"] == 3
    for bad, key in (("training.nepochs=2.5", "training.nepochs = 2.5 is invalid"),
                     ("training.colour=1", "training.colour is an unknown key"),
                     ("grid.N=[48]", "grid.N = 48 is invalid"),
                     ("nepochs=3", "must be section.key=value"),
                     ("training.nepochs=[1", "is not a TOML value")):
        capsys.readouterr()
        assert cli.main(["run", str(path), bad, "--out", str(tmp_path / "o2")]) == 2, bad
        assert key in capsys.readouterr().err, bad
        assert not (tmp_path / "o2").exists()
    # a bare word is a string
    sw = load_sweep(path, overrides=["training.lr_schedule=constant"])
    assert sw.training["lr_schedule"] == "constant"


def test_two_simultaneous_starts_never_mix_two_sweeps(tmp_path):
    out = tmp_path / "out"
    procs = []
    for nepochs in (2, 3):
        path = write_sweep(tmp_path / f"s{nepochs}.toml", sweep_dict(
            task="runner_tasks:slow_task", training={"nepochs": nepochs}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(path), "--out", str(out),
             "--no-progress"], cwd=REPO, env=cli_env(RUNNER_TEST_SLEEP=1),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    codes = [p.wait(timeout=120) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2], errs
    loser = errs[codes.index(2)]
    assert "another ptycho-sweep run" in loser or "different sweep" in loser
    winner = load_sweep(OutputPaths(out).sweep_toml, check_task=False)
    ids = {a.arm_id for u in winner.plan() for a in u.arms}
    assert set(read_records(OutputPaths(out))) == ids


def test_relative_out_survives_a_task_that_changes_directory(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = write_sweep(tmp_path / "s.toml", sweep_dict(task="runner_tasks:chdir_task"))
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(path), "--out", "rel",
                           "--no-progress"], cwd=work,
                          env=cli_env(RUNNER_TEST_CHDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(load_results(work / "rel")["status"]) == {"ok"}
    assert str(work / "rel") in proc.stderr  # the absolute path is shown


def _one_line_exit_2(args, capsys, *needles):
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], err[0]


def test_bad_input_at_the_edges_is_one_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "out")
    binary = tmp_path / "latin1.toml"
    binary.write_bytes("[sweep]\nname = \"caf\xe9\"\n".encode("latin-1"))
    _one_line_exit_2(["run", str(binary), "--out", out], capsys, str(binary), "UTF-8")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    _one_line_exit_2(["run", str(deep), "--out", out], capsys, str(deep))
    long = write_sweep(tmp_path / "long.toml", sweep_dict(name="n" * 300))
    _one_line_exit_2(["run", str(long), "--out", out], capsys, str(long), "sweep.name")
    huge = write_sweep(tmp_path / "huge.toml", sweep_dict(seed=(2**64,)))
    _one_line_exit_2(["run", str(huge), "--out", out], capsys, str(huge), "arms.seed",
                     "64 bits")
    assert not Path(out).exists()
    ok = write_sweep(tmp_path / "ok.toml", sweep_dict())
    (tmp_path / "afile").write_text("x")  # an --out that cannot be created, even by root
    _one_line_exit_2(["run", str(ok), "--out", str(tmp_path / "afile" / "out")], capsys,
                     "--out", "cannot create the output directory")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        _one_line_exit_2(["run", str(ok), "--out", str(locked / "out")], capsys, "--out",
                         "Permission denied")
    finally:
        locked.chmod(0o700)


def test_no_run_exits_0_without_a_table(tmp_path, monkeypatch, capsys):
    path = write_sweep(tmp_path / "s.toml", sweep_dict())

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(orchestrator, "consolidate", broken)
    t0 = time.monotonic()
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert "could not write the results table" in capsys.readouterr().err
    assert time.monotonic() - t0 < 60
    with pytest.raises(orchestrator.OutputError):
        runner.run_sweep(load_sweep(path), tmp_path / "out2", progress=False)


def test_sweep_errors_are_data(tmp_path):
    d = sweep_dict(training={"nepochs": 0})
    d["grid"]["N"] = [48]
    with pytest.raises(SweepError) as err:
        load_sweep(d)
    by_key = {p.key: p for p in err.value.problems}
    assert by_key["grid.N"].value == 48 and "power of two" in by_key["grid.N"].allowed
    assert by_key["training.nepochs"].value == 0


def test_disk_full_is_one_line_and_not_ok(tmp_path, monkeypatch, capsys):
    path = write_sweep(tmp_path / "s.toml", sweep_dict())

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(orchestrator, "atomic_write_json", full)
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ptycho-sweep")]
    assert len(err) == 1 and "No space left on device" in err[0] and "run again" in err[0]


def test_an_interrupt_swallowed_on_its_way_still_stops_the_run():
    """A library callback may swallow the KeyboardInterrupt of the signal handler (distributed's
    GC hook does): the handler also sets an event that the results loop checks."""
    import signal

    class Fake:
        cancelled = False

        def cancel(self):
            self.cancelled = True

    fake = Fake()
    before = signal.getsignal(signal.SIGINT)
    with orchestrator._on_interrupt(fake) as stop:
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.5)
        except KeyboardInterrupt:
            pass  # swallowed
        assert stop.is_set() and fake.cancelled
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_the_orchestrator_says_which_limits_a_backend_does_not_enforce(tmp_path, caplog):
    d = sweep_dict(nphotons=(1e4,))
    d["sweep"]["memory_limit_mb"] = 4000
    with caplog.at_level("WARNING", logger="runner"):
        runner.run_sweep(d, tmp_path / "out", backend="inprocess", progress=False)
    text = caplog.text
    assert "NOT isolated" in text and "does not enforce sweep.timeout_s" in text
    assert "does not enforce sweep.memory_limit_mb" in text
