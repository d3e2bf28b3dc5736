"""benchmarks/shared_patch.py: the shared-patch fit finds a patch that explains patterns made
by one patch, and the likelihood it reports is the Poisson NLL."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import shared_patch  # noqa: E402


def test_poisson_nll_and_tile_correlation():
    lam, y = np.array([1.0, 2.0]), np.array([1.0, 0.0])
    assert shared_patch.poisson_nll(lam, y) == pytest.approx(3.0)  # 1 - log 1 + 2
    window = np.arange(4.0).reshape(2, 2)
    assert shared_patch.tile_r(window, np.tile(window, (3, 2))) == pytest.approx(1.0)


def test_the_fit_recovers_the_likelihood_of_a_patch_with_a_spot():
    """Counts made by one patch with a phase spot: fitted from flat, the patch explains them
    (nearly) as well as the patch that made them, and much better than flat."""
    n = 16
    rows, cols = np.indices((n, n)) - n // 2
    probe = (np.hypot(rows, cols) < 5).astype(np.complex64)
    spot = np.exp(1j * 0.5 * np.exp(-(rows**2 + cols**2) / 4.0)).astype(np.complex64)
    made = 0.5 * spot
    scale = 30.0
    counts = np.broadcast_to(shared_patch.expected_counts(made, probe, scale), (4, n, n))
    flat = np.full((n, n), 0.5, np.complex64)
    fitted = shared_patch.fit_shared_patch(counts, probe, scale, flat, steps=800, lr=0.02)

    def nll(patch):
        lam = np.broadcast_to(shared_patch.expected_counts(patch, probe, scale), counts.shape)
        return shared_patch.poisson_nll(lam, counts)

    gap = nll(flat) - nll(made)
    assert gap > 10
    assert nll(flat) - nll(fitted) > 0.95 * gap


def test_gridsize_other_than_1_exits_2_with_one_line_before_simulating():
    import subprocess

    script = Path(shared_patch.__file__)
    run = subprocess.run([sys.executable, str(script), "grid.gridsize=[2]"],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in run.stderr.splitlines() if "shared_patch.py" in ln]
    assert run.returncode == 2 and len(lines) == 1 and "grid.gridsize" in lines[0], run.stderr
