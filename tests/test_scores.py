"""Upstream-style scores: invariances, the constant-image baseline, FRC50 in pixels."""

import math

import numpy as np
import pytest

from ptycho.objects import lines_object
from ptycho.scores import SCORE_KEYS, frc50_px, pearson_r, plane_removed, upstream_scores


@pytest.fixture(scope="module")
def truth():
    return lines_object(48, seed=3)


def test_truth_scores_perfect_and_baselines_are_lower(truth):
    s = upstream_scores(truth, truth)
    assert list(s) == list(SCORE_KEYS)
    assert s["amp_norm_ssim"] == pytest.approx(1.0)
    assert s["phase_plane_ssim"] == pytest.approx(1.0)
    assert s["amp_norm_ssim_baseline"] < 0.6
    assert s["phase_plane_ssim_baseline"] < 0.6
    assert s["amp_norm_psnr"] == 100.0 and s["amp_norm_psnr_baseline"] < 30
    assert s["amp_frc50_px"] == pytest.approx(1.0)  # resolved up to Nyquist


def test_scale_global_phase_and_phase_ramp_do_not_count(truth):
    rows, cols = np.indices(truth.shape)
    distorted = 3.0 * truth * np.exp(1j * (0.7 + 0.05 * rows - 0.03 * cols))
    s = upstream_scores(distorted, truth)
    assert s["amp_norm_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert s["phase_plane_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_a_constant_image_scores_its_baseline(truth):
    const = np.full(truth.shape, np.abs(truth).mean(), np.complex64)
    s = upstream_scores(const, truth)
    assert s["amp_norm_ssim"] == pytest.approx(s["amp_norm_ssim_baseline"], abs=1e-6)
    assert s["phase_plane_ssim"] == pytest.approx(s["phase_plane_ssim_baseline"], abs=1e-6)


def test_noise_scores_between_baseline_and_truth(truth):
    rng = np.random.default_rng(0)
    noisy = truth * (1 + 0.1 * rng.standard_normal(truth.shape))
    s = upstream_scores(noisy, truth)
    assert s["amp_norm_ssim_baseline"] < s["amp_norm_ssim"] < 1.0
    assert 1.0 < s["amp_frc50_px"] < math.inf


def test_plane_removed_and_frc50_px():
    rows, cols = np.indices((5, 7), dtype=float)
    np.testing.assert_allclose(plane_removed(2 * rows - cols + 4), 0, atol=1e-9)
    assert frc50_px(0.5) == 1.0 and frc50_px(0.125) == 4.0 and frc50_px(0.0) == math.inf
    with pytest.raises(ValueError, match="equal shape"):
        upstream_scores(np.ones((4, 4)), np.ones((4, 5)))


def test_an_empty_estimate_does_not_score_a_perfect_phase():
    """A collapsed model (amplitude 0 everywhere, seen at 1e2 photons with the MAE) has no
    phase; scoring it must not borrow the truth's (the phase was angle(ref) + angle(0 * ...))."""
    from ptycho.evaluation import evaluate

    truth = lines_object(64, 3)
    empty = np.zeros_like(truth)
    s = upstream_scores(empty, truth)
    assert s["phase_plane_ssim"] < 0.5 and s["phase_plane_psnr"] < 40
    e = evaluate(empty, truth)
    assert e["phase_ssim"] < 0.5 and e["phase_mae"] > 0.1
    # an exact estimate still scores perfectly, also where wraps would otherwise count
    assert upstream_scores(truth * np.exp(2j * np.pi), truth)["phase_plane_ssim"] > 0.999


def test_correlation_is_one_for_the_truth_zero_for_a_constant_and_ignores_scale(truth):
    rows, cols = np.indices(truth.shape)
    distorted = 3.0 * truth * np.exp(1j * (0.7 + 0.05 * rows - 0.03 * cols))
    assert upstream_scores(distorted, truth)["amp_norm_r"] == pytest.approx(1.0)
    assert upstream_scores(distorted, truth)["phase_plane_r"] == pytest.approx(1.0)
    const = np.full(truth.shape, np.abs(truth).mean(), np.complex64)
    s = upstream_scores(const, truth)
    assert s["amp_norm_r"] == 0.0 and s["phase_plane_r"] == 0.0
    assert pearson_r(np.arange(9.0), -2 * np.arange(9.0) + 1) == pytest.approx(-1.0)


def test_a_noisy_faint_reconstruction_is_below_the_constant_in_ssim_but_correlated():
    """Why ``*_r`` exists: on a faint sample (amplitude 0.5 to 0.55) SSIM's 7-pixel windows
    are mostly flat background, where a constant image scores well and independent pixel noise
    badly; a reconstruction that carries the lines, plus noise, scores below the constant
    image's SSIM while its correlation with the truth is clearly positive."""
    faint = lines_object(64, seed=3, amp_contrast=0.1, max_phase=np.pi / 40)
    noisy = np.abs(faint) + 0.05 * np.random.default_rng(0).standard_normal(faint.shape)
    s = upstream_scores(noisy * np.exp(1j * np.angle(faint)), faint)
    assert s["amp_norm_ssim"] < s["amp_norm_ssim_baseline"]
    assert s["amp_norm_r"] > 0.15
