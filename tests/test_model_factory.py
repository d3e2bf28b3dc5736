"""The lazily loaded model core: factories for any N and gridsize in one process, with and
without XLA; no side effects at import; legacy singletons built on first access."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ptycho import model as model_lib
from ptycho import params
from ptycho.config import ConfigError, ModelConfig, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def _batch(N, C, B=4, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.random((B, N, N, C)) * 30).astype(np.float32)
    pos = rng.uniform(-2, 2, (B, 1, 2, C)).astype(np.float32)
    return X, pos


def _forward(autoencoder, N, C):
    X, pos = _batch(N, C)
    obj, amp, intensity = autoencoder.predict([X, pos], verbose=0)
    assert obj.shape == (4, N, N, 1) and obj.dtype == np.complex64
    assert amp.shape == (4, N, N, C) and intensity.shape == (4, N, N, C)
    np.testing.assert_allclose(intensity, amp**2, rtol=1e-4, atol=1e-3)
    assert np.isfinite(amp).all()


def test_multi_n_model_creation():
    """N=128 then 64, down to 32 and back up, each with a forward pass, in one process."""
    for N in (128, 64, 32, 64):
        autoencoder, diffraction_to_obj = model_lib.create_model_with_gridsize(
            1, N, n_filters_scale=1)
        _forward(autoencoder, N, 1)
        X, pos = _batch(N, 1)
        assert diffraction_to_obj.predict([X, pos], verbose=0).shape == (4, N, N, 1)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_multi_n_with_xla_enabled(gridsize):
    """The multi-N sequence with the XLA translation and jit_compile training steps."""
    C = gridsize**2
    for N in (64, 32, 64) if gridsize == 1 else (32, 16, 32):
        autoencoder, _ = model_lib.create_compiled_model(
            gridsize, N, training=TrainingConfig(nepochs=1, mae_weight=1.0),
            n_filters_scale=1, use_xla=True)
        assert autoencoder.jit_compile is True
        X, pos = _batch(N, C)
        logs = autoencoder.train_on_batch([X, pos], [np.zeros((4, 1)), X, X**2],
                                          return_dict=True)
        assert np.isfinite(logs["loss"])
        _forward(autoencoder, N, C)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_training_steps_update_weights_and_lower_the_loss(gridsize):
    N, C = 32, gridsize**2
    training = TrainingConfig(nphotons=1e6, nepochs=1, batch_size=4, learning_rate=3e-3)
    autoencoder, _ = model_lib.create_compiled_model(gridsize, N, training=training,
                                                     n_filters_scale=1, nphotons=1e6)
    X, pos = _batch(N, C, B=8, seed=gridsize)
    y = [np.zeros((8, 1)), X, X**2]
    before = [w.copy() for w in autoencoder.get_weights()]
    first = autoencoder.train_on_batch([X, pos], y, return_dict=True)["loss"]
    for _ in range(15):
        last = autoencoder.train_on_batch([X, pos], y, return_dict=True)["loss"]
    after = autoencoder.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    assert np.isfinite(last) and last < first


def test_factory_leaves_params_cfg_exactly_as_before_also_on_error():
    params.cfg["probe"] = None
    before = json.dumps({k: v for k, v in params.cfg.items()}, sort_keys=True, default=str)
    model_lib.create_model_with_gridsize(2, 16, n_filters_scale=1)
    with pytest.raises(ConfigError, match="N = 48"):
        model_lib.create_model_with_gridsize(1, 48)
    with pytest.raises(ConfigError, match="amp_activation"):
        model_lib.create_model_with_gridsize(1, 16, amp_activation="cubic")
    after = json.dumps({k: v for k, v in params.cfg.items()}, sort_keys=True, default=str)
    assert after == before


def test_probe_comes_from_argument_then_params_cfg_when_it_matches_n():
    N = 16
    custom = np.full((N, N), 0.5 + 0.5j, np.complex64)
    ae, _ = model_lib.create_model_with_gridsize(1, N, n_filters_scale=1, probe=custom,
                                                 probe_mask=False)
    got = ae.get_layer("probe_illumination").initial_probe
    np.testing.assert_array_equal(got, custom)
    try:
        params.cfg["probe"] = custom * 2
        ae, _ = model_lib.create_model_with_gridsize(1, N, n_filters_scale=1)
        np.testing.assert_array_equal(ae.get_layer("probe_illumination").initial_probe,
                                      custom * 2)
        # A params.cfg probe of another N is ignored: the default probe for N is used.
        ae, _ = model_lib.create_model_with_gridsize(1, 32, n_filters_scale=1)
        assert ae.get_layer("probe_illumination").initial_probe.shape == (32, 32)
    finally:
        params.cfg["probe"] = None
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        model_lib.create_model_with_gridsize(1, N, probe=np.ones((32, 32)))


@pytest.mark.parametrize("N,depth", [(16, 1), (32, 2), (64, 3), (128, 4), (256, 5)])
def test_unet_depth_follows_n(N, depth):
    assert model_lib.unet_depth(N) == depth
    assert len(model_lib.filter_counts(N, 1)) == depth


def test_import_no_side_effects():
    code = """
import gc, json, sys
import ptycho.model as m
import keras, tensorflow as tf
gc.collect()
variables = [o for o in gc.get_objects() if isinstance(o, tf.Variable)]
models = [o for o in gc.get_objects() if isinstance(o, keras.Model)]
layers = [o for o in gc.get_objects() if isinstance(o, keras.layers.Layer)]
print(json.dumps({"cache": len(m._lazy_cache), "done": m._model_construction_done,
                  "variables": len(variables), "models": len(models), "layers": len(layers)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    state = json.loads(out.strip().splitlines()[-1])
    assert state == {"cache": 0, "done": False, "variables": 0, "models": 0, "layers": 0}


def test_light_modules_do_not_import_tensorflow():
    """The config and the numpy side (simulation, diffsim, scan, stitching, scoring) load
    without TF."""
    code = ("import sys, ptycho, ptycho.config, ptycho.params, ptycho.simulation, ptycho.scan, "
            "ptycho.diffsim, "
            "ptycho.stitching, ptycho.evaluation, ptycho.scores, ptycho.objects, ptycho.probe; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.fixture
def fresh_legacy_state():
    saved = dict(params.cfg)
    model_lib._lazy_cache.clear()
    model_lib._model_construction_done = False
    yield
    model_lib._lazy_cache.clear()
    model_lib._model_construction_done = False
    params.cfg.clear()
    params.cfg.update(saved)


def test_legacy_singletons_warn_build_once_and_are_cached(fresh_legacy_state):
    params.cfg.update({"N": 16, "gridsize": 2, "n_filters_scale": 1})
    with pytest.warns(DeprecationWarning, match="create_model_with_gridsize"):
        first = model_lib.autoencoder
    assert model_lib._model_construction_done is True
    assert set(model_lib._lazy_cache) == {"autoencoder", "diffraction_to_obj",
                                          "autoencoder_no_nll"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert model_lib.autoencoder is first
        d2o = model_lib.diffraction_to_obj
    assert first.input_shape[0] == (None, 16, 16, 4)
    assert d2o.get_layer("amp_head") is first.get_layer("amp_head")
    with pytest.raises(AttributeError):
        model_lib.not_a_model  # noqa: B018


def test_reset_weights_is_deterministic_per_seed():
    ae, _ = model_lib.create_model_with_gridsize(1, 16, n_filters_scale=1)
    model_lib.reset_weights(ae, seed=3)
    a = [w.copy() for w in ae.get_weights()]
    model_lib.reset_weights(ae, seed=4)
    b = [w.copy() for w in ae.get_weights()]
    model_lib.reset_weights(ae, seed=3)
    c = ae.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_model_config_is_attached_and_sizes_are_explicit():
    cfg = ModelConfig(N=32, gridsize=2, n_filters_scale=1)
    models = model_lib.build_models(cfg)
    assert models.autoencoder.ptycho_config == cfg
    layer = models.autoencoder.get_layer("reassemble")
    assert (layer.N, layer.gridsize, layer.padded_size) == (32, 2, cfg.padded_size)


def test_legacy_params_view_round_trips_the_config_dataclasses():
    """params.cfg defaults are the dataclass defaults, and one key table maps both ways. The
    one exception is the loss: PtychoPINN names none, only weights, and its pure NLL weight
    means its plain Poisson NLL, while the dataclass default is the robust "nll_huber"."""
    assert params.model_config_from_cfg(params._defaults()) == ModelConfig()
    legacy_training = params.training_config_from_cfg(params._defaults())
    assert TrainingConfig().loss == "nll_huber" and legacy_training.loss == "nll"
    assert legacy_training == TrainingConfig().replace(loss="nll")
    custom = ModelConfig(N=32, gridsize=3, offset=5, probe_scale=1.1, use_xla=True)
    legacy = {**params._defaults(), **params.legacy_values(custom, params.MODEL_KEYS)}
    assert params.model_config_from_cfg(legacy) == custom
    assert legacy["default_probe_scale"] == 1.1 and legacy["use_xla_translate"] is True


@pytest.mark.parametrize("N,gridsize", [(128, 2), (64, 1)])
def test_a_patchify_stem_runs_the_unet_at_half_size_with_the_same_outputs(N, gridsize):
    """stem = "patchify": a 2x2 stride-2 convolution first, then the U-Net of N/2 decoding to
    the N/2 object region: the model's inputs and outputs are those of the plain U-Net, its
    weights about a quarter (the N/2 network's)."""
    C = gridsize**2
    plain = model_lib.build_models(ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1,
                                               stem="none"))
    stem = model_lib.build_models(ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1,
                                              stem="patchify"))
    _forward(stem.autoencoder, N, C)
    X, pos = _batch(N, C)
    assert stem.diffraction_to_obj.predict([X, pos], verbose=0).shape == (4, N, N, 1)
    assert stem.autoencoder.get_layer("stem").strides == (2, 2)
    assert stem.autoencoder.get_layer("amp_head").output.shape[1:3] == (N // 2, N // 2)
    assert 3 * stem.autoencoder.count_params() < plain.autoencoder.count_params()


def test_a_patchify_stem_is_refused_where_it_cannot_work_and_absent_from_default_ids():
    with pytest.raises(ConfigError, match=r"ModelConfig.stem .*N >= 32"):
        ModelConfig(N=16, stem="patchify")
    with pytest.raises(ConfigError, match=r"ModelConfig.stem .*pad_object"):
        ModelConfig(N=64, stem="patchify", pad_object=False)
    with pytest.raises(ConfigError, match=r"ModelConfig.stem = 'strided'"):
        ModelConfig(stem="strided")
    assert "stem" not in ModelConfig().identity_dict()  # recorded studies keep their ids
    assert ModelConfig(stem="patchify").identity_dict()["stem"] == "patchify"


def test_the_default_stem_patchifies_from_n_128_only():
    """stem = "auto": the plain U-Net up to N = 64 (the pre-option network and ids), the
    patchify stem from N = 128 (docs/quality.md, round 9), unless the object is not padded."""
    assert ModelConfig().stem == "auto"
    assert [ModelConfig(N=n).resolved_stem for n in (16, 32, 64, 128, 256)] == \
        ["none", "none", "none", "patchify", "patchify"]
    assert ModelConfig(N=128, pad_object=False).resolved_stem == "none"
    assert ModelConfig(N=128, stem="none").resolved_stem == "none"
    assert ModelConfig(N=128).identity_dict() == ModelConfig(N=128, stem="patchify").identity_dict()
    assert "stem" not in ModelConfig(N=128, stem="none").identity_dict()
    for cfg in (ModelConfig(N=128, stem="none"), ModelConfig(N=128), ModelConfig(probe_coma=1.5)):
        assert ModelConfig.from_saved_dict(cfg.identity_dict()).resolved_stem == cfg.resolved_stem
    ae = model_lib.build_models(ModelConfig(N=128, n_filters_scale=1)).autoencoder
    assert ae.get_layer("stem").strides == (2, 2)
    ae = model_lib.build_models(ModelConfig(N=64, n_filters_scale=1)).autoencoder
    assert "stem" not in [layer.name for layer in ae.layers]


@pytest.mark.parametrize("stem", ["none", "patchify"])
def test_the_hidden_activation_is_one_option_for_every_hidden_layer(stem):
    """model.activation reaches every hidden convolution (and the stem), never the heads; a
    leaky unit passes gradient for negative inputs; relu stays out of the ids (recorded
    studies keep theirs); an unknown name is refused."""
    import keras

    cfg = ModelConfig(N=32, gridsize=1, n_filters_scale=1, stem=stem, activation="leaky_relu")
    ae = model_lib.build_models(cfg).autoencoder
    convs = [layer for layer in ae.layers if isinstance(layer, keras.layers.Conv2D)]
    hidden = [layer for layer in convs if not layer.name.endswith("_head")]
    assert len(hidden) >= 7 and ("stem" in [h.name for h in hidden]) == (stem == "patchify")
    x = keras.ops.convert_to_tensor(np.array([-1.0, 2.0], np.float32))
    for layer in hidden:
        np.testing.assert_allclose(np.asarray(layer.activation(x)), [-0.2, 2.0], rtol=1e-6)
    assert ae.get_layer("amp_head").activation is keras.activations.sigmoid
    _forward(ae, 32, 1)
    assert "activation" not in ModelConfig().identity_dict()
    assert cfg.identity_dict()["activation"] == "leaky_relu"
    with pytest.raises(ConfigError, match=r"ModelConfig.activation = 'tanh'"):
        ModelConfig(activation="tanh")


@pytest.mark.parametrize("gridsize", [1, 2])
def test_zero_initialised_heads_give_a_constant_object_after_every_reset(gridsize):
    """model.head_init = "zeros": after building and after reset_weights (any seed) both head
    kernels are zero, so the object is sigmoid(0) = 0.5 and phase 0 wherever the decoder
    predicts, whatever the input; the hidden layers stay random; the default stays out of the
    ids; an unknown name is refused."""
    cfg = ModelConfig(N=16, gridsize=gridsize, n_filters_scale=1, head_init="zeros")
    ae = model_lib.build_models(cfg).autoencoder
    for seed in (None, 3):
        if seed is not None:
            model_lib.reset_weights(ae, seed)
        for name in ("amp_head", "phase_head"):
            assert not np.any(ae.get_layer(name).kernel.numpy())
        assert np.std(ae.get_layer("enc0_a").kernel.numpy()) > 0
        X, pos = _batch(16, cfg.C, seed=seed or 0)
        obj = np.asarray(ae.predict([X, pos], verbose=0)[0])[..., 0]
        centre = obj[:, 6:10, 6:10]  # inside the predicted region of every group
        np.testing.assert_allclose(np.abs(centre), 0.5, rtol=1e-5)
        np.testing.assert_allclose(np.angle(centre), 0.0, atol=1e-5)
    assert "head_init" not in ModelConfig().identity_dict()
    assert cfg.identity_dict()["head_init"] == "zeros"
    with pytest.raises(ConfigError, match="head_init"):
        ModelConfig(head_init="ones")
