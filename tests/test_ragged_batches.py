"""Batches of any size: ragged last batches in training, and prediction on data sets of
different sizes with one model (Keras retraces with relaxed, ``None`` shapes)."""

import numpy as np
import pytest
import tensorflow as tf

from ptycho import tf_helper as hh
from ptycho import train_pinn
from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig
from ptycho.simulation import simulate_unit


@pytest.mark.parametrize("use_xla", [False, True], ids=["no-xla", "xla"])
@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_ragged_training_and_repeated_prediction(gridsize, use_xla):
    model_cfg = ModelConfig(N=16, gridsize=gridsize, n_filters_scale=1, offset=2,
                            use_xla=use_xla)
    train, test = simulate_unit(model_cfg, 1e6,
                                SimulationConfig(object_size=64, n_train=20, n_test=9,
                                                 scan="random"))
    # 20 samples (a random scan keeps the count) in batches of 8: the last batch holds 4.
    result = train_pinn.train(train, training=TrainingConfig(nphotons=1e6, nepochs=2,
                                                             batch_size=8),
                              model_config=model_cfg)
    assert np.all(np.isfinite(result.history["loss"]))
    model = result.autoencoder
    first = train_pinn.eval(test, model)
    on_train = train_pinn.eval(train, model)  # another size after the first trace
    small = train_pinn.eval(test.subset(slice(0, 5)), model, batch_size=2)  # ragged predict
    again = train_pinn.eval(test, model)
    assert first.shape == (9, 16, 16, 1)
    assert on_train.shape == (20, 16, 16, 1)
    assert small.shape == (5, 16, 16, 1)
    np.testing.assert_allclose(again, first, atol=1e-5)
    np.testing.assert_allclose(small, first[:5], atol=1e-5)


@pytest.mark.parametrize("use_xla", [False, True], ids=["no-xla", "xla"])
def test_physics_ops_accept_fully_unknown_shapes(use_xla):
    """Extraction, reassembly and cropping work when every dimension but the channels is
    unknown at trace time, as after Keras relaxes shapes on a retrace."""
    rng = np.random.default_rng(0)
    N, C, M = 16, 4, 24
    patches = (rng.random((3, N, N, C)) + 1j * rng.random((3, N, N, C))).astype(np.complex64)
    offsets = rng.uniform(-3, 3, (3, 1, 2, C)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, C), tf.complex64),
                                  tf.TensorSpec((None, 1, 2, C), tf.float32)],
                 jit_compile=use_xla)
    def roundtrip(p, o):
        canvas = hh.reassemble_patches(tf.ensure_shape(p, (None, N, N, C)), o, M,
                                       use_xla=use_xla)
        relaxed = tf.reshape(canvas, tf.shape(canvas))  # forget the static shape
        return hh.extract_patches_position(relaxed, o, N, use_xla=use_xla), \
            hh.crop_center(relaxed, N)

    out, cropped = roundtrip(patches, offsets)
    assert out.shape == (3, N, N, C) and cropped.shape == (3, N, N, 1)
    eager_canvas = hh.reassemble_patches(patches, offsets, M, use_xla=use_xla)
    np.testing.assert_allclose(out, hh.extract_patches_position(eager_canvas, offsets, N,
                                                                use_xla=use_xla), atol=1e-5)
