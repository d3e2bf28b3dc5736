"""translate_core: B and B*C batches, the XLA and non-XLA paths, exactness and inverses."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from ptycho.tf_helper import translate_core


def _reference(images, translations):
    """scipy bilinear shift with zero fill, translation b applied to its C consecutive images."""
    C = images.shape[0] // translations.shape[0]
    out = np.empty_like(images)
    for i in range(images.shape[0]):
        t = translations[i // C]
        out[i, ..., 0] = ndimage.shift(images[i, ..., 0].astype(np.float64), t, order=1,
                                       mode="grid-constant", cval=0.0)
    return out


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    B, C, N = 3, 4, 16
    images = rng.random((B * C, N, N, 1)).astype(np.float32)
    translations = rng.uniform(-4, 4, (B, 2)).astype(np.float32)
    return images, translations


def test_bc_images_with_b_translations_non_xla(batch):
    images, translations = batch
    out = translate_core(images, translations, use_xla_workaround=False).numpy()
    assert out.shape == images.shape
    np.testing.assert_allclose(out, _reference(images, translations), atol=2e-5)


def test_bc_images_with_b_translations_inside_jit_compile(batch):
    images, translations = batch

    @tf.function(jit_compile=True)
    def shifted(i, t):
        return translate_core(i, t, use_xla_workaround=True)

    out = shifted(tf.constant(images), tf.constant(translations)).numpy()
    np.testing.assert_allclose(out, _reference(images, translations), atol=2e-5)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("reps", [1, 4])
def test_xla_and_non_xla_paths_agree(interpolation, reps):
    rng = np.random.default_rng(reps)
    images = rng.standard_normal((5 * reps, 24, 20, 2)).astype(np.float32)
    translations = rng.uniform(-6, 6, (5, 2)).astype(np.float32)
    a = translate_core(images, translations, interpolation, use_xla_workaround=False).numpy()
    b = translate_core(images, translations, interpolation, use_xla_workaround=True).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - images).max() > 0.1  # it did move


@pytest.mark.parametrize("use_xla", [False, True])
def test_integer_shifts_are_exact(use_xla):
    rng = np.random.default_rng(3)
    img = rng.random((1, 16, 16, 1)).astype(np.float32)
    out = translate_core(img, np.array([[3.0, -2.0]], np.float32),
                         use_xla_workaround=use_xla).numpy()[0, ..., 0]
    expected = np.zeros((16, 16), np.float32)
    expected[3:, :14] = img[0, :13, 2:, 0]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("use_xla", [False, True])
def test_shift_and_inverse_return_interior(use_xla):
    rng = np.random.default_rng(5)
    img = rng.random((2, 32, 32, 1)).astype(np.float32)
    t = np.array([[4.0, -3.0], [-2.0, 5.0]], np.float32)
    back = translate_core(translate_core(img, t, use_xla_workaround=use_xla), -t,
                          use_xla_workaround=use_xla).numpy()
    np.testing.assert_allclose(back[:, 6:-6, 6:-6], img[:, 6:-6, 6:-6], atol=1e-6)
    # A sub-pixel shift and its inverse on a smooth image: back to within interpolation error.
    yy, xx = np.mgrid[:32, :32]
    smooth = np.sin(yy / 5.0)[None, :, :, None] * np.cos(xx / 6.0)[None, :, :, None]
    smooth = smooth.astype(np.float32)
    tf_ = np.array([[1.5, -2.25]], np.float32)
    back = translate_core(translate_core(smooth, tf_, use_xla_workaround=use_xla), -tf_,
                          use_xla_workaround=use_xla).numpy()
    np.testing.assert_allclose(back[:, 4:-4, 4:-4], smooth[:, 4:-4, 4:-4], atol=0.02)


def test_complex_images_translate_real_and_imaginary_parts():
    rng = np.random.default_rng(11)
    img = (rng.random((2, 16, 16, 1)) + 1j * rng.random((2, 16, 16, 1))).astype(np.complex64)
    t = np.array([[1.25, -0.5]], np.float32)
    out = translate_core(img, t).numpy()
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out.real, translate_core(img.real.copy(), t).numpy(), atol=1e-6)
    np.testing.assert_allclose(out.imag, translate_core(img.imag.copy(), t).numpy(), atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="images must be"):
        translate_core(np.zeros((4, 4), np.float32), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="translations must be"):
        translate_core(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="interpolation"):
        translate_core(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 2), np.float32), "cubic")
    with pytest.raises(tf.errors.InvalidArgumentError):
        translate_core(np.zeros((5, 4, 4, 1), np.float32), np.zeros((2, 2), np.float32))
