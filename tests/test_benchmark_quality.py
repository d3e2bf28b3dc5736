"""benchmarks/quality.py runs end to end on a tiny sweep, with command-line overrides."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[sweep]
name = "tiny_quality"
task = "experiments.dose_response:run_unit"

[grid]
N = [16]
gridsize = [1, 2]
nphotons = [1e9]

[arms]
loss = ["mae"]

[model]
n_filters_scale = 1

[simulation]
object_size = 64
n_train = 16
n_test = 4
scan = "grid"

[training]
nepochs = 50
batch_size = 16
"""


def test_quality_benchmark_prints_both_modes_and_applies_overrides(tmp_path):
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    csv = tmp_path / "every.csv"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(sweep),
         "training.nepochs=2", "grid.gridsize=[2]", "--every", "1", "--threads", "1",
         "--csv", str(csv), "--save", str(tmp_path / "recon")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    every = pd.read_csv(csv)
    # the overrides took effect: gridsize 2 only, 2 epochs, each scored in both modes
    assert set(every["gridsize"]) == {2}
    assert sorted(every["epoch"].unique()) == [1, 2]
    assert sorted(every["mode"].unique()) == ["new", "same"]
    table = out.stdout.splitlines()
    header = next(line for line in table if "amp_norm_ssim_baseline" in line)
    assert "min_to_0.7" in header
    assert sum(" same " in line or " new " in line for line in table) == 2
    # --save: each mode's final reconstruction, arrays and picture
    import numpy as np

    stem = tmp_path / "recon" / "N16_g2_p1e+09_mae_s0"
    for mode in ("same", "new"):
        with np.load(f"{stem}_{mode}.npz") as z:
            assert set(z.files) == {"amplitude", "phase", "amplitude_illum", "phase_illum",
                                    "true_amplitude", "true_phase"}
            assert z["amplitude"].shape == z["true_amplitude"].shape
        assert Path(f"{stem}_{mode}.png").stat().st_size > 1000


def test_with_held_out_photons_it_sets_the_rules_choice_beside_the_best_scoring(tmp_path):
    """With training.holdout every scoring row has its epoch's held-out NLL, and the summary
    names the epoch the rule picks, its SSIM (the weights restored) and the best scoring's."""
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    csv = tmp_path / "every.csv"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(sweep),
         "training.nepochs=4", "training.holdout=0.1", "grid.gridsize=[1]",
         "arms.realspace_weight=[0, 0.3]", "--every", "1",
         "--threads", "1", "--csv", str(csv)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    every = pd.read_csv(csv)
    assert set(every["realspace_weight"]) == {0.0, 0.3}  # an [arms] list: one arm per value
    every = every[every["realspace_weight"] == 0.3]
    scored = every[every["held_choice"] != True]  # noqa: E712 - NaN on the epoch rows
    assert sorted(scored["epoch"].unique()) == [1, 2, 3, 4]
    assert scored["holdout_loss"].notna().all()
    held = every[every["held_choice"] == True]  # noqa: E712
    assert sorted(held["mode"]) == ["new", "same"]
    # the restored weights are the epoch of least held-out NLL, and score as that epoch did
    best = scored.loc[scored["holdout_loss"].idxmin()]
    assert (held["epoch"] == best["epoch"]).all()
    same = scored[(scored["mode"] == "same") & (scored["epoch"] == best["epoch"])]
    assert float(held[held["mode"] == "same"]["amp_norm_ssim"].iloc[0]) == pytest.approx(
        float(same["amp_norm_ssim"].iloc[0]), abs=1e-6)
    header = next(line for line in out.stdout.splitlines() if "held_epoch" in line)
    assert "held_ssim" in header and "max_ssim" in header and "max_epoch" in header
    assert "realspace_weight" in header
    assert sum(" same " in line or " new " in line for line in out.stdout.splitlines()) == 4


def test_quality_benchmark_rejects_bad_input_before_loading_tensorflow(tmp_path):
    """A bad sweep file or override gets one line naming the file and key, exit 2, and no
    TensorFlow start-up (nor does --help)."""
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY)
    script = str(ROOT / "benchmarks" / "quality.py")
    for args in ([str(sweep), "grid.N=[7]"], [str(tmp_path / "missing.toml")],
                 [str(sweep), "training.holdout=1.5"]):
        out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("quality.py: error: "), out.stderr
        expected = ("missing.toml" if "missing" in args[0] else
                    "training.holdout = 1.5" if "holdout" in args[-1] else "grid.N = 7")
        assert expected in lines[0], lines[0]
    probe = ("import sys; sys.argv = ['quality.py', '--help']; sys.path.insert(0, 'benchmarks')\n"
             "import quality\n"
             "try:\n    quality.main()\nexcept SystemExit:\n    pass\n"
             "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr
