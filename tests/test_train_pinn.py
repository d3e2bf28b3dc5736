"""Training, reconstruction quality, reproducibility and persistence on simulated data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho import model_manager, params, train_pinn
from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig
from ptycho.evaluation import evaluate
from ptycho.simulation import diffract, simulate_unit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_data():
    model_cfg = ModelConfig(N=16, gridsize=2, n_filters_scale=1)
    sim = SimulationConfig(object_size=64, n_train=32, n_test=9)
    train, test = simulate_unit(model_cfg, 1e6, sim)
    return model_cfg, train, test


def test_same_seed_gives_the_same_history(small_data, tmp_path, monkeypatch):
    model_cfg, train, _ = small_data
    monkeypatch.chdir(tmp_path)
    training = TrainingConfig(nphotons=1e6, nepochs=2, batch_size=8, seed=5)
    a = train_pinn.train(train, training=training, model_config=model_cfg)
    b = train_pinn.train(train, training=training, model_config=model_cfg)
    c = train_pinn.train(train, training=training.replace(seed=6), model_config=model_cfg)
    assert len(a.history["loss"]) == 2
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    assert not np.allclose(a.history["loss"], c.history["loss"], rtol=1e-5)
    assert list(tmp_path.iterdir()) == []  # no checkpoint files unless asked


def test_training_rejects_a_model_config_that_does_not_match_the_data(small_data):
    _, train, _ = small_data
    with pytest.raises(ValueError, match="N=32"):
        train_pinn.train(train, training=TrainingConfig(nepochs=1),
                         model_config=ModelConfig(N=32, gridsize=2))


def test_training_refuses_a_dose_that_is_not_the_datas(small_data):
    """The loss is scaled by training.nphotons: a config at another dose than the data's
    would train with a wrong scale, silently; it is refused before any step, naming both."""
    model_cfg, train, _ = small_data
    with pytest.raises(ValueError, match=r"training.nphotons = 1e\+09 .* at 1e\+06 photons"):
        train_pinn.train(train, training=TrainingConfig(nepochs=1), model_config=model_cfg)
    result = train_pinn.train(train, training=TrainingConfig(nphotons=1e6 * (1 + 1e-9),
                                                             nepochs=1), model_config=model_cfg)
    assert len(result.history["loss"]) == 1


def _nll_at_truth(data):
    """The "nll" loss (Poisson deviance / 2 per count, see ptycho.losses) of the noiseless
    forward model of the true object: the floor the training loss approaches."""
    psi = data.probe[None, :, :, None] * data.patches
    lam = data.intensity_scale**2 * np.moveaxis(diffract(np.moveaxis(psi, -1, 1)), 1, -1) ** 2
    y = data.X.astype(np.float64) ** 2
    y_log_y = np.where(y > 0, y * np.log(np.maximum(y, 1e-300)), 0.0)
    per_pixel = lam - y * np.log(np.maximum(lam, 1e-12)) - (y - y_log_y)
    return float(np.mean(per_pixel) / (data.nphotons / data.N**2))


def test_high_dose_training_lowers_loss_and_beats_a_constant_guess():
    """A short run at 1e9 photons: the loss's excess over its floor (the true object) halves,
    and the stitched test reconstruction's amplitude SSIM beats that of a constant-amplitude
    guess on the same region."""
    model_cfg = ModelConfig(N=16, gridsize=2, n_filters_scale=1)
    sim = SimulationConfig(object_kind="grf", object_size=64, n_train=512, n_test=36)
    train, test = simulate_unit(model_cfg, 1e9, sim)
    training = TrainingConfig(nphotons=1e9, nepochs=20, batch_size=16).with_loss("nll")
    out = train_pinn.train_eval(train, test, training=training, model_config=model_cfg)
    history = out["result"].history["loss"]
    floor = _nll_at_truth(train)
    assert history[-1] - floor < 0.5 * (history[0] - floor), (history, floor)
    truth = test.obj[out["region"]]
    constant = np.full_like(truth, np.abs(truth).mean())
    baseline = evaluate(constant, truth)
    assert out["metrics"]["amp_ssim"] > baseline["amp_ssim"] + 0.1, (out["metrics"], baseline)
    assert out["metrics"]["amp_psnr"] > baseline["amp_psnr"], (out["metrics"], baseline)


def test_save_then_load_in_a_new_process_gives_the_same_predictions(small_data, tmp_path):
    model_cfg, train, test = small_data
    result = train_pinn.train(train, training=TrainingConfig(nphotons=1e6, nepochs=1,
                                                             batch_size=8),
                              model_config=model_cfg, checkpoint_dir=tmp_path / "model")
    expected = train_pinn.eval(test, result.autoencoder)
    np.savez(tmp_path / "inputs.npz", X=test.X, pos=test.coords_relative)
    code = f"""
import json, sys, numpy as np
from ptycho import model_manager, params
before = dict(params.cfg)
saved = model_manager.load_model({str(tmp_path / 'model')!r})
assert dict(params.cfg) == before, "load_model changed params.cfg"
data = np.load({str(tmp_path / 'inputs.npz')!r})
obj = saved.diffraction_to_obj.predict([data['X'], data['pos']], verbose=0)
np.save({str(tmp_path / 'got.npy')!r}, obj)
model_manager.load_model({str(tmp_path / 'model')!r}, restore_params=True)
print(json.dumps({{"N": params.cfg["N"], "gridsize": params.cfg["gridsize"],
                  "cfg_N": saved.model_config.N}}))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert restored == {"N": 16, "gridsize": 2, "cfg_N": 16}
    got = np.load(tmp_path / "got.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_load_model_rejects_a_directory_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        model_manager.load_model(tmp_path)
    assert params.cfg["N"] == 64


def test_a_model_saved_before_an_option_existed_loads_with_its_neutral_value(small_data,
                                                                               tmp_path):
    """config.json of a model saved before model.stem existed has no "stem": the model was
    built without one, so the loaded config says "none" (the option's neutral value), not
    today's default "auto" (which means the patchify stem from N = 128)."""
    model_cfg, train, _ = small_data
    result = train_pinn.train(train, training=TrainingConfig(nphotons=1e6, nepochs=1,
                                                             batch_size=8),
                              model_config=model_cfg, checkpoint_dir=tmp_path / "model")
    cfg_path = tmp_path / "model" / "config.json"
    meta = json.loads(cfg_path.read_text())
    assert meta["model"]["stem"] == "auto"
    assert model_manager.load_model(tmp_path / "model").model_config.stem == "auto"
    del meta["model"]["stem"]
    cfg_path.write_text(json.dumps(meta))
    loaded = model_manager.load_model(tmp_path / "model")
    assert loaded.model_config.stem == "none"
    assert loaded.model_config == result.autoencoder.ptycho_config.replace(stem="none")
