"""The loss registry: values, dose normalisation, configuration and schedules."""

import numpy as np
import pytest

from ptycho import model as model_lib
from ptycho.config import ConfigError, TrainingConfig
from ptycho.losses import LOSS_NAMES, LOSSES, get_loss


def _counts(mean, shape=(2, 8, 8, 1), seed=0):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(2.0, mean / 2.0, shape).astype(np.float32)
    return lam, rng.poisson(lam).astype(np.float32)


def test_every_loss_is_zero_at_a_perfect_fit_and_positive_elsewhere():
    lam, y = _counts(50.0)
    training = TrainingConfig(loss="weighted", nll_weight=1.0, mae_weight=0.5)
    for name in LOSS_NAMES:
        spec = LOSSES[name]
        fn = spec.make(50.0, training)
        target = y if spec.output == "intensity" else np.sqrt(y)
        pred = lam if spec.output == "intensity" else np.sqrt(lam)
        assert float(fn(target, target)) == pytest.approx(0.0, abs=1e-5), name
        assert float(fn(target, pred)) > 0, name


def test_nll_is_minimised_by_the_poisson_mean_and_sized_independently_of_dose():
    fn = get_loss("nll").make
    values = []
    for mean in (1.0, 1e5):
        lam, y = _counts(mean, shape=(4, 32, 32, 1), seed=1)
        loss = fn(mean, TrainingConfig())
        at_truth = float(loss(y, lam))
        assert at_truth < float(loss(y, 1.3 * lam)) and at_truth < float(loss(y, 0.7 * lam))
        values.append(float(loss(y, 2.0 * lam)) - at_truth)
    # The excess of a factor-2 misfit over the truth is of the same size at 1 and 1e5 counts.
    assert 0.2 < values[0] / values[1] < 5, values


def test_unknown_loss_and_bad_schedules_are_config_errors():
    with pytest.raises(KeyError, match="must be one of 'nll', 'mae'"):
        get_loss("l2")
    with pytest.raises(ConfigError, match="TrainingConfig.loss"):
        TrainingConfig(loss="l2")
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainingConfig(lr_schedule="step")
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TrainingConfig(nepochs=3, warmup_epochs=3)
    assert TrainingConfig().with_loss("mae").loss == "mae"
    assert (TrainingConfig().with_loss("mae").nll_weight, TrainingConfig().with_loss(
        "mae").mae_weight) == (0.0, 1.0)


def test_learning_rate_schedules():
    assert model_lib.learning_rate(TrainingConfig(lr_schedule="constant")) == 1e-3
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model_lib.learning_rate(TrainingConfig(lr_schedule="cosine"))
    sched = model_lib.learning_rate(TrainingConfig(nepochs=10, lr_schedule="cosine",
                                                   warmup_epochs=2), steps_per_epoch=5)
    lrs = [float(sched(step)) for step in (0, 5, 10, 30, 50)]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1e-3)  # warm-up to the peak
    assert lrs[2] > lrs[3] > lrs[4] == pytest.approx(1e-5, rel=1e-3)  # cosine to 1 %
    flat = model_lib.learning_rate(TrainingConfig(nepochs=4, lr_schedule="constant",
                                                  warmup_epochs=1), steps_per_epoch=5)
    assert float(flat(0)) < float(flat(5)) == pytest.approx(1e-3) == float(flat(19))


def test_legacy_weights_pick_the_loss():
    from ptycho import params

    cfg = {**params.cfg, "nll_weight": 0.0, "mae_weight": 1.0}
    assert params.training_config_from_cfg(cfg).loss == "mae"
    cfg = {**params.cfg, "nll_weight": 1.0, "mae_weight": 1.0}
    assert params.training_config_from_cfg(cfg).loss == "weighted"
    assert params.training_config_from_cfg().loss == "nll"


def test_compile_without_steps_falls_back_to_the_constant_rate_with_a_warning():
    from ptycho.config import ModelConfig

    ae = model_lib.build_models(ModelConfig(N=16, n_filters_scale=1)).autoencoder
    with pytest.warns(UserWarning, match="steps_per_epoch"):
        model_lib.compile_model(ae, TrainingConfig(lr_schedule="cosine"))
    assert float(ae.optimizer.learning_rate) == pytest.approx(1e-3)
    model_lib.compile_model(ae, TrainingConfig(lr_schedule="cosine", nepochs=2),
                            steps_per_epoch=3)
    assert float(ae.optimizer.learning_rate) == pytest.approx(1e-3)  # step 0 of the cosine


def test_robust_nll_is_the_nll_near_the_fit_and_linear_far_from_it():
    import tensorflow as tf

    from ptycho import losses

    mean = 100.0
    lam, y = _counts(mean, shape=(4, 16, 16, 1), seed=2)
    lam = np.maximum(lam, 20.0)
    nll = get_loss("nll").make(mean, TrainingConfig())
    robust = get_loss("nll_huber").make(mean, TrainingConfig())
    d = losses.HUBER_DELTA
    norm = min(mean, d * np.sqrt(mean))  # the robust loss's dose normalisation
    # near the fit (|deviance residual| well under HUBER_DELTA) the two are the same function
    # (up to their constant normalisations)
    near = lam + np.sqrt(lam)  # deviance residuals of about 1
    assert float(robust(lam, near)) * norm == pytest.approx(float(nll(lam, near)) * mean,
                                                            rel=1e-3)
    # far from it the robust loss grows linearly in the residual, the NLL quadratically
    far = lam * 16.0
    y64, far64 = y.astype(np.float64), far.astype(np.float64)
    dev = 2 * (far64 - y64 + np.where(y64 > 0, y64 * np.log(np.maximum(y64, 1) / far64), 0))
    assert (dev > d * d).all()
    expected = np.mean(d * np.sqrt(dev) - d * d / 2) / norm
    assert float(robust(y, far)) == pytest.approx(expected, rel=1e-3)
    assert float(nll(y, far)) == pytest.approx(np.mean(dev / 2) / mean, rel=1e-3)
    assert float(nll(y, far)) * mean / (float(robust(y, far)) * norm) > 5
    # finite gradients at a perfect fit and at zero counts
    for target, pred in ((y, y + 0.0), (np.zeros_like(y), lam)):
        p = tf.Variable(np.maximum(pred, 1e-3))
        with tf.GradientTape() as tape:
            value = robust(tf.constant(target), p)
        assert np.isfinite(tape.gradient(value, p).numpy()).all()
    assert losses.HUBER_DELTA > 0


def test_curriculum_loss_is_the_mae_first_and_the_nll_at_the_end():
    from ptycho.losses import CURRICULUM

    lam, y = _counts(50.0)
    training = TrainingConfig()
    fn = get_loss("mae_nll").make(50.0, training)
    nll = float(get_loss("nll").make(50.0, training)(y, lam))
    mae = float(get_loss("mae").make(50.0, training)(np.sqrt(y), np.sqrt(lam)))
    assert float(fn(y, lam)) == pytest.approx(mae, rel=1e-5)  # before any set_progress
    fn.set_progress(CURRICULUM["start"])
    assert float(fn(y, lam)) == pytest.approx(mae, rel=1e-5)
    fn.set_progress((CURRICULUM["start"] + CURRICULUM["end"]) / 2)
    assert float(fn(y, lam)) == pytest.approx((mae + nll) / 2, rel=1e-5)
    fn.set_progress(1.0)
    assert float(fn(y, lam)) == pytest.approx(nll, rel=1e-5)


def test_training_moves_the_curriculum_each_epoch():
    """train() drives set_progress: after 4 of 4 epochs (progress 3/4 at the last epoch's
    start) the loss is the NLL alone; a loss without a schedule gets no extra callback."""
    from ptycho import train_pinn
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.simulation import simulate_unit

    cfg = ModelConfig(N=16, gridsize=1, n_filters_scale=1)
    train, _ = simulate_unit(cfg, 1e6, SimulationConfig(object_size=64, n_train=16, n_test=4))
    training = TrainingConfig(nphotons=1e6, nepochs=4, batch_size=8, loss="mae_nll")
    result = train_pinn.train(train, training=training, model_config=cfg)
    assert float(result.autoencoder.ptycho_loss_fn.nll_weight.numpy()) == 1.0
    assert train_pinn._loss_schedule(result.autoencoder, 4) != []
    plain = train_pinn.train(train, training=training.with_loss("nll").replace(nepochs=1),
                             model_config=cfg)
    assert train_pinn._loss_schedule(plain.autoencoder, 1) == []


def test_every_loss_keeps_its_size_across_doses():
    """A factor-2 misfit costs about the same at 1 and at 1e5 counts per pixel, for every
    loss: Adam's steps then do not depend on the dose (its epsilon, 1e-7, stays negligible)."""
    training = TrainingConfig(loss="weighted", nll_weight=1.0, mae_weight=0.5)
    for name in LOSS_NAMES:
        spec = LOSSES[name]
        excess = []
        for mean in (1.0, 1e5):
            lam, y = _counts(mean, shape=(4, 32, 32, 1), seed=1)
            fn = spec.make(mean, training)
            if hasattr(fn, "set_progress"):
                fn.set_progress(1.0)
            if spec.output == "amplitude":
                lam, y = np.sqrt(lam), np.sqrt(y)
            excess.append(float(fn(y, 2.0 * lam)) - float(fn(y, lam)))
        assert 0.2 < excess[0] / excess[1] < 5, (name, excess)


def test_at_low_dose_the_mae_prefers_no_object_and_the_likelihoods_the_truth():
    """Why the MAE arm collapses to an all-dark output at 1e2 photons (docs/quality.md, round
    8): a diffraction pattern is a few bright pixels and many faint ones; at low dose the faint
    ones count 0, where the amplitude error of the truth, sqrt(lam), exceeds that of a dark
    prediction, 0. The Poisson likelihoods are minimised by the mean at every dose."""
    rng = np.random.default_rng(3)
    lam = np.full((4, 32, 32, 1), 0.02, np.float32)  # faint pixels
    lam[:, 15:17, 15:17] = 10.0  # a bright centre: about 60 photons per pattern
    for dose_factor, mae_prefers_dark in ((1.0, True), (1e4, False)):
        mean = dose_factor * lam
        y = rng.poisson(mean).astype(np.float32)
        per_pixel = float(mean.mean())
        mae = get_loss("mae").make(per_pixel, TrainingConfig())
        at_truth = float(mae(np.sqrt(y), np.sqrt(mean)))
        dark = float(mae(np.sqrt(y), np.zeros_like(mean)))
        assert (dark < at_truth) == mae_prefers_dark, (dose_factor, dark, at_truth)
        for name in ("nll", "nll_huber"):
            nll = get_loss(name).make(per_pixel, TrainingConfig())
            at_truth = float(nll(y, mean))
            for s in (0.1, 0.5, 0.8, 1.25):
                assert at_truth < float(nll(y, s * s * mean)), (name, dose_factor, s)
