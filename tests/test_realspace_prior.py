"""The real-space priors: total variation of the object's amplitude (``realspace_weight``)
and of the complex object (``complex_tv_weight``), their values, gradients and place in the
compiled model's loss."""

import numpy as np
import pytest
import tensorflow as tf

from ptycho import model as model_lib
from ptycho.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.custom_layers import TotalVariationPenalty as TV


def _object(B=3, N=12, K=1, seed=0):
    rng = np.random.default_rng(seed)
    amp = 0.5 + 0.1 * rng.random((B, N, N, K))
    phase = rng.uniform(-0.3, 0.3, (B, N, N, K))
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _np_tv(x):
    return np.mean(np.abs(x[:, 1:] - x[:, :-1])) + np.mean(np.abs(x[:, :, 1:] - x[:, :, :-1]))


def test_both_penalties_are_the_mean_neighbour_difference_of_their_image():
    obj = _object()
    np.testing.assert_allclose(float(TV.amplitude_tv(tf.constant(obj))), _np_tv(np.abs(obj)),
                               rtol=1e-5)
    np.testing.assert_allclose(float(TV.complex_tv(tf.constant(obj))), _np_tv(obj), rtol=1e-5)


def test_the_complex_penalty_sees_the_phase_the_amplitude_penalty_ignores():
    """A pure phase pattern (amplitude 0.5, phase steps of 0.2 rad) costs nothing on the
    amplitude and about ``0.5 * 0.2`` per step on the complex object."""
    N = 16
    phase = np.zeros((1, N, N, 1))
    phase[:, :, N // 2:] = 0.2
    obj = tf.constant((0.5 * np.exp(1j * phase)).astype(np.complex64))
    assert float(TV.amplitude_tv(obj)) < 1e-6
    step = abs(0.5 - 0.5 * np.exp(0.2j))  # one horizontal step per row, (N - 1) differences
    np.testing.assert_allclose(float(TV.complex_tv(obj)), step / (N - 1), rtol=1e-3)


def test_the_complex_penalty_has_a_finite_gradient_on_a_constant_object():
    """Zero-initialised heads start from a constant object: every difference is 0, where the
    modulus has no derivative; the smoothed one gives a zero gradient, not NaN."""
    obj = tf.Variable(np.full((2, 8, 8, 1), 0.5 + 0j, np.complex64))
    with tf.GradientTape() as tape:
        loss = TV.complex_tv(obj)
    grad = tape.gradient(loss, obj).numpy()
    assert np.isfinite(grad).all() and not np.any(np.abs(grad) > 1e-6)
    assert float(loss) == pytest.approx(2 * TV.EPS, rel=1e-3)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_compile_sets_each_weight_and_the_model_loss_adds_the_penalty(gridsize):
    """The loss a compiled model reports is the data loss plus ``w * TV`` of the object it
    predicts, for either prior; recompiling with other weights changes them in place."""
    N, C = 16, gridsize**2
    models = model_lib.build_models(ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1),
                                    intensity_scale=10.0)
    ae = models.autoencoder
    rng = np.random.default_rng(1)
    X = (rng.random((4, N, N, C)) * 30).astype(np.float32)
    pos = rng.uniform(-2, 2, (4, 1, 2, C)).astype(np.float32)
    y = [np.zeros((4, 1)), X, X**2]
    obj = tf.constant(ae.predict([X, pos], verbose=0)[0])
    losses = {}
    for amp_w, cplx_w in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5)):
        training = TrainingConfig(nphotons=1e6, lr_schedule="constant", realspace_weight=amp_w,
                                  complex_tv_weight=cplx_w)
        model_lib.compile_model(ae, training)
        layer = ae.get_layer("object")
        assert float(layer.weight.numpy()) == amp_w
        assert float(layer.complex_weight.numpy()) == cplx_w
        losses[amp_w, cplx_w] = ae.evaluate([X, pos], y, batch_size=4, verbose=0,
                                            return_dict=True)["loss"]
    base = losses[0.0, 0.0]
    np.testing.assert_allclose(losses[0.5, 0.0] - base, 0.5 * float(TV.amplitude_tv(obj)),
                               rtol=1e-2, atol=1e-6 * abs(base))
    np.testing.assert_allclose(losses[0.0, 0.5] - base, 0.5 * float(TV.complex_tv(obj)),
                               rtol=1e-2, atol=1e-6 * abs(base))
    assert losses[0.0, 0.5] > base


def test_the_complex_weight_is_validated_and_out_of_default_ids():
    with pytest.raises(ConfigError, match="complex_tv_weight"):
        TrainingConfig(complex_tv_weight=-0.1)
    assert "complex_tv_weight" not in TrainingConfig().identity_dict()
    assert TrainingConfig(complex_tv_weight=0.3).identity_dict()["complex_tv_weight"] == 0.3
