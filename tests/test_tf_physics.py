"""Physics helpers in TensorFlow: diffraction, extraction/reassembly by position, and the
Keras layers that wrap them (explicit sizes, get_config round trip)."""

import keras
import numpy as np
import pytest

from ptycho import custom_layers as cl
from ptycho import tf_helper as hh


def _complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_diffract_preserves_power_and_centres_zero_frequency():
    rng = np.random.default_rng(0)
    psi = _complex(rng, (3, 16, 16, 4))
    amp = hh.diffract(psi).numpy()
    assert amp.shape == psi.shape and amp.dtype == np.float32
    np.testing.assert_allclose((amp**2).sum(axis=(1, 2)), (np.abs(psi) ** 2).sum(axis=(1, 2)),
                               rtol=1e-5)
    flat = np.ones((1, 16, 16, 1), np.complex64)
    spot = hh.diffract(flat).numpy()[0, ..., 0]
    assert np.unravel_index(spot.argmax(), spot.shape) == (8, 8)
    assert spot[8, 8] == pytest.approx(16.0, rel=1e-5)  # sqrt(N*N) for a unit plane wave


def test_pad_and_diffract_gives_full_size_pattern():
    rng = np.random.default_rng(1)
    region = _complex(rng, (2, 8, 8, 1))
    amp = hh.pad_and_diffract(region, 4).numpy()
    assert amp.shape == (2, 16, 16, 1)
    np.testing.assert_allclose((amp**2).sum(), (np.abs(region) ** 2).sum(), rtol=1e-5)


def test_channel_reshapes_are_inverse():
    rng = np.random.default_rng(2)
    x = rng.random((3, 8, 8, 4)).astype(np.float32)
    flat = hh.channel_to_flat(x).numpy()
    assert flat.shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(flat[5, ..., 0], x[1, ..., 1])
    np.testing.assert_array_equal(hh.flat_to_channel(flat, 4).numpy(), x)


@pytest.mark.parametrize("use_xla", [False, True])
def test_extract_patches_at_integer_offsets_is_slicing(use_xla):
    rng = np.random.default_rng(3)
    M, N = 24, 16
    canvas = rng.random((1, M, M, 1)).astype(np.float32)
    offsets = np.array([[-2, -2], [-2, 2], [2, -2], [2, 2]], np.float32).T[None, None]  # (1,1,2,4)
    patches = hh.extract_patches_position(canvas, offsets, N, use_xla=use_xla).numpy()
    assert patches.shape == (1, N, N, 4)
    for c in range(4):
        r0 = M // 2 - N // 2 + int(offsets[0, 0, 0, c])
        c0 = M // 2 - N // 2 + int(offsets[0, 0, 1, c])
        np.testing.assert_array_equal(patches[0, ..., c], canvas[0, r0:r0 + N, c0:c0 + N, 0])


@pytest.mark.parametrize("gridsize", [2, 3])
def test_reassemble_then_extract_recovers_patches_of_one_object(gridsize):
    """Patches cut from one object at their offsets are reassembled into that object, and
    re-extracting returns them on the support region."""
    rng = np.random.default_rng(4)
    N, M, C = 16, 28, gridsize**2
    obj = _complex(rng, (1, M, M, 1))
    step = 4.0  # integer offsets: bilinear resampling is then exact
    grid = (np.arange(gridsize) - (gridsize - 1) / 2) * step
    offs = np.stack(np.meshgrid(grid, grid, indexing="ij"), 0).reshape(2, C)[None, None]
    offs = offs.astype(np.float32)
    patches = hh.extract_patches_position(obj, offs, N).numpy()
    canvas = hh.reassemble_patches(patches, offs, M, pad_object=True).numpy()
    support = hh.support_mask(N, True).numpy()[0, ..., 0] > 0
    again = hh.extract_patches_position(canvas, offs, N).numpy()
    for c in range(C):
        np.testing.assert_allclose(again[0, ..., c][support], patches[0, ..., c][support],
                                   atol=1e-5)
    # Where patches landed, the canvas is the object itself.
    q = N // 4
    centre = canvas[0, M // 2 - q:M // 2 + q, M // 2 - q:M // 2 + q, 0]
    np.testing.assert_allclose(centre, obj[0, M // 2 - q:M // 2 + q, M // 2 - q:M // 2 + q, 0],
                               atol=1e-5)


def test_layers_take_sizes_explicitly_and_round_trip_through_get_config():
    rng = np.random.default_rng(5)
    N, g, M = 16, 2, 22
    probe = _complex(rng, (N, N))
    patches = _complex(rng, (2, N, N, 4))
    offs = rng.uniform(-2, 2, (2, 1, 2, 4)).astype(np.float32)
    layers = [
        (cl.ReassemblePatchesLayer(N, g, M, pad_object=True), [patches, offs]),
        (cl.ProbeIllumination(probe, N, trainable_probe=True, mask=True), patches),
        (cl.DiffractLayer(), patches),
        (cl.TrimObjectLayer(N, g), _complex(rng, (2, M, M, 1))),
        (cl.IntensityScaler(3.5, trainable_scale=False), np.abs(patches)),
    ]
    for layer, x in layers:
        y = layer(x)
        clone = type(layer).from_config(layer.get_config())
        y2 = clone(x)
        np.testing.assert_allclose(np.asarray(y2), np.asarray(y), atol=1e-6,
                                   err_msg=type(layer).__name__)
    cfg = layers[0][0].get_config()
    assert (cfg["N"], cfg["gridsize"], cfg["padded_size"]) == (N, g, M)


def test_probe_illumination_masks_and_checks_shape():
    N = 16
    layer = cl.ProbeIllumination(np.ones((N, N), np.complex64), N, mask=True)
    out = np.asarray(layer(np.ones((1, N, N, 1), np.complex64)))[0, ..., 0]
    assert out[N // 2, N // 2] == 1 and out[0, 0] == 0
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        cl.ProbeIllumination(np.ones((N, N), np.complex64), 32)


def test_intensity_scaler_inverse_and_shared_variable():
    layer = cl.IntensityScaler(4.0)
    x = np.full((1, 2, 2, 1), 8.0, np.float32)
    np.testing.assert_allclose(np.asarray(layer(x, inverse=True)), 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(layer(x)), 32.0, rtol=1e-6)
    assert len(layer.weights) == 1
    with pytest.raises(ValueError):
        cl.IntensityScaler(0.0)
    assert isinstance(layer, keras.layers.Layer)
