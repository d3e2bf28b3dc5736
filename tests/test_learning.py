"""The model learns: a short in-situ training on a tiny problem beats the constant image.

This is the test that fails if a change stops the network from learning (a broken loss, a
wrong sign in the physics, a dead output head); the benchmark `benchmarks/quality.py` measures
how well it learns at the study's sizes.
"""

import pytest

from experiments.dose_response import score
from ptycho import train_pinn
from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig
from ptycho.simulation import simulate_unit


@pytest.mark.parametrize("loss, nepochs, margin", [("nll", 100, 0.25), ("mae", 100, 0.25),
                                                  ("nll_huber", 100, 0.25)])
def test_tiny_in_situ_reconstruction_beats_the_constant_image(loss, nepochs, margin):
    model_cfg = ModelConfig(N=16, gridsize=2, n_filters_scale=1)
    train, _ = simulate_unit(model_cfg, 1e9, SimulationConfig(object_size=64, n_train=64,
                                                              n_test=4, scan="grid"))
    training = TrainingConfig(nphotons=1e9, nepochs=nepochs, batch_size=16, loss=loss,
                              lr_schedule="cosine")
    result = train_pinn.train(train, training=training, model_config=model_cfg)
    metrics, _ = score(result.autoencoder, train)
    assert metrics["amp_norm_ssim"] > metrics["amp_norm_ssim_baseline"] + margin, metrics
    assert metrics["phase_plane_ssim"] > metrics["phase_plane_ssim_baseline"] + 0.1, metrics
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]


def test_tiny_in_situ_reconstruction_through_the_patchify_stem_beats_the_constant_image():
    """The stem the default network uses from N = 128 (model.stem = "patchify"), at the
    smallest N it allows: its U-Net runs at N/2 = 16 and must still learn the object."""
    model_cfg = ModelConfig(N=32, gridsize=2, n_filters_scale=1, stem="patchify")
    train, _ = simulate_unit(model_cfg, 1e9, SimulationConfig(object_size=128, n_train=64,
                                                              n_test=4, scan="grid"))
    training = TrainingConfig(nphotons=1e9, nepochs=100, batch_size=16, loss="nll_huber",
                              lr_schedule="cosine")
    result = train_pinn.train(train, training=training, model_config=model_cfg)
    assert result.autoencoder.get_layer("stem").strides == (2, 2)
    metrics, _ = score(result.autoencoder, train)
    assert metrics["amp_norm_ssim"] > metrics["amp_norm_ssim_baseline"] + 0.25, metrics
    assert metrics["phase_plane_ssim"] > metrics["phase_plane_ssim_baseline"] + 0.1, metrics
