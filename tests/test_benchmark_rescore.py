"""benchmarks/rescore.py scores saved reconstructions again without training: one row per ok
arm with an ``.npz``, the truth scores as the truth, bad input exits 2 with one line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, tasks_pythonpath  # noqa: E402

import runner  # noqa: E402
from ptycho.objects import lines_object  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "rescore.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import rescore  # noqa: E402


def test_the_truth_rescores_as_the_truth_and_noise_lower(tmp_path):
    truth = lines_object(48, seed=1)
    noisy = np.abs(truth) * (1 + 0.2 * np.random.default_rng(0).standard_normal(truth.shape))
    for name, amp in (("exact", np.abs(truth)), ("noisy", noisy)):
        np.savez(tmp_path / f"{name}.npz", amplitude=amp, phase=np.angle(truth),
                 amplitude_illum=amp, phase_illum=np.angle(truth),
                 true_amplitude=np.abs(truth), true_phase=np.angle(truth))
    exact = rescore.rescore(tmp_path / "exact.npz")
    noisy = rescore.rescore(tmp_path / "noisy.npz")
    assert set(exact) == {*rescore.SHOWN, *(f"{k}_illum" for k in rescore.SHOWN)}
    assert exact["amp_norm_ssim"] == pytest.approx(1.0)
    assert exact["amp_norm_r"] == pytest.approx(1.0)
    assert 0.2 < noisy["amp_norm_r"] < 0.99
    assert noisy["amp_norm_r_illum"] == noisy["amp_norm_r"]


def test_a_sweep_directory_gives_one_row_per_arm_and_bad_input_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", tasks_pythonpath())
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(N=(16,), nphotons=(1e4, 1e6), seed=(0,)), out, progress=False)
    run = subprocess.run([sys.executable, str(SCRIPT), str(out), "--where", "nphotons > 1e5"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert "amp_norm_r" in lines[0] and len(lines) == 1 + 2  # header, nll and mae at 1e6
    for args in ([str(tmp_path / "missing")], [str(out), "--where", "no_such_column > 1"]):
        bad = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
