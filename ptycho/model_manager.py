"""Saving and loading trained models with their configuration.

A saved model is a directory: ``autoencoder.keras`` (Keras archive: architecture, weights; the
custom layers carry ``N``, ``gridsize``, ``padded_size`` and the probe in their configs) and
``config.json`` (the :class:`ModelConfig`, the :class:`TrainingConfig` if known, the intensity
scale and versions). Loading needs no ``params.cfg``; it changes ``params.cfg`` only when asked
to restore the legacy view (``restore_params=True``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from . import __version__, params
from .config import ModelConfig, TrainingConfig
from .custom_layers import CUSTOM_OBJECTS

__all__ = ["SavedModel", "save_model", "load_model"]

MODEL_FILE = "autoencoder.keras"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass
class SavedModel:
    """A loaded model: the autoencoder, its object-only view and their configuration."""

    autoencoder: keras.Model
    diffraction_to_obj: keras.Model
    model_config: ModelConfig
    training_config: TrainingConfig | None
    intensity_scale: float


def save_model(directory: str | Path, autoencoder: keras.Model,
               training: TrainingConfig | None = None) -> Path:
    """Save ``autoencoder`` (built by :mod:`ptycho.model`) into ``directory``; returns it.
    Both files are written to temporary names and renamed, so a reader never sees half a save."""
    model_cfg: ModelConfig | None = getattr(autoencoder, "ptycho_config", None)
    if model_cfg is None:
        raise ValueError("autoencoder has no ptycho_config: build it with ptycho.model")
    training = training or getattr(autoencoder, "ptycho_training", None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scale = math.exp(float(autoencoder.get_layer("intensity_scaler").log_scale.numpy()))
    meta = {
        "format_version": FORMAT_VERSION,
        "ptycho_version": __version__,
        "keras_version": keras.__version__,
        "model": model_cfg.to_dict(),
        "training": None if training is None else training.to_dict(),
        "intensity_scale": scale,
    }
    fd, tmp_model = tempfile.mkstemp(suffix=".keras", dir=directory)
    os.close(fd)
    try:
        autoencoder.save(tmp_model)
        os.replace(tmp_model, directory / MODEL_FILE)
    finally:
        if os.path.exists(tmp_model):
            os.unlink(tmp_model)
    fd, tmp_cfg = tempfile.mkstemp(suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(tmp_cfg, directory / CONFIG_FILE)
    return directory


def load_model(directory: str | Path, restore_params: bool = False) -> SavedModel:
    """Load a model saved by :func:`save_model`, with its own ``N`` and ``gridsize``.

    ``restore_params=True`` also writes the model's options into the legacy ``params.cfg``
    (``N``, ``gridsize``, ``offset``, ... and ``intensity_scale``); otherwise ``params.cfg`` is
    left untouched.
    """
    directory = Path(directory)
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: not a saved ptycho model directory")
    meta = json.loads(cfg_path.read_text())
    model_cfg = ModelConfig.from_saved_dict(meta["model"])
    training = (None if meta.get("training") is None
                else TrainingConfig.from_saved_dict(meta["training"]))
    autoencoder = keras.saving.load_model(directory / MODEL_FILE, custom_objects=CUSTOM_OBJECTS,
                                          compile=False)
    autoencoder.ptycho_config = model_cfg
    if training is not None:
        autoencoder.ptycho_training = training
    diffraction_to_obj = keras.Model(autoencoder.inputs, autoencoder.outputs[0],
                                     name="diffraction_to_obj")
    diffraction_to_obj.ptycho_config = model_cfg
    if restore_params:
        legacy = params.legacy_values(model_cfg, params.MODEL_KEYS)
        legacy["intensity_scale"] = meta["intensity_scale"]
        params.cfg.update(legacy)
    return SavedModel(autoencoder, diffraction_to_obj, model_cfg, training,
                      float(meta["intensity_scale"]))
