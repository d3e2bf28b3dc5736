"""End to end: experiments/smoke.toml with the real default task (slow: TensorFlow training)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import REPO, run_cli  # noqa: E402

import runner  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402


@pytest.mark.slow
def test_smoke_sweep_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    proc = run_cli("run", REPO / "experiments" / "smoke.toml", "--out", out, "--n-jobs", "2",
                   "--no-progress", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    df = runner.load_results(out)
    assert len(df) == 16 and set(df["status"]) == {"ok"}
    assert df.groupby("unit_id")["pid"].nunique().eq(1).all() and df["pid"].nunique() == 8
    for col in ("amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "final_loss", "train_s"):
        assert df[col].notna().all(), col
    paths = OutputPaths(out)
    assert len(paths.artifact_files("*.npz")) == 16
    assert run_cli("aggregate", out).returncode == 0 and paths.aggregate_csv.is_file()
    assert run_cli("plot", out).returncode == 0 and paths.reconstructions_png.is_file()
