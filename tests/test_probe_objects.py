"""The default probe, its mask and the synthetic objects (numpy only, except one TF check)."""

import math

import numpy as np
import pytest

from ptycho import params
from ptycho.config import ConfigError, ModelConfig
from ptycho.objects import OBJECT_KINDS, grf_object, lines_object, make_object
from ptycho.probe import get_default_probe, get_probe_mask, probe_for, rotate_180


def _disc(N):
    i = np.arange(N) - N // 2
    return np.hypot(i[:, None], i[None, :]) < N / 4


# ------------------------------------------------------------------------------------- probe
@pytest.mark.parametrize("N", [16, 32, 64])
def test_probe_mask_is_centred_disc_of_radius_N_over_4(N):
    m = get_probe_mask(N)
    assert m.shape == (N, N) and m.dtype == np.float32
    assert set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_array_equal(m.astype(bool), _disc(N))
    assert m[N // 2, N // 2] == 1 and m[0, 0] == 0
    assert m.sum() == pytest.approx(math.pi * (N / 4) ** 2, rel=0.15)  # pixelated disc
    # The support lies inside the central N/2 window the model predicts (pad_object).
    q = N // 4
    assert m.sum() == m[q:N - q, q:N - q].sum()


@pytest.mark.parametrize("N", [16, 32])
def test_probe_shape_dtype_peak_and_centre(N):
    p = get_default_probe(N, "np", probe_scale=0.7)
    assert isinstance(p, np.ndarray)
    assert p.shape == (N, N) and p.dtype == np.complex64
    assert np.abs(p).max() == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(np.argmax(np.abs(p)), p.shape) == (N // 2, N // 2)


def test_probe_mask_support():
    N = 32
    masked = get_default_probe(N, "np", 0.7, mask=True)
    unmasked = get_default_probe(N, "np", 0.7, mask=False)
    outside = ~_disc(N)
    assert np.all(masked[outside] == 0)
    assert np.abs(unmasked[outside]).max() > 0.05  # the mask really removes something
    # Inside the disc the masked probe is the unmasked one up to the common normalisation.
    inside = _disc(N)
    ratio = masked[inside] / unmasked[inside]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)


def test_default_probe_illuminates_the_support_well():
    """At the default scale the bright core covers a sizeable fraction of the N/2 disc."""
    for N in (32, 64):
        a = np.abs(get_default_probe(N, "np", 0.7))
        frac = (a[_disc(N)] > 0.5).mean()
        assert 0.4 < frac < 0.95


def test_probe_is_complex_with_defocus_phase():
    p = get_default_probe(64, "np", 0.7)
    core = np.abs(p) > 0.3
    phase = np.angle(p[core] / p[32, 32])
    assert np.ptp(phase) > 0.1  # a mild curvature, not a flat real probe
    assert np.ptp(phase) < np.pi


def test_probe_wider_with_larger_scale():
    for mask in (False, True):
        areas = [(np.abs(get_default_probe(64, "np", s, mask=mask)) > 0.5).sum()
                 for s in (0.3, 0.5, 0.7)]
        assert areas[0] < areas[1] < areas[2], (mask, areas)


def test_probe_scale_none_reads_legacy_cfg(monkeypatch):
    monkeypatch.setitem(params.cfg, "default_probe_scale", 0.45)
    np.testing.assert_array_equal(get_default_probe(32, "np"),
                                  get_default_probe(32, "np", probe_scale=0.45))
    assert not np.array_equal(get_default_probe(32, "np"),
                              get_default_probe(32, "np", probe_scale=0.7))


@pytest.mark.parametrize("N", [8, 15, 24, 48, 512, 64.0, True, "64"])
def test_probe_bad_N_raises(N):
    with pytest.raises(ValueError, match="N must be"):
        get_default_probe(N, "np")
    with pytest.raises(ValueError, match="N must be"):
        get_probe_mask(N)


def test_probe_bad_fmt_and_scale_raise():
    with pytest.raises(ValueError, match="fmt"):
        get_default_probe(32, "torch")
    for bad in (0, -1.0, float("nan"), float("inf"), "0.7"):
        with pytest.raises(ValueError, match="probe_scale"):
            get_default_probe(32, "np", probe_scale=bad)


def test_rotate_180_maps_r_to_minus_r_about_the_probe_centre():
    a = np.arange(2 * 8 * 8, dtype=float).reshape(2, 8, 8)
    r = rotate_180(a)
    assert r[0, 4, 4] == a[0, 4, 4] and r[1, 5, 2] == a[1, 3, 6]  # (1, -2) -> (-1, 2)
    assert r[0, 0, 0] == a[0, 0, 0]  # -(-4) = 4 = -4 mod 8
    np.testing.assert_array_equal(rotate_180(r), a)


def _modulus_asymmetry(p):
    """Relative difference between |P(r)| and |P(-r)|, r measured from (N // 2, N // 2) (on an
    even grid, index j maps to (-j) mod N)."""
    a = np.abs(p)
    return float(np.linalg.norm(a - rotate_180(a)) / np.linalg.norm(a))


@pytest.mark.parametrize("N", [32, 64])
def test_default_probe_modulus_is_centro_symmetric(N):
    """Without coma |P(r)| = |P(-r)|: the twin object conj(O(-r)) * conj(P(-r)) / P(r) has the
    object's modulus, so one pattern cannot tell it from the object (gridsize 1's ambiguity)."""
    assert _modulus_asymmetry(get_default_probe(N, "np")) < 1e-5


@pytest.mark.parametrize("N", [32, 64])
def test_coma_makes_the_probe_asymmetric_and_keeps_it_centred(N):
    p = get_default_probe(N, "np", coma=1.0)
    assert _modulus_asymmetry(p) > 0.2
    assert np.abs(p).max() == pytest.approx(1.0)
    i = np.abs(p) ** 2
    idx = np.arange(N)
    centroid = ((i.sum(1) * idx).sum() / i.sum(), (i.sum(0) * idx).sum() / i.sum())
    assert np.allclose(centroid, N // 2, atol=N / 16)
    # the twin's modulus is no longer the object's: |conj(P(-r)) / P(r)| departs from 1
    lit = np.abs(p) > 0.3
    flipped = rotate_180(p)
    assert np.abs(np.abs(flipped[lit]) / np.abs(p[lit]) - 1).max() > 0.3


def test_probe_for_follows_the_model_config():
    cfg = ModelConfig(N=32, probe_scale=0.6, probe_mask=False, probe_coma=0.8)
    want = get_default_probe(32, "np", 0.6, mask=False, coma=0.8)
    np.testing.assert_array_equal(probe_for(cfg), want)
    assert not np.array_equal(probe_for(ModelConfig(N=32)), probe_for(cfg))


def test_bad_coma_raises():
    with pytest.raises(ValueError, match="coma"):
        get_default_probe(32, "np", coma=float("nan"))
    with pytest.raises(ConfigError, match="probe_coma"):
        ModelConfig(probe_coma=float("inf"))


def test_probe_defocus_follows_the_config_and_keeps_default_ids():
    assert "probe_defocus" not in ModelConfig().identity_dict()
    np.testing.assert_array_equal(probe_for(ModelConfig(N=32, probe_defocus=math.pi / 2)),
                                  probe_for(ModelConfig(N=32)))
    cfg = ModelConfig(N=32, probe_scale=0.2, probe_defocus=6.0)
    np.testing.assert_array_equal(probe_for(cfg),
                                  get_default_probe(32, "np", 0.2, defocus=6.0))
    assert ModelConfig(probe_defocus=6.0).identity_dict()["probe_defocus"] == 6.0


def test_bad_defocus_raises():
    with pytest.raises(ValueError, match="defocus"):
        get_default_probe(32, "np", defocus=float("inf"))
    with pytest.raises(ConfigError, match="probe_defocus"):
        ModelConfig(probe_defocus=float("nan"))


def _bright_field_and_width(p):
    """Detector pixels holding more than 1 % of the unscattered beam's peak intensity, and the
    real-space rms radius of ``|p|**2`` in pixels."""
    n = p.shape[0]
    far = np.abs(np.fft.fft2(p)) ** 2
    k = np.arange(n) - n // 2
    r2 = k[:, None] ** 2 + k[None, :] ** 2
    intensity = np.abs(p) ** 2
    return int((far > 0.01 * far.max()).sum()), math.sqrt((intensity * r2).sum() / intensity.sum())


def test_a_wide_defocused_aperture_widens_the_bright_field_not_the_probe():
    """The reason for ``probe_defocus`` (ptycho.probe): an aperture five times wider
    (``probe_scale`` 0.1) with one wave of defocus at its edge (2 pi) lights more than ten times
    as many detector pixels as the default probe and is about as wide in real space; the same
    aperture in focus gives a probe less than half as wide."""
    for n in (32, 64):
        bf0, w0 = _bright_field_and_width(get_default_probe(n, "np"))
        bf, w = _bright_field_and_width(get_default_probe(n, "np", 0.1, defocus=2 * math.pi))
        _, w_focused = _bright_field_and_width(get_default_probe(n, "np", 0.1))
        assert bf >= 10 * bf0
        assert 0.85 * w0 <= w <= 1.15 * w0
        assert w_focused < 0.5 * w0


def test_probe_tf_matches_np():
    tf = pytest.importorskip("tensorflow")
    t = get_default_probe(32, "tf", probe_scale=0.6)
    assert isinstance(t, tf.Tensor) and t.dtype == tf.complex64
    np.testing.assert_array_equal(t.numpy(), get_default_probe(32, "np", probe_scale=0.6))


# ----------------------------------------------------------------------------------- objects
@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_object_shape_dtype_ranges(kind):
    o = make_object(kind, 96, 3)
    assert o.shape == (96, 96) and o.dtype == np.complex64
    amp, ph = np.abs(o), np.angle(o)
    assert amp.min() >= 0.5 - 1e-5 and amp.max() <= 1.0 + 1e-5
    assert ph.min() >= -math.pi / 2 - 1e-5 and ph.max() <= math.pi / 2 + 1e-5
    # The ranges are actually used: real structure in both amplitude and phase.
    assert np.ptp(amp) > 0.3 and np.ptp(ph) > 1.5
    assert amp.std() > 0.03 and ph.std() > 0.1


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_object_deterministic_per_seed(kind):
    a = make_object(kind, 64, 7)
    np.testing.assert_array_equal(a, make_object(kind, 64, 7))
    b = make_object(kind, 64, 8)
    assert np.abs(a - b).mean() > 0.05


def test_make_object_dispatches_to_kind():
    np.testing.assert_array_equal(make_object("lines", 48, 1), lines_object(48, 1))
    np.testing.assert_array_equal(make_object("grf", 48, 1), grf_object(48, 1))


def test_lines_object_is_sparse_lines_on_background():
    o = lines_object(128, 0)
    amp = np.abs(o)
    on_lines = (amp > 0.7).mean()
    assert 0.03 < on_lines < 0.6  # thin lines, not a full or empty canvas
    assert np.median(amp) < 0.6  # background near 0.5


def test_grf_amplitude_and_phase_independent():
    o = grf_object(128, 0)
    c = np.corrcoef(np.abs(o).ravel(), np.angle(o).ravel())[0, 1]
    assert abs(c) < 0.2


def test_make_object_bad_kind_and_args():
    with pytest.raises(ValueError, match="'lines'.*'grf'"):
        make_object("blobs", 64, 0)
    with pytest.raises(ValueError, match="size"):
        make_object("lines", 4, 0)
    with pytest.raises(ValueError, match="seed"):
        make_object("grf", 64, -1)


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_max_phase_sets_the_phase_range(kind):
    obj = make_object(kind, 64, 2, max_phase=0.3)
    phase = np.angle(obj)
    assert phase.min() >= -0.3 - 1e-6 and phase.max() <= 0.3 + 1e-6
    assert np.ptp(phase) > 0.3  # the range is used, not just bounded
    np.testing.assert_allclose(np.abs(obj), np.abs(make_object(kind, 64, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="max_phase"):
        make_object(kind, 64, 2, max_phase=4.0)


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_amp_contrast_narrows_the_amplitude_span_only(kind):
    full, weak = make_object(kind, 64, 2), make_object(kind, 64, 2, amp_contrast=0.1)
    a_full, a_weak = np.abs(full), np.abs(weak)
    assert a_weak.min() >= 0.5 - 1e-6 and a_weak.max() <= 0.55 + 1e-6
    # The same pattern, a tenth of the excursion above the 0.5 background; phase untouched.
    np.testing.assert_allclose(a_weak - 0.5, 0.1 * (a_full - 0.5), atol=1e-6)
    np.testing.assert_allclose(np.angle(weak), np.angle(full), atol=1e-6)
    for bad in (0, -0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="amp_contrast"):
            make_object(kind, 64, 2, amp_contrast=bad)


def _mean_frequency(image: np.ndarray) -> float:
    """Power-weighted mean spatial frequency (cycles per pixel) of a real image's fluctuations."""
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    k = np.fft.fftfreq(image.shape[0])
    radius = np.hypot(k[:, None], k[None, :])
    return float((power * radius).sum() / power.sum())


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_feature_scale_stretches_the_features(kind):
    base = [_mean_frequency(np.abs(make_object(kind, 256, s))) for s in range(3)]
    wide = [_mean_frequency(np.abs(make_object(kind, 256, s, feature_scale=2.0)))
            for s in range(3)]
    ratio = np.mean(base) / np.mean(wide)
    assert 1.5 < ratio < 2.5, ratio  # features twice as wide: about half the frequencies
    np.testing.assert_array_equal(make_object(kind, 64, 1, feature_scale=1.0),
                                  make_object(kind, 64, 1))
    with pytest.raises(ValueError, match="feature_scale"):
        make_object(kind, 64, 1, feature_scale=0.0)
