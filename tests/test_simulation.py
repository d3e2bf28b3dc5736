"""Physics and bookkeeping of the numpy simulator (small N, fast)."""

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ptycho.config import ConfigError, ModelConfig, SimulationConfig
from ptycho.objects import make_object
from ptycho.probe import get_default_probe
from ptycho.scan import (
    grid_positions,
    group_neighbors,
    group_positions,
    random_positions,
    scan_range,
)
from ptycho.simulation import (
    DiffractionData,
    diffract,
    extract_patches,
    simulate,
    simulate_unit,
)


def _rand_complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture(scope="module")
def scene():
    """A 64x64 lines object, the N=16 default probe and 2048 random single positions."""
    rng = np.random.default_rng(123)
    obj = make_object("lines", 64, 0)
    probe = get_default_probe(16, "np")
    pos = random_positions(2048, 64, 16, 2, rng)[:, None, :]  # (B, 1, 2)
    return obj, probe, pos


# ------------------------------------------------------------------------------ forward model
def test_diffract_parseval_and_shift():
    rng = np.random.default_rng(0)
    psi = _rand_complex(rng, (3, 2, 16, 16))
    amp = diffract(psi)
    assert amp.shape == psi.shape and amp.dtype == np.float32
    np.testing.assert_allclose((amp.astype(np.float64) ** 2).sum(axis=(-2, -1)),
                               (np.abs(psi.astype(np.complex128)) ** 2).sum(axis=(-2, -1)),
                               rtol=1e-5)
    ref = np.abs(np.fft.fftshift(np.fft.fft2(psi.astype(np.complex128), norm="ortho"),
                                 axes=(-2, -1)))
    np.testing.assert_allclose(amp, ref, rtol=1e-4, atol=1e-5)
    # A flat exit wave puts all its energy at the centre pixel (N//2, N//2).
    flat = diffract(np.ones((16, 16), np.complex64))
    assert flat[8, 8] == pytest.approx(16.0, rel=1e-6)
    assert (flat**2).sum() - flat[8, 8] ** 2 < 1e-6


def test_diffract_rejects_1d():
    with pytest.raises(ValueError, match="N, N"):
        diffract(np.ones(16, np.complex64))


def test_extract_integer_positions_equal_slices():
    rng = np.random.default_rng(1)
    obj = _rand_complex(rng, (40, 50))
    N = 8
    pos = np.array([[20, 17], [4, 4], [32, 46]], dtype=float)  # the last two touch the edges
    got = extract_patches(obj, pos, N)
    assert got.shape == (3, N, N) and got.dtype == np.complex64
    for p, patch in zip(pos.astype(int), got, strict=True):
        np.testing.assert_array_equal(patch, obj[p[0] - 4:p[0] + 4, p[1] - 4:p[1] + 4])


def test_extract_subpixel_is_bilinear():
    rng = np.random.default_rng(2)
    obj = _rand_complex(rng, (40, 40))
    got = extract_patches(obj, [[20.5, 17.0], [20.0, 17.5], [20.25, 17.75]], 8)
    np.testing.assert_allclose(got[0], (obj[16:24, 13:21] + obj[17:25, 13:21]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[1], (obj[16:24, 13:21] + obj[16:24, 14:22]) / 2, atol=1e-6)
    expect = (0.75 * 0.25 * obj[16:24, 13:21] + 0.75 * 0.75 * obj[16:24, 14:22]
              + 0.25 * 0.25 * obj[17:25, 13:21] + 0.25 * 0.75 * obj[17:25, 14:22])
    np.testing.assert_allclose(got[2], expect, atol=1e-6)


def test_extract_zero_outside_object():
    obj = np.ones((20, 20), np.complex64)
    got = extract_patches(obj, [[2.0, 10.0], [-50.0, 10.0], [10.0, 300.0]], 8)
    # Position row 2: patch rows 2-4 .. 2+3 -> object rows -2..5; the first 2 rows are outside.
    np.testing.assert_array_equal(got[0][:2], 0)
    np.testing.assert_array_equal(got[0][2:], 1)
    np.testing.assert_array_equal(got[1:], 0)


def test_extract_bad_shapes():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        extract_patches(np.ones((8, 8)), np.zeros((3, 3)), 4)
    with pytest.raises(ValueError, match="2-D"):
        extract_patches(np.ones((2, 8, 8)), np.zeros((3, 2)), 4)


# -------------------------------------------------------------------------------- photon counts
@pytest.mark.parametrize("nphotons", [1e4, 1e9, 1e13])
def test_mean_total_counts_equal_nphotons(scene, nphotons):
    obj, probe, pos = scene
    d = simulate(obj, probe, pos, nphotons, np.random.default_rng(0))
    counts = d.X.astype(np.float64) ** 2
    assert np.all(np.isfinite(d.X))
    assert counts.sum(axis=(1, 2, 3)).mean() == pytest.approx(nphotons, rel=0.01)
    # The noiseless model: s * |F| with the reported scale has mean total exactly nphotons.
    noiseless = d.intensity_scale * diffract(d.patches[..., 0] * probe)
    assert (noiseless.astype(np.float64) ** 2).sum(axis=(1, 2)).mean() == pytest.approx(
        nphotons, rel=1e-5)


def test_counts_are_integers(scene):
    obj, probe, pos = scene
    d = simulate(obj, probe, pos[:256], 1e4, np.random.default_rng(0))
    c = d.X.astype(np.float64) ** 2
    np.testing.assert_allclose(c, np.rint(c), rtol=1e-6, atol=1e-3)
    assert (c == 0).mean() > 0.05  # low dose: many empty pixels, as Poisson predicts


def test_noise_is_poisson():
    """Identical patterns repeated: per-pixel variance equals mean; mean equals s^2 |F|^2."""
    obj = make_object("grf", 32, 0)
    probe = get_default_probe(16, "np")
    pos = np.full((2000, 1, 2), 16.0)
    d = simulate(obj, probe, pos, 2e3, np.random.default_rng(4))
    c = d.X[..., 0].astype(np.float64) ** 2  # (2000, 16, 16)
    lam = (d.intensity_scale * diffract(d.patches[0, ..., 0] * probe)).astype(np.float64) ** 2
    assert lam.sum() == pytest.approx(2e3, rel=1e-5)
    sel = lam > 2
    assert sel.sum() >= 10
    np.testing.assert_allclose(c.mean(axis=0)[sel], lam[sel], rtol=0.1)
    dispersion = c.var(axis=0, ddof=1)[sel] / c.mean(axis=0)[sel]
    assert dispersion.mean() == pytest.approx(1.0, abs=0.05)


def test_simulate_matches_forward_model_at_high_dose(scene):
    """Pattern placement: X ~ s |fftshift(fft2(P * patch))| (amplitude noise std ~ 0.5)."""
    obj, probe, pos = scene
    d = simulate(obj, probe, pos[:512], 1e12, np.random.default_rng(0))
    ref = d.intensity_scale * diffract(d.patches[..., 0] * probe)
    assert np.abs(d.X[..., 0] - ref).max() < 4.0
    assert ref.max() > 1e4


def test_simulate_odd_N_uses_plain_shift():
    rng = np.random.default_rng(0)
    obj = make_object("grf", 40, 0)
    probe = _rand_complex(rng, (15, 15))
    d = simulate(obj, probe, random_positions(64, 40, 15, 0, rng)[:, None], 1e12, rng)
    ref = d.intensity_scale * diffract(d.patches[..., 0] * probe)
    assert np.abs(d.X[..., 0] - ref).max() < 4.0


def test_intensity_scale_given_is_used(scene):
    obj, probe, pos = scene
    d = simulate(obj, probe, pos[:64], 1e6, np.random.default_rng(0), intensity_scale=3.0)
    assert d.intensity_scale == 3.0
    ref = 3.0 * diffract(d.patches[..., 0] * probe)
    np.testing.assert_allclose((d.X.astype(np.float64) ** 2).sum(),
                               (ref.astype(np.float64) ** 2).sum(), rtol=0.02)
    np.testing.assert_allclose(d.norm_X, d.X / 3.0, rtol=1e-6)


def test_same_seed_same_data_other_seed_other_noise(scene):
    obj, probe, pos = scene
    pos = pos[:300]
    a = simulate(obj, probe, pos, 1e5, np.random.default_rng(5))
    b = simulate(obj, probe, pos, 1e5, np.random.default_rng(5), workers=1)
    c = simulate(obj, probe, pos, 1e5, np.random.default_rng(6))
    np.testing.assert_array_equal(a.X, b.X)  # also independent of the thread count
    np.testing.assert_array_equal(a.patches, c.patches)
    assert a.intensity_scale == c.intensity_scale
    assert (a.X != c.X).mean() > 0.3


def test_simulate_validates_inputs(scene):
    obj, probe, pos = scene
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(B, C, 2\)"):
        simulate(obj, probe, pos[:, 0], 1e4, rng)
    with pytest.raises(ValueError, match="perfect square"):
        simulate(obj, probe, np.zeros((2, 3, 2)) + 30, 1e4, rng)
    with pytest.raises(ValueError, match="probe"):
        simulate(obj, probe[:, :8], pos, 1e4, rng)
    with pytest.raises(ValueError, match="nphotons"):
        simulate(obj, probe, pos, 0.0, rng)


# --------------------------------------------------------------------------------- positions
def test_random_positions_inside_scannable_area():
    rng = np.random.default_rng(0)
    p = random_positions(5000, 64, 16, 3, rng)
    assert p.shape == (5000, 2) and p.dtype == np.float64
    lo, hi = scan_range(64, 16, 3)
    assert (lo, hi) == (11.0, 53.0)
    assert p.min() >= lo and p.max() <= hi
    assert p.min() < lo + 1 and p.max() > hi - 1  # uniform over the whole range
    # Patch plus buffer inside: first row read >= buffer, last row read <= size - 1 - buffer.
    assert (np.floor(p) - 8).min() >= 3 and (np.ceil(p) - 8 + 15).max() <= 64 - 1 - 3
    with pytest.raises(ValueError, match="cannot hold"):
        random_positions(4, 20, 16, 3, rng)


def test_grid_positions_raster():
    g = grid_positions(64, 16, 8, 2)
    lo, hi = scan_range(64, 16, 2)
    axis = np.unique(g[:, 0])
    np.testing.assert_array_equal(np.diff(axis), 8)
    np.testing.assert_array_equal(np.unique(g[:, 1]), axis)
    assert len(g) == len(axis) ** 2 and axis.min() >= lo and axis.max() <= hi
    assert axis.max() + 8 > hi  # no room for one more
    np.testing.assert_array_equal(g[:len(axis), 0], axis[0])  # row-major: rows outer


@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_group_positions_exact_raster(gridsize):
    centres = np.array([[30.0, 40.0], [50.5, 20.25]])
    g = group_positions(centres, gridsize, 4, jitter=0.0)
    C = gridsize**2
    assert g.shape == (2, C, 2)
    np.testing.assert_allclose(g.mean(axis=1), centres)
    grid = g.reshape(2, gridsize, gridsize, 2)
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=1), 4)  # rows step down the raster
    np.testing.assert_allclose(np.diff(grid[..., 1], axis=2), 4)  # cols step along a row
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=2), 0)
    radius = np.linalg.norm(g - g.mean(axis=1, keepdims=True), axis=-1)
    assert radius.max() <= 4 * math.sqrt(2) * (gridsize - 1) / 2 + 1e-9


def test_group_positions_jitter():
    rng = np.random.default_rng(0)
    centres = np.full((2000, 2), 50.0)
    g = group_positions(centres, 2, 4, jitter=0.5, rng=rng)
    resid = g - group_positions(centres, 2, 4)
    assert resid.std() == pytest.approx(0.5, rel=0.05)
    radius = np.linalg.norm(g - g.mean(axis=1, keepdims=True), axis=-1)
    assert radius.max() <= 4 * math.sqrt(2) + 0.5 * 6
    with pytest.raises(ValueError, match="rng"):
        group_positions(centres, 2, 4, jitter=0.5)


def test_group_neighbors_are_true_neighbours():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 100, size=(400, 2))
    k = 7
    groups = group_neighbors(pos, 2, 300, rng, k=k)
    assert groups.shape == (300, 4) and groups.dtype == np.int64
    assert groups.min() >= 0 and groups.max() < 400
    assert all(len(set(g)) == 4 for g in groups)
    dk, _ = cKDTree(pos).query(pos, k=k)
    kth = dk[:, -1]
    for g in groups:
        d = np.linalg.norm(pos[g][:, None] - pos[g][None], axis=-1)
        # Some member (the seed) has every member within its k-th neighbour distance.
        assert np.any(np.all(d <= kth[g][:, None] + 1e-12, axis=1))
    # A random grouping would fail that check.
    rand = rng.integers(0, 400, size=(300, 4))
    ok = [np.any(np.all(np.linalg.norm(pos[g][:, None] - pos[g][None], axis=-1)
                        <= kth[g][:, None], axis=1)) for g in rand]
    assert np.mean(ok) < 0.2


def test_group_neighbors_raster_order_and_gridsize_1():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 60, size=(200, 2))
    groups = group_neighbors(pos, 2, 100, rng)
    p = pos[groups].reshape(100, 2, 2, 2)  # (group, raster row, raster col, (row, col))
    assert np.all(p[:, 0, :, 0].max(axis=1) <= p[:, 1, :, 0].min(axis=1))
    assert np.all(p[:, :, 0, 1] <= p[:, :, 1, 1])
    g1 = group_neighbors(pos, 1, 10, rng)
    assert g1.shape == (10, 1)
    with pytest.raises(ValueError, match="k must"):
        group_neighbors(pos, 2, 10, rng, k=3)


# ----------------------------------------------------------------------------- simulate_unit
def _unit_cfgs(gridsize, **sim):
    model = ModelConfig(N=16, gridsize=gridsize, offset=4)
    base = dict(object_kind="lines", object_size=64, n_train=20, n_test=10, scan="random",
                scan_buffer=2, jitter=0.0, seed=3)
    base.update(sim)
    return model, SimulationConfig(**base)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_simulate_unit_shapes_and_layout(gridsize):
    model, sim = _unit_cfgs(gridsize)
    train, test = simulate_unit(model, 1e5, sim)
    C, N = gridsize**2, 16
    for d, B in ((train, 20), (test, 9)):  # test: floor(sqrt(10))**2 groups
        assert isinstance(d, DiffractionData)
        assert d.X.shape == (B, N, N, C) and d.X.dtype == np.float32
        assert d.coords.shape == (B, 1, 2, C) and d.coords.dtype == np.float32
        assert d.coords_relative.shape == (B, 1, 2, C)
        assert d.patches.shape == (B, N, N, C) and d.patches.dtype == np.complex64
        assert d.probe.shape == (N, N) and d.obj.shape == (64, 64)
        assert (d.B, d.N, d.C, d.gridsize) == (B, N, C, gridsize)
        assert d.nphotons == 1e5
        np.testing.assert_allclose(d.norm_X, d.X / d.intensity_scale, rtol=1e-6)
        # Groups fit the object: every patch inside.
        assert d.coords.min() >= N // 2 and d.coords.max() <= 64 - N // 2
        np.testing.assert_allclose(d.coords_relative,
                                   d.coords - d.coords.mean(axis=3, keepdims=True), atol=1e-5)
        # Patches are the object at coords, in the right channel.
        flat = d.coords[:, 0].transpose(0, 2, 1)  # (B, C, 2)
        np.testing.assert_allclose(extract_patches(d.obj, flat, N).transpose(0, 2, 3, 1),
                                   d.patches, atol=1e-6)
    if gridsize == 2:
        # Row-major raster of spacing offset=4 around the group mean.
        expect = np.array([[-2, -2, 2, 2], [-2, 2, -2, 2]], np.float32)
        np.testing.assert_allclose(train.coords_relative[:, 0], np.broadcast_to(expect,
                                   (20, 2, 4)), atol=1e-5)
    else:
        np.testing.assert_array_equal(train.coords_relative, 0)
    assert test.intensity_scale == train.intensity_scale
    assert not np.allclose(test.obj, train.obj)
    np.testing.assert_array_equal(train.obj, make_object("lines", 64, 3, sim.max_phase))
    # Test centres on a regular grid: 3 distinct rows and columns with a constant step.
    centres = test.coords[:, 0].mean(axis=2)
    for axis in (0, 1):
        u = np.unique(centres[:, axis])
        assert len(u) == 3 and np.ptp(np.diff(u)) < 1e-4


@pytest.mark.parametrize("N, feature_scale, expect", [
    (32, 2.0, 2.0), (32, "auto", 1.0), (64, "auto", 2.0), (16, "auto", 1.0), (64, 1.0, 1.0),
    (16, 0.5, 0.5)])
def test_feature_scale_reaches_the_simulated_objects(N, feature_scale, expect):
    """A number multiplies the object's lengths; "auto" (the default) is max(1, N / 32): the
    same object per probe at every N from 32 up, never finer than 1 px lines below."""
    sim = SimulationConfig(object_size=80, n_train=4, n_test=4, feature_scale=feature_scale)
    assert sim.feature_scale_for(N) == expect
    train, test = simulate_unit(ModelConfig(N=N, gridsize=1), 1e6, sim)
    np.testing.assert_array_equal(train.obj, make_object("lines", 80, 0, sim.max_phase, expect))
    if expect != 1.0:
        assert not np.allclose(train.obj, make_object("lines", 80, 0, sim.max_phase))


@pytest.mark.parametrize("bad", [0, -1.0, 17.0, "big", float("nan"), True])
def test_feature_scale_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="feature_scale"):
        SimulationConfig(feature_scale=bad)
    assert SimulationConfig().feature_scale == "auto"


def test_amp_contrast_reaches_the_simulated_objects_and_keeps_recorded_ids():
    """A weakly scattering sample: both objects use a tenth of the amplitude span; at the
    neutral 1 the option is left out of run ids (studies recorded before it still resume)."""
    sim = SimulationConfig(object_size=80, n_train=4, n_test=4, feature_scale=1.0,
                           amp_contrast=0.1)
    train, test = simulate_unit(ModelConfig(N=32, gridsize=1), 1e6, sim)
    np.testing.assert_array_equal(
        train.obj, make_object("lines", 80, 0, sim.max_phase, 1.0, amp_contrast=0.1))
    for obj in (train.obj, test.obj):
        assert 0.5 - 1e-6 <= np.abs(obj).min() and np.abs(obj).max() <= 0.55 + 1e-6
    assert "amp_contrast" not in SimulationConfig().identity_dict()
    assert sim.identity_dict()["amp_contrast"] == 0.1
    for bad in (0, 1.5, "weak", True):
        with pytest.raises(ConfigError, match="amp_contrast"):
            SimulationConfig(amp_contrast=bad)


def test_subset(scene):
    model, sim = _unit_cfgs(2)
    train, _ = simulate_unit(model, 1e5, sim)
    s = train.subset([0, 3])
    assert s.B == 2
    np.testing.assert_array_equal(s.X, train.X[[0, 3]])
    np.testing.assert_array_equal(s.coords, train.coords[[0, 3]])
    assert train.subset(1).X.shape == (1, 16, 16, 4)


def test_simulate_unit_deterministic_per_seed():
    model, sim = _unit_cfgs(2, jitter=0.3, object_kind="grf")
    a_tr, a_te = simulate_unit(model, 1e4, sim)
    b_tr, b_te = simulate_unit(model, 1e4, sim)
    for a, b in ((a_tr, b_tr), (a_te, b_te)):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.coords, b.coords)
    c_tr, c_te = simulate_unit(model, 1e4, sim.replace(seed=4))
    assert not np.array_equal(a_tr.coords, c_tr.coords)
    assert not np.array_equal(a_te.X, c_te.X)


def test_simulate_unit_grid_scan_and_custom_probe():
    model, sim = _unit_cfgs(1, scan="grid", n_train=17)
    probe = get_default_probe(16, "np", probe_scale=0.5)
    train, test = simulate_unit(model, 1e4, sim, probe=probe)
    assert train.B == 16  # floor(sqrt(17))**2
    np.testing.assert_array_equal(train.probe, probe)
    with pytest.raises(ValueError, match="probe"):
        simulate_unit(model, 1e4, sim, probe=np.ones((8, 8), np.complex64))


def test_simulate_unit_object_too_small_raises():
    model = ModelConfig(N=32, gridsize=2, offset=4)
    sim = SimulationConfig(object_size=40, scan_buffer=4)
    with pytest.raises(ConfigError, match="object_size"):
        simulate_unit(model, 1e4, sim)


def test_test_grid_tiles_the_scored_region_without_holes():
    """Test-set group centres step by at most N/4, so the central N/2 windows overlap."""
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.simulation import simulate_unit

    model_cfg = ModelConfig(N=32, gridsize=1)
    _, test = simulate_unit(model_cfg, 1e6, SimulationConfig(object_size=128, n_train=4,
                                                              n_test=16))
    rows = np.unique(test.coords[:, 0, 0, 0])
    steps = np.diff(rows)
    assert len(rows) == 4 and (steps > 0).all() and (steps <= 32 // 4).all()


@pytest.mark.parametrize("N", [32, 64])
def test_default_training_scan_is_a_grid_a_quarter_patch_apart(N):
    """The finding behind the default n_train (docs/quality.md, round 2): on the default
    object the default number of groups keeps the grid step at N/4 for N = 32 and 64, rather
    than squeezing more, redundant patterns into the same area."""
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.simulation import simulate_unit

    sim = SimulationConfig(n_test=4)
    train, _ = simulate_unit(ModelConfig(N=N, gridsize=1), 1e6, sim)
    centres = np.asarray(train.coords, np.float64)[:, 0, :, 0]
    rows = np.unique(np.round(centres[:, 0], 6))
    assert len(centres) == sim.n_train == 64 and len(rows) == 8
    assert np.allclose(np.diff(rows), N // 4)


def test_scan_functions_keep_their_old_home():
    """The scan geometry moved to ptycho.scan; ptycho.simulation still exports it (legacy API)."""
    import ptycho.scan
    import ptycho.simulation

    for name in ptycho.scan.__all__:
        if name in ptycho.simulation.__all__:
            assert getattr(ptycho.simulation, name) is getattr(ptycho.scan, name)
    assert {"random_positions", "grid_positions", "group_positions", "group_neighbors",
            "scan_range"} <= set(ptycho.simulation.__all__)


def test_forward_operators_keep_their_old_home():
    """extract_patches and diffract moved to ptycho.diffsim; ptycho.simulation still exports
    them (legacy API)."""
    import ptycho.diffsim
    import ptycho.simulation

    for name in ("extract_patches", "diffract"):
        assert name in ptycho.simulation.__all__
        assert getattr(ptycho.simulation, name) is getattr(ptycho.diffsim, name)
