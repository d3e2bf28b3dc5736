"""The command line: help texts, --version, -v/-q placement, progress lines and the summary at
the end of a run (fake tasks, no TensorFlow)."""

from __future__ import annotations

import io
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import run_cli, sweep_dict, write_sweep  # noqa: E402

from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.progress import RunProgress, format_duration, run_summary  # noqa: E402

PROGRESS_LINE = re.compile(r"INFO \[(\d+)/(\d+) units\] (\S+) done in \S+: .+ \| (\d+)/(\d+) "
                           r"arms, \S+ elapsed, ETA \S+$")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ptycho-sweep {version('ptycho-sweep')}"


@pytest.mark.parametrize("argv, verbose, quiet", [
    (["run", "x.toml", "-q"], False, True),
    (["run", "x.toml", "training.nepochs=5", "-v"], True, False),
    (["-q", "run", "x.toml"], False, True),
    (["-v", "status", "d"], True, False),
    (["plot", "d", "--quiet"], False, True),
    (["aggregate", "d"], False, False),
])
def test_verbosity_flags_before_or_after_the_command(argv, verbose, quiet):
    args = cli.build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


@pytest.mark.parametrize("argv", [
    ["run", "x.toml", "a.b=1", "c.d=2", "--n-jobs", "3"],
    ["run", "x.toml", "--n-jobs", "3", "a.b=1", "c.d=2"],
    ["run", "x.toml", "a.b=1", "--n-jobs", "3", "c.d=2"],
    ["run", "--n-jobs", "3", "x.toml", "a.b=1", "c.d=2"],
])
def test_run_overrides_before_between_or_after_options(argv):
    args = cli.parse_args(argv)
    assert (args.sweep, args.overrides, args.n_jobs) == ("x.toml", ["a.b=1", "c.d=2"], 3)


@pytest.mark.parametrize("argv, unknown", [
    (["run", "x.toml", "a.b=1", "--bogus"], "--bogus"),
    (["status", "d", "extra"], "extra"),
])
def test_leftover_words_are_a_usage_error(argv, unknown, capsys):
    assert cli.main(argv) == 2
    assert f"unrecognized arguments: {unknown}" in capsys.readouterr().err


def test_every_command_has_a_description_examples_and_exit_codes(capsys):
    for command in ("run", "status", "aggregate", "plot"):
        assert cli.main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:\n  ptycho-sweep " + command in text, command
        for code in ("0 ", "1 ", "2 ", "130"):
            assert f"\n  {code}" in text, (command, code)
        description = text.split("\n\n")[1]  # after the usage: the description paragraph
        assert not description.startswith(("positional", "options")), command
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "130  interrupted" in text and "--version" in text and "typical session" in text


def test_non_tty_run_logs_one_line_per_unit_and_ends_with_a_summary(tmp_path):
    sweep = write_sweep(tmp_path / "s.toml", sweep_dict(task="runner_tasks:flaky_task",
                                                        N=(16, 32, 64), retries=0))
    out = tmp_path / "out"
    proc = run_cli("run", sweep, "--out", out, "--n-jobs", "2", RUNNER_TEST_FAIL="1")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the N=32 unit failed
    lines = [m for m in map(PROGRESS_LINE.search, proc.stderr.splitlines()) if m]
    assert len(lines) == 3, proc.stderr  # one line per unit, none per arm
    assert sorted(int(m[1]) for m in lines) == [1, 2, 3] and {m[2] for m in lines} == {"3"}
    assert int(lines[-1][4]) == int(lines[-1][5]) == 6  # every arm done
    df = pd.read_parquet(OutputPaths(out).metrics_parquet)
    assert {m[3] for m in lines} == set(df["unit_id"])
    # the end: absolute output directory, arms by status, next commands, the failed unit's log
    text = proc.stdout
    assert f"output: {out.resolve()}" in text and "arms: 4 ok, 2 failed (of 6)" in text
    assert f"ptycho-sweep status {out.resolve()}" in text
    assert f"ptycho-sweep plot {out.resolve()}" in text
    failed_unit = df.loc[df["status"] == "failed", "unit_id"].unique().item()
    log = OutputPaths(out.resolve()).worker_log(failed_unit)
    assert f"{log}  (2 failed)" in text and log.is_file()
    # -q after the command: no progress lines, the summary still printed
    proc = run_cli("run", sweep, "--out", out, "-q")
    assert proc.returncode == 0 and not PROGRESS_LINE.search(proc.stderr), proc.stderr
    assert "arms: 6 ok (of 6)" in proc.stdout


def test_terminal_bar_names_the_running_units():
    clock = iter([0.0, 1.0, 2.0, 30.0, 60.0]).__next__
    units = {"u16": ("N16 g1 1e+04", 2), "u32": ("N32 g2 1e+09", 2)}
    progress = RunProgress(units, "t", bar=True, file=io.StringIO(), clock=clock)
    progress.unit_started("u16")  # t = 1
    progress.unit_started("u32")  # t = 2
    assert "running: N16 g1 1e+04, N32 g2 1e+09" in progress.bar.postfix
    progress.arm_done("ok")
    progress.arm_done("failed")
    assert "ok=1, failed=1" in progress.bar.postfix and progress.bar.n == 2
    line = progress.unit_done("u16", ["ok", "failed"])  # t = 30: 2 of 4 arms in 30 s
    assert line == ("[1/2 units] u16 done in 29s: 1 ok, 1 failed | 2/4 arms, 30s elapsed, "
                    "ETA 30s")
    assert "running: N32 g2 1e+09" in progress.bar.postfix and "N16" not in progress.bar.postfix
    progress.close()
    assert RunProgress(units, bar=True).bar is None  # stderr is not a terminal under pytest


def test_format_duration_and_summary_of_pending_arms():
    assert [format_duration(s) for s in (4.4, 65, 7260)] == ["4s", "1m05s", "2h01m"]
    df = pd.DataFrame({"arm_id": ["a", "b", "x"], "unit_id": ["u1", "u2", "u9"],
                       "status": ["timeout", "ok", "ok"]})
    text = run_summary(df, "rel/out", arm_ids=["a", "b", "c"])
    assert "arms: 1 ok, 1 timeout, 1 pending (of 3)" in text
    assert f"{Path('rel/out').resolve() / 'units' / 'u1' / 'worker.log'}  (1 timeout)" in text
    assert "u9" not in text  # another sweep's arm in the same directory
