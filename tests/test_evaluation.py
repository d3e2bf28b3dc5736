"""Tests of ptycho.stitching (stitching, covered region) and ptycho.evaluation (global phase,
FRC, metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ptycho.evaluation import (
    METRIC_KEYS,
    PSNR_CAP_DB,
    evaluate,
    evaluate_reconstruction,
    frc,
    frc50,
    image_metrics,
    remove_global_phase,
)
from ptycho.stitching import covered_region, illumination, stitch_patches


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def smooth_field(shape, sigma, seed):
    """A smoothed random field scaled to [0, 1]."""
    f = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma, mode="wrap")
    return (f - f.min()) / (f.max() - f.min())


def complex_object(shape=(64, 64), seed=0):
    amp = 0.5 + 0.5 * smooth_field(shape, 2.0, seed)
    phase = 1.2 * (smooth_field(shape, 2.0, seed + 1) - 0.5)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def cut_patches(obj, positions, n):
    """Side-n patches cut at integer positions: pixel (i, j) <- obj[p - n//2 + (i, j)]."""
    pos = np.asarray(positions, dtype=np.int64)
    rows = pos[:, 0, None] - n // 2 + np.arange(n)
    cols = pos[:, 1, None] - n // 2 + np.arange(n)
    return obj[rows[:, :, None], cols[:, None, :]]


def grid_positions(lo, hi, step):
    r = np.arange(lo, hi + 1, step)
    rr, cc = np.meshgrid(r, r, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Stitching
# --------------------------------------------------------------------------------------------
def test_stitch_integer_positions_reproduces_object():
    obj = (np.random.default_rng(3).standard_normal((48, 48, 2)) @ [1, 1j]).astype(np.complex64)
    n = 16
    pos = np.random.default_rng(4).integers(8, 41, size=(60, 2)).astype(np.float64)
    patches = cut_patches(obj, pos, n)
    for crop in (None, 5, n):
        out, weight = stitch_patches(patches, pos, obj.shape, crop=crop)
        assert out.shape == obj.shape and out.dtype == np.complex64
        assert weight.shape == obj.shape and weight.dtype == np.float32
        covered = weight > 0
        assert covered.sum() > 100
        np.testing.assert_allclose(out[covered], obj[covered], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[~covered], 0)
        region = covered_region(weight)
        assert np.all(weight[region] >= 1)
        np.testing.assert_allclose(out[region], obj[region], rtol=1e-6, atol=1e-6)


def test_stitch_weights_count_overlaps_hand_example():
    # N=4, default crop 2: patch window rows/cols 1..2; position p -> object p-2+1 .. p-2+2.
    patches = np.zeros((3, 4, 4), dtype=np.complex64)
    patches[0] = 1.0
    patches[1] = 3.0
    patches[2] = 1j
    pos = np.array([[2, 2], [2, 3], [3, 3]], dtype=float)
    obj, weight = stitch_patches(patches, pos, (5, 5))
    expected_w = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 2, 1, 0],
            [0, 1, 3, 2, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(weight, expected_w)
    assert obj[1, 1] == 1.0
    assert obj[1, 2] == pytest.approx(2.0)  # (1 + 3) / 2
    assert obj[2, 2] == pytest.approx((4 + 1j) / 3)
    assert obj[3, 3] == pytest.approx(1j)
    assert obj[0, 0] == 0
    # Contributions outside the object are dropped, not wrapped.
    obj2, weight2 = stitch_patches(patches[:1], [[0, 0]], (5, 5))
    assert weight2.sum() == 1 and weight2[0, 0] == 1 and obj2[0, 0] == 1


def test_stitch_pixel_weights_give_the_weighted_mean_hand_example():
    # The hand example's first two patches, the second weighing 3 at every pixel but one.
    patches = np.zeros((2, 4, 4), dtype=np.complex64)
    patches[0] = 1.0
    patches[1] = 3.0
    w = np.ones((2, 4, 4))
    w[1] = 3.0
    w[1, 2, 1] = 0.0  # lands on object pixel (2, 2): only patch 0 counts there
    pos = np.array([[2, 2], [2, 3]], dtype=float)
    obj, weight = stitch_patches(patches, pos, (5, 5), weights=w)
    assert obj[1, 2] == pytest.approx((1 + 3 * 3) / 4)  # both land: (1*1 + 3*3) / (1 + 3)
    assert weight[1, 2] == pytest.approx(4) and weight[2, 2] == pytest.approx(1)
    assert obj[2, 2] == pytest.approx(1.0)
    assert obj[1, 3] == pytest.approx(3.0)  # patch 1 alone: its weight cancels
    # Equal weights everywhere are the unweighted stitch; an (N, N) array is shared.
    plain, plain_w = stitch_patches(patches, pos, (5, 5))
    same, same_w = stitch_patches(patches, pos, (5, 5), weights=np.full((4, 4), 2.0))
    np.testing.assert_allclose(same, plain, rtol=1e-6)
    np.testing.assert_allclose(same_w, 2 * plain_w, rtol=1e-6)
    for bad in (np.ones((3, 3)), -np.ones((4, 4)), np.full((4, 4), np.nan)):
        with pytest.raises(ValueError, match="weights"):
            stitch_patches(patches, pos, (5, 5), weights=bad)


def test_illumination_is_each_patterns_probe_intensity_at_its_offset():
    n = 16
    probe = np.zeros((n, n), np.complex64)
    probe[6:10, 7:9] = 2.0 + 1.0j  # |P|^2 = 5 on a 4 x 2 block
    gs1 = illumination(probe, np.zeros((3, 1, 2, 1)))
    assert gs1.shape == (3, n, n)
    np.testing.assert_allclose(gs1[1], np.abs(probe) ** 2)
    offsets = np.array([[[-2.0, 2.0], [3.0, -1.0]]])  # (B=1, 2, C=2): rows, then cols
    lit = illumination(probe, offsets[:, None])
    expected = np.zeros((n, n))
    expected[4:8, 10:12] += 5.0  # the first pattern: 2 up, 3 right
    expected[8:12, 6:8] += 5.0  # the second: 2 down, 1 left
    np.testing.assert_allclose(lit[0], expected)
    half = illumination(probe, np.array([[[[0.5]], [[0.0]]]]).reshape(1, 1, 2, 1))
    assert half[0].sum() == pytest.approx(np.sum(np.abs(probe) ** 2))  # inside: kept
    np.testing.assert_allclose(half[0, 6, 7:9], 2.5)  # the first row half lit
    for shift in (40.0, -40.0, 20.5, -20.5):  # moved off the patch: zero, nothing wraps
        assert not illumination(probe, np.full((1, 1, 2, 1), shift)).any(), shift
    edge = np.zeros((n, n))
    edge[0, :] = 1.0  # lit along the first row only
    down = illumination(edge, np.array([4.5, 0.0]).reshape(1, 1, 2, 1))[0]
    assert not down[:4].any()  # rows that read above the patch: zero, not the first row
    np.testing.assert_allclose(down[4:6], 0.5)  # row 0 half-way between rows 4 and 5
    assert not down[6:].any()
    with pytest.raises(ValueError, match="offsets"):
        illumination(probe, np.zeros((3, 2)))


def test_stitch_accepts_model_shapes():
    obj = complex_object((40, 40))
    pos = grid_positions(10, 30, 5)
    patches = cut_patches(obj, pos, 16)
    ref_obj, ref_w = stitch_patches(patches, pos, obj.shape)
    obj4, w4 = stitch_patches(patches[..., None], pos[:, None, :, None], obj.shape)
    np.testing.assert_array_equal(obj4, ref_obj)
    np.testing.assert_array_equal(w4, ref_w)


def test_stitch_bilinear_subpixel_reproduces_a_ramp():
    # Samples of a linear ramp at sub-pixel positions, splatted bilinearly, give back the ramp on
    # the pixels inside each window (the tent-weighted average of a linear function is exact).
    # The windows do not overlap: an edge pixel reached by two windows can sum to weight 1 from
    # two one-sided (biased) contributions.
    n = 8
    pos = np.array([[6.3, 6.6], [16.75, 15.2]])
    ii = np.arange(n)
    patches = []
    for pr, pc in pos:
        rows = pr - n // 2 + ii
        cols = pc - n // 2 + ii
        patches.append(0.5 * rows[:, None] - 0.25 * cols[None, :] + 1j * cols[None, :])
    patches = np.array(patches)
    obj, weight = stitch_patches(patches, pos, (24, 24), crop=n)
    r, c = np.mgrid[:24, :24]
    ramp = 0.5 * r - 0.25 * c + 1j * c
    full = weight >= 1 - 1e-4
    assert full.sum() > 40
    np.testing.assert_allclose(obj[full], ramp[full], atol=1e-4)
    # Nearest rounding instead: weights are integer counts (halves round up).
    _, w_near = stitch_patches(np.ones((1, 4, 4)), [[2.5, 1.49]], (6, 6), method="nearest")
    assert np.array_equal(np.argwhere(w_near == 1).min(axis=0), [2, 0])
    assert w_near.sum() == 4


@pytest.mark.parametrize(
    "patches_shape, positions_shape, kwargs",
    [
        ((5, 8, 8), (4, 2), {}),  # B mismatch
        ((5, 8, 7), (5, 2), {}),  # non-square patches
        ((5, 8, 8, 2), (5, 1, 2, 2), {}),  # C = 2 not supported here
        ((5, 8, 8), (5, 3), {}),
        ((5, 8, 8), (5, 2), {"crop": 9}),
        ((5, 8, 8), (5, 2), {"crop": 0}),
    ],
)
def test_stitch_rejects_bad_inputs(patches_shape, positions_shape, kwargs):
    with pytest.raises(ValueError):
        stitch_patches(np.ones(patches_shape), np.ones(positions_shape), (20, 20), **kwargs)


def test_stitch_error_names_expected_and_actual_shapes():
    with pytest.raises(ValueError, match=r"\(5, 2\).*got \(4, 2\)"):
        stitch_patches(np.ones((5, 8, 8)), np.ones((4, 2)), (20, 20))


# --------------------------------------------------------------------------------------------
# Covered region
# --------------------------------------------------------------------------------------------
def test_covered_region_is_largest_fully_covered_rectangle():
    w = np.zeros((8, 10))
    w[1:7, 2:5] = 1  # 6 x 3 = 18
    w[3:6, 2:9] = 2  # 3 x 7 = 21, the largest
    w[0, 0] = 5
    region = covered_region(w)
    assert region == (slice(3, 6), slice(2, 9))
    assert covered_region(w, min_weight=2) == (slice(3, 6), slice(2, 9))
    w[4, 5] = 0  # a hole splits the wide box: now 6 x 3 wins
    assert covered_region(w) == (slice(1, 7), slice(2, 5))


def test_covered_region_raises_when_nothing_is_covered():
    with pytest.raises(ValueError, match="nothing is covered"):
        covered_region(np.full((4, 4), 0.5))
    with pytest.raises(ValueError):
        covered_region(np.ones(5))


# --------------------------------------------------------------------------------------------
# Global phase
# --------------------------------------------------------------------------------------------
def test_remove_global_phase_recovers_reference():
    ref = complex_object((32, 32))
    est = ref * np.exp(1j * 0.7)
    np.testing.assert_allclose(remove_global_phase(est, ref), ref, rtol=1e-5, atol=1e-6)
    # For any est, the result is the best constant-phase fit: its inner product with ref is
    # real and positive.
    noisy = est + 0.3 * (np.random.default_rng(1).standard_normal((32, 32, 2)) @ [1, 1j])
    inner = np.sum(remove_global_phase(noisy, ref) * np.conj(ref))
    assert inner.real > 0 and abs(inner.imag) < 1e-4 * abs(inner)
    with pytest.raises(ValueError):
        remove_global_phase(est[:, :5], ref)


def test_global_phase_offset_does_not_change_metrics():
    ref = complex_object()
    perfect = evaluate(ref, ref)
    shifted = evaluate(ref * np.exp(1j * 2.5), ref)
    assert shifted["phase_mae"] < 1e-6
    assert shifted["phase_ssim"] > 0.999999
    assert shifted["amp_ssim"] > 0.999999
    for key in METRIC_KEYS:
        assert shifted[key] == pytest.approx(perfect[key], rel=1e-5, abs=1e-6), key


def test_phase_wrap_is_not_an_error():
    # The reference phase straddles +-pi, so angle() wraps inside it; a slightly perturbed est
    # wraps at other pixels. Those 2 pi jumps must not count as errors.
    amp = 0.5 + 0.5 * smooth_field((32, 32), 2.0, 5)
    ref_phase = math.pi + 0.6 * (smooth_field((32, 32), 2.0, 6) - 0.5)
    delta = 0.1 * (smooth_field((32, 32), 2.0, 7) - 0.5)
    ref = amp * np.exp(1j * ref_phase)
    est = amp * np.exp(1j * (ref_phase + delta))
    m = evaluate(est, ref)
    aligned = remove_global_phase(est, ref)
    wrapped_jumps = np.abs(np.angle(aligned) - np.angle(ref)) > math.pi
    assert wrapped_jumps.sum() > 10  # the naive difference really does jump by 2 pi
    assert m["phase_mae"] < 0.06
    assert m["phase_ssim"] > 0.8


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def test_perfect_reconstruction_metrics():
    ref = smooth_field((64, 64), 2.0, 0)
    m = image_metrics(ref, ref)
    assert m == {"mae": 0.0, "mse": 0.0, "psnr": PSNR_CAP_DB, "ssim": 1.0, "frc50": 0.5}
    assert PSNR_CAP_DB == 100.0  # documented convention: capped, never inf
    obj = complex_object()
    full = evaluate(obj, obj)
    assert tuple(full) == METRIC_KEYS
    assert all(type(v) is float for v in full.values())
    json.loads(json.dumps(full, allow_nan=False))
    for part in ("amp", "phase"):
        assert full[f"{part}_mae"] == pytest.approx(0, abs=1e-7)
        assert full[f"{part}_psnr"] == PSNR_CAP_DB
        assert full[f"{part}_ssim"] == pytest.approx(1.0, abs=1e-9)
        assert full[f"{part}_frc50"] == 0.5
    # Odd sizes: identical images still give 0.5 (never drops below 0.5).
    assert frc50(ref[:63, :61], ref[:63, :61]) == 0.5


def test_psnr_is_finite_and_below_cap_for_imperfect_images():
    ref = smooth_field((32, 32), 2.0, 0)
    m = image_metrics(ref + 0.01, ref)
    assert m["psnr"] == pytest.approx(40.0, abs=1e-9)  # 10 log10(1 / 1e-4), data range 1
    assert m["mse"] == pytest.approx(1e-4)
    assert m["mae"] == pytest.approx(0.01)


def test_noise_degrades_metrics_monotonically():
    ref = smooth_field((64, 64), 2.0, 0)
    noise = np.random.default_rng(10).standard_normal(ref.shape)
    results = [image_metrics(ref + s * noise, ref) for s in (0.02, 0.08, 0.3)]
    for key in ("psnr", "ssim", "frc50"):
        values = [r[key] for r in results]
        assert values[0] > values[1] > values[2], (key, values)
    for key in ("mae", "mse"):
        values = [r[key] for r in results]
        assert values[0] < values[1] < values[2], (key, values)


def test_noise_degrades_complex_metrics():
    ref = complex_object()
    rng = np.random.default_rng(11)
    noise = rng.standard_normal(ref.shape) + 1j * rng.standard_normal(ref.shape)
    low, high = (evaluate(ref + s * noise, ref) for s in (0.02, 0.2))
    for part in ("amp", "phase"):
        assert low[f"{part}_psnr"] > high[f"{part}_psnr"]
        assert low[f"{part}_ssim"] > high[f"{part}_ssim"]
        assert low[f"{part}_frc50"] > high[f"{part}_frc50"]
        assert low[f"{part}_mae"] < high[f"{part}_mae"]


def test_frc_heavier_blur_crosses_half_at_lower_frequency():
    # FRC is invariant to per-ring gains, so a noiseless blur would correlate perfectly; the
    # same small noise floor is added to both copies, and heavier blur leaves less signal above it.
    img = smooth_field((64, 64), 0.7, 2)
    floor = 0.03 * np.random.default_rng(12).standard_normal(img.shape)
    light = gaussian_filter(img, 0.6, mode="wrap") + floor
    heavy = gaussian_filter(img, 2.5, mode="wrap") + floor
    freqs, curve = frc(img, light)
    assert freqs.shape == curve.shape == (33,)
    assert freqs[0] == 0 and freqs[-1] == 0.5
    assert np.all(np.abs(curve) <= 1)
    f_light, f_heavy = frc50(img, light), frc50(img, heavy)
    assert 0 < f_heavy < f_light < 0.5, (f_heavy, f_light)


def test_frc_of_identical_and_independent_images():
    a = np.random.default_rng(0).standard_normal((32, 32))
    b = np.random.default_rng(1).standard_normal((32, 32))
    _, same = frc(a, a)
    np.testing.assert_allclose(same, 1.0)
    assert frc50(a, b) < 0.1  # independent noise: correlation ~ 0 beyond DC


def test_frc50_ignores_dc_sign_and_handles_empty_rings():
    f = smooth_field((32, 32), 1.0, 8)
    a = f - f.mean() + 0.01  # means of opposite sign: DC correlation is -1
    b = a - 0.02
    _, curve = frc(a, b)
    assert curve[0] == pytest.approx(-1.0)
    np.testing.assert_allclose(curve[1:], 1.0)
    assert frc50(a, b) == 0.5
    const = np.full((32, 32), 0.3)
    assert frc50(const, const) == 0.5  # no power in either image: counts as agreement
    assert frc50(const, f) < 1 / 32  # no power in one image: correlation 0 from ring 1


def test_constant_amplitude_guess_scores_below_noisy_reconstruction():
    ref = complex_object()
    phase = np.angle(ref)
    flat = np.full(ref.shape, np.abs(ref).mean()) * np.exp(1j * phase)
    noise = 0.05 * np.random.default_rng(13).standard_normal(ref.shape)
    noisy = (np.abs(ref) + noise) * np.exp(1j * phase)
    m_flat, m_noisy = evaluate(flat, ref), evaluate(noisy, ref)
    assert m_flat["amp_ssim"] < m_noisy["amp_ssim"] - 0.2, (m_flat, m_noisy)


def test_constant_reference_uses_fallback_data_range():
    ref = np.ones((16, 16))
    m = image_metrics(ref + 0.1, ref)  # data range falls back to max|ref| = 1
    assert m["psnr"] == pytest.approx(20.0)
    assert image_metrics(ref, ref)["psnr"] == PSNR_CAP_DB
    zero = np.zeros((16, 16))
    assert image_metrics(zero + 0.1, zero)["psnr"] == pytest.approx(20.0)  # falls back to 1
    # Pure-phase object: constant amplitude still gives finite, JSON-safe metrics.
    ref_c = np.exp(1j * smooth_field((16, 16), 1.5, 3))
    m_c = evaluate(ref_c * 1.05, ref_c)
    json.dumps(m_c, allow_nan=False)
    assert m_c["amp_psnr"] == pytest.approx(20 * math.log10(1 / 0.05))


def test_shape_mismatch_raises():
    a = np.ones((8, 8), dtype=complex)
    b = np.ones((8, 9), dtype=complex)
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(8, 9\)"):
        evaluate(a, b)
    with pytest.raises(ValueError, match=r"\(8, 8\).*\(8, 9\)"):
        image_metrics(a.real, b.real)
    with pytest.raises(ValueError):
        frc(a.real, b.real)
    with pytest.raises(ValueError):
        evaluate(np.ones((2, 8, 8)), np.ones((2, 8, 8)))
    with pytest.raises(ValueError):
        image_metrics(np.ones((2, 8)), np.ones((2, 8)))  # too small for SSIM


def test_evaluate_region_and_nonfinite_inputs():
    ref = complex_object((32, 32))
    est = ref.copy()
    est[:4] = 0  # wrong only outside the region
    region = (slice(8, 30), slice(2, 28))
    m = evaluate(est, ref, region=region)
    assert m["amp_mae"] == 0 and m["amp_psnr"] == PSNR_CAP_DB
    assert evaluate(est, ref)["amp_mae"] > 0
    est[10, 10] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(est, ref, region=region)
    with pytest.raises(ValueError):
        evaluate(ref, ref, region=(slice(0, 2), slice(0, 10)))
    with pytest.raises(ValueError):
        evaluate(ref, ref, region=[slice(0, 5), slice(0, 5)])


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------
def test_evaluate_reconstruction_perfect_patches():
    ref = complex_object((64, 64))
    n = 16
    pos = grid_positions(8, 56, 4)
    patches = cut_patches(ref, pos, n)
    # Like the model: only the central N/2 x N/2 window is meaningful, the rest is zero.
    padded = np.zeros_like(patches)
    padded[:, 4:12, 4:12] = patches[:, 4:12, 4:12]
    padded = padded * np.exp(1j * 0.4)  # global phase offset
    metrics, obj, region = evaluate_reconstruction(padded[..., None], pos[:, None, :, None], ref)
    # Default window N//4 = 4: position p covers p-2 .. p+1, so 8..56 cover 6..57.
    assert region == (slice(6, 58), slice(6, 58))
    assert obj.shape == ref.shape and obj.dtype == np.complex64
    assert tuple(metrics) == METRIC_KEYS
    assert metrics["amp_psnr"] == pytest.approx(PSNR_CAP_DB, abs=1e-6)
    assert metrics["phase_mae"] < 1e-5
    assert metrics["amp_ssim"] > 0.99999 and metrics["amp_frc50"] == 0.5
    # A degraded reconstruction scores worse.
    noise = 0.2 * np.random.default_rng(14).standard_normal(padded.shape)
    worse, _, _ = evaluate_reconstruction(padded + noise, pos, ref)
    assert worse["amp_ssim"] < metrics["amp_ssim"] - 0.05


def test_evaluate_reconstruction_raises_when_nothing_is_covered():
    ref = complex_object((32, 32))
    patches = np.ones((2, 8, 8), dtype=np.complex64)
    with pytest.raises(ValueError, match="nothing is covered"):
        evaluate_reconstruction(patches, [[-50.0, -50.0], [100.0, 100.0]], ref)
    with pytest.raises(ValueError):
        evaluate_reconstruction(patches, [[5.0, 5.0], [6.0, 6.0]], ref[None])


def test_default_reconstruction_crop_ignores_the_unilluminated_corners():
    """The model's patch corners outside the probe disc are unconstrained by the data; the
    default stitching window (N//4) must not let them into the score."""
    from ptycho.stitching import illuminated_crop

    rng = np.random.default_rng(3)
    N, H = 16, 48
    obj = (0.5 + 0.5 * rng.random((H, H))) * np.exp(1j * rng.uniform(-1, 1, (H, H)))
    centres = np.array([(r, c) for r in range(12, 37, 4) for c in range(12, 37, 4)], float)
    patches = np.stack([obj[r - N // 2:r + N // 2, c - N // 2:c + N // 2]
                        for r, c in centres.astype(int)])
    q = N // 2 - illuminated_crop(N) // 2
    garbage = patches.copy()
    mask = np.ones((N, N), bool)
    mask[q:N - q, q:N - q] = False
    garbage[:, mask] = 0.0  # corners (and everything outside the N//4 window) wrong
    assert illuminated_crop(N) == 4
    metrics, _, _ = evaluate_reconstruction(garbage, centres, obj)
    assert metrics["amp_mae"] < 1e-6 and metrics["amp_ssim"] > 0.999
    worse, _, _ = evaluate_reconstruction(garbage, centres, obj, crop=N // 2)
    assert worse["amp_mae"] > 0.1


def test_stitching_keeps_its_old_home():
    """Stitching moved to ptycho.stitching; ptycho.evaluation still exports it (legacy API)."""
    import ptycho.evaluation
    import ptycho.stitching

    for name in ptycho.stitching.__all__:
        assert getattr(ptycho.evaluation, name) is getattr(ptycho.stitching, name)
        assert name in ptycho.evaluation.__all__
