"""aggregate / plot / status on a finished sweep (fake task with plausible metrics)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, tasks_pythonpath  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.report import aggregate  # noqa: E402
from runner.store import COLUMNS  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("PYTHONPATH", tasks_pythonpath())
        runner.run_sweep(sweep_dict(N=(16, 32), nphotons=(1e4, 1e6, 1e8), seed=(0, 1)), out,
                         n_jobs=2, progress=False)
    return out


def test_results_table(finished):
    df = runner.load_results(finished)
    assert len(df) == 24 and set(df["status"]) == {"ok"}
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert list(df.columns[len(COLUMNS):]) == sorted(df.columns[len(COLUMNS):])
    parquet = pd.read_parquet(OutputPaths(finished).metrics_parquet)
    assert len(parquet) == 24 and list(parquet.columns) == list(df.columns)


def test_aggregate(finished, capsys):
    assert cli.main(["aggregate", str(finished)]) == 0
    text = capsys.readouterr().out
    for metric in ("amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "amp_frc50",
                   "final_loss"):
        assert metric in text
    agg = pd.read_csv(OutputPaths(finished).aggregate_csv)
    assert list(agg.columns) == ["N", "gridsize", "loss", "nphotons", "metric", "mean", "std",
                                 "n_seeds"]
    psnr = agg[agg["metric"] == "amp_psnr"]
    assert len(psnr) == 2 * 2 * 3 and set(psnr["n_seeds"]) == {2}
    row = psnr[(psnr["N"] == 16) & (psnr["loss"] == "nll") & (psnr["nphotons"] == 1e6)]
    assert row["mean"].item() == pytest.approx(10 + 12 + 0.5 + 0.05)  # mean over seeds 0, 1
    _, pivots = aggregate(runner.load_results(finished))
    table = pivots["amp_ssim"]
    assert list(table.columns) == [1e4, 1e6, 1e8] and table.index.names == ["N", "gridsize",
                                                                            "loss"]


def test_plot(finished, capsys):
    assert cli.main(["plot", str(finished)]) == 0
    paths = OutputPaths(finished)
    assert paths.dose_response_png.stat().st_size > 10_000
    assert paths.reconstructions_png.stat().st_size > 10_000
    assert "saved" in capsys.readouterr().out


def test_plot_without_artifacts_skips_the_panel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", tasks_pythonpath())
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(), out, progress=False)
    assert cli.main(["plot", str(out)]) == 0
    assert "reconstructions.png skipped" in capsys.readouterr().out
    assert OutputPaths(out).dose_response_png.is_file()
    assert not OutputPaths(out).reconstructions_png.exists()
