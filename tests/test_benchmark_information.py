"""benchmarks/sample_information.py: the Poisson KL of a sample's patterns from a constant
object's, which docs/quality.md (round 11) uses to predict where a sample's dose window lies."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho.config import ModelConfig, SimulationConfig
from ptycho.simulation import simulate_unit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sample_information import pattern_kl  # noqa: E402


def _kl(contrast, nphotons=1e4):
    sim = SimulationConfig(object_size=48, n_train=4, n_test=1, amp_contrast=contrast,
                           max_phase=0.785 * contrast)
    train, _ = simulate_unit(ModelConfig(N=16, gridsize=1), nphotons, sim)
    return pattern_kl(train.patches, train.probe, nphotons), train


def test_kl_is_zero_for_a_constant_object_linear_in_dose_and_about_quadratic_in_contrast():
    kl1, train = _kl(1.0)
    flat = np.full_like(train.patches, 0.7)
    assert pattern_kl(flat, train.probe, 1e4) == pytest.approx(0.0, abs=1e-9)
    assert kl1 > 0
    assert _kl(1.0, 1e6)[0] == pytest.approx(100 * kl1, rel=1e-4)
    ratio = kl1 / _kl(0.3)[0]
    assert 0.7 * 0.3**-2 < ratio < 1.4 * 0.3**-2, ratio


def test_an_override_may_come_first_and_the_default_sweep_then_applies():
    """``script KEY=VALUE`` reads as an override of the default sweep, not as a file name."""
    from _args import sweep_and_overrides

    default = ROOT / "experiments" / "smoke.toml"
    assert sweep_and_overrides("simulation.seed=1", ["a=2"], default) == \
        (default, ["simulation.seed=1", "a=2"])
    assert sweep_and_overrides(None, [], default) == (default, [])
    smoke = str(ROOT / "experiments" / "quality.toml")
    assert sweep_and_overrides(smoke, ["a=1"], default) == (Path(smoke), ["a=1"])


@pytest.mark.parametrize("script", ["sample_information", "dead_units", "gridsize1_tiles",
                                    "direct_fit"])
def test_bad_input_is_one_line_and_exit_2(script):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"),
                          str(ROOT / "experiments" / "smoke.toml"), "simulation.amp_contrast=2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "amp_contrast" in lines[0] and "smoke.toml" in lines[0], out.stderr
    assert lines[0].startswith(f"{script}.py: error: ")


def test_dead_units_prints_every_hidden_layer_before_and_after(tmp_path):
    """benchmarks/dead_units.py on a tiny sweep, with an override reaching the model: one row
    per hidden convolution, fractions in [0, 1], channel counts within the layer's width."""
    from test_benchmark_quality import TINY

    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    for activation in ("relu", "leaky_relu"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "dead_units.py"), str(sweep),
             f'model.activation="{activation}"', "--epochs", "2", "--samples", "8",
             "--threads", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        lines = out.stdout.splitlines()
        assert f"activation {activation}" in lines[0] and "after 2 epochs" in lines[0]
        rows = [line.split() for line in lines[2:]]
        assert [r[0] for r in rows][:2] == ["enc0_a", "enc0_b"] and len(rows) >= 4
        for r in rows:
            before, after, total = int(r[3]), int(r[5]), int(r[7])
            assert 0 <= after <= total and 0 < before <= total
            assert 0 <= float(r[1]) <= 1 and 0 <= float(r[2]) <= 1
