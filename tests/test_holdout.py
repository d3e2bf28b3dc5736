"""Held-out photons (``training.holdout``): the binomial split of the counts, the stopping
callback, and training with it (dose, intensity scale, restored weights)."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest

from ptycho import holdout, train_pinn
from ptycho import model as model_lib
from ptycho.config import ConfigError, ModelConfig, SimulationConfig, TrainingConfig
from ptycho.simulation import simulate_unit


@pytest.fixture(scope="module")
def tiny():
    model_cfg = ModelConfig(N=16, gridsize=2, n_filters_scale=1)
    train, test = simulate_unit(model_cfg, 1e4, SimulationConfig(object_size=64, n_train=16,
                                                                 n_test=9))
    return model_cfg, train, test


def _counts(data):
    return np.rint(np.square(data.X.astype(np.float64))).astype(np.int64)


def test_split_keeps_every_photon_and_scales_dose_and_amplitude(tiny):
    _, train, _ = tiny
    fit, held = holdout.split_counts(train, 0.25, seed=3)
    y, y_fit, y_held = _counts(train), _counts(fit), _counts(held)
    np.testing.assert_array_equal(y_fit + y_held, y)
    assert (y_fit >= 0).all() and (y_held >= 0).all()
    assert y_held.sum() / y.sum() == pytest.approx(0.25, abs=0.01)  # ~6e5 photons
    assert fit.nphotons == pytest.approx(0.75e4) and held.nphotons == pytest.approx(0.25e4)
    assert fit.intensity_scale == pytest.approx(train.intensity_scale * math.sqrt(0.75))
    assert held.intensity_scale == pytest.approx(train.intensity_scale * math.sqrt(0.25))
    np.testing.assert_array_equal(fit.coords, train.coords)  # the same scan
    again, _ = holdout.split_counts(train, 0.25, seed=3)
    other, _ = holdout.split_counts(train, 0.25, seed=4)
    np.testing.assert_array_equal(again.X, fit.X)
    assert not np.array_equal(other.X, fit.X)


def test_thinned_poisson_counts_are_independent_poisson_counts():
    """The property the rule rests on: Binomial(Poisson(lam), 1 - h) and the rest are
    independent Poisson((1 - h) lam) and Poisson(h lam): mean = variance, no covariance."""
    lam, h, n = 6.0, 0.3, 400_000
    rng = np.random.default_rng(0)
    X = np.sqrt(rng.poisson(lam, size=(n // 16, 4, 4, 1))).astype(np.float32)
    data = _Data(X)
    fit, held = holdout.split_counts(data, h, seed=0)
    a, b = _counts(fit).ravel().astype(float), _counts(held).ravel().astype(float)
    for part, mean in ((a, (1 - h) * lam), (b, h * lam)):
        assert part.mean() == pytest.approx(mean, rel=0.01)
        assert part.var() == pytest.approx(mean, rel=0.02)  # Poisson, not binomial
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01  # given their sum they are anti-correlated


@dataclasses.dataclass
class _Data:
    """The fields split_counts reads, for data that are not a simulated scan."""

    X: np.ndarray
    intensity_scale: float = 1.0
    nphotons: float = 1.0


def test_split_refuses_counts_that_are_not_integers_and_bad_fractions(tiny):
    _, train, _ = tiny
    with pytest.raises(ValueError, match="not integer counts"):
        holdout.split_counts(_Data(np.full((2, 4, 4, 1), 1.3, np.float32)), 0.1, 0)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            holdout.split_counts(train, bad, 0)


def test_config_validates_holdout_and_patience():
    assert TrainingConfig(holdout=0.1, patience=20).patience == 20
    with pytest.raises(ConfigError, match="holdout"):
        TrainingConfig(holdout=0.95)
    with pytest.raises(ConfigError, match="holdout"):
        TrainingConfig(holdout=-0.1)
    with pytest.raises(ConfigError, match="patience.*needs holdout"):
        TrainingConfig(patience=5)
    with pytest.raises(ConfigError, match="patience"):
        TrainingConfig(holdout=0.1, patience=-1)


class _Scripted(holdout.HeldOutStopping):
    """Held-out losses from a script instead of predictions."""

    def __init__(self, losses, patience):
        keras.callbacks.Callback.__init__(self)
        self.losses, self.patience = list(losses), patience

    def held_out_loss(self):
        return self.losses.pop(0)


def test_stopping_restores_the_best_epoch_and_stops_after_patience():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    cb = _Scripted([5.0, 3.0, 4.0, 3.5, 2.9, 3.1, 3.2, 3.3], patience=3)
    cb.set_model(model)
    model.stop_training = False  # as fit() sets it
    cb.on_train_begin()
    stopped_at = None
    for epoch in range(8):
        model.layers[0].bias.assign([float(epoch)])  # the weights say which epoch they are
        logs = {}
        cb.on_epoch_end(epoch, logs)
        assert logs["holdout_loss"] == [5.0, 3.0, 4.0, 3.5, 2.9, 3.1, 3.2, 3.3][epoch]
        if model.stop_training:
            stopped_at = epoch + 1
            break
    assert stopped_at == 8 and cb.best_epoch == 5  # three epochs after the minimum
    cb.on_train_end()
    assert float(model.layers[0].bias.numpy()[0]) == 4.0  # epoch 5's weights


def test_training_with_holdout_fits_the_kept_dose_and_keeps_the_best_weights(tiny):
    model_cfg, train, test = tiny
    models = model_lib.build_models(model_cfg, probe=train.probe,
                                    intensity_scale=train.intensity_scale)
    scaler = models.autoencoder.get_layer("intensity_scaler")
    training = TrainingConfig(nphotons=1e4, nepochs=6, batch_size=8, holdout=0.2, seed=1)
    result = train_pinn.train(train, model_instance=models.autoencoder, training=training,
                              validation_data=test)
    assert result.training.nphotons == pytest.approx(0.8e4)
    assert result.fit_data.nphotons == pytest.approx(0.8e4)
    assert result.validation_data.nphotons == pytest.approx(0.8e4)
    assert math.exp(float(scaler.log_scale.numpy())) == pytest.approx(
        train.intensity_scale * math.sqrt(0.8), rel=1e-4)  # not trainable by default
    losses = result.history["holdout_loss"]
    assert len(losses) == 6 and result.best_epoch == int(np.argmin(losses)) + 1
    assert result.final_loss == result.history["loss"][result.best_epoch - 1]
    # the model holds the best epoch's weights: its held-out loss is the minimum
    _, held = holdout.split_counts(train, 0.2, seed=1)
    check = holdout.HeldOutStopping(train_pinn.model_inputs(result.fit_data), held, 0.2)
    check.set_model(models.autoencoder)
    assert check.held_out_loss() == pytest.approx(min(losses), rel=1e-5)
    # the next arm starts from the built scale, not the kept photons' one
    model_lib.reset_weights(models.autoencoder, 2)
    assert math.exp(float(scaler.log_scale.numpy())) == pytest.approx(train.intensity_scale,
                                                                      rel=1e-5)


def test_training_without_holdout_is_unchanged(tiny):
    model_cfg, train, _ = tiny
    result = train_pinn.train(train, training=TrainingConfig(nphotons=1e4, nepochs=2,
                                                             batch_size=8),
                              model_config=model_cfg)
    assert result.best_epoch is None and "holdout_loss" not in result.history
    assert result.fit_data is train and result.training.nphotons == 1e4
    assert result.final_loss == result.history["loss"][-1]
