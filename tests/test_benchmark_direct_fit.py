"""benchmarks/direct_fit.py: the object fitted directly to the data, without a network (the
reference of docs/quality.md, round 12). On noiseless-enough data it must reach the true
object's loss and score far above the flat image: a check of the forward path it shares with
the model, and of the fit itself."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.parametrize("gridsize", [1, 2])
def test_direct_fit_recovers_the_object_at_high_dose(gridsize):
    from direct_fit import _truth_loss, direct_fit

    from experiments.dose_response import score_patches
    from ptycho import model as model_lib
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.losses import get_loss
    from ptycho.simulation import simulate_unit

    cfg = ModelConfig(N=16, gridsize=gridsize, n_filters_scale=1)
    sim = SimulationConfig(object_size=64, n_train=16, n_test=4, scan="grid", reconstruct="same")
    data, _ = simulate_unit(cfg, 1e9, sim)
    model = model_lib.build_models(cfg, probe=data.probe,
                                   intensity_scale=data.intensity_scale).autoencoder
    fn = get_loss("nll_huber").make(1e9 / 16**2, None)
    rows = list(direct_fit(model, data, fn, "intensity", steps=300, lr=0.02))
    assert [r[0] for r in rows] == [0, 25, 50, 100, 200, 300]
    flat, final = rows[0][1], rows[-1][1]
    truth = _truth_loss(model, data, fn, "intensity")
    assert truth < flat
    assert (flat - final) / (flat - truth) > 0.95
    metrics, _ = score_patches(rows[-1][2], data)
    assert rows[-1][2].shape == (data.B, 16, 16, 1)
    assert metrics["amp_norm_ssim"] > metrics["amp_norm_ssim_baseline"] + 0.3, metrics


def test_direct_fit_prints_a_row_per_report_step(tmp_path):
    from test_benchmark_quality import TINY

    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "direct_fit.py"), str(sweep),
                          "--steps", "30"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [(r[1], r[4]) for r in rows] == [("2", "0"), ("2", "25"), ("2", "30")]
    assert float(rows[0][5]) == 0.0 and float(rows[-1][5]) > 0
