"""The PtychoPINN-style model, built only by explicit factories.

Importing this module imports TensorFlow but builds nothing: no Keras model, no layer, no
``tf.Variable``. Models come from

* :func:`build_models` -- from a :class:`~ptycho.config.ModelConfig` (the explicit API),
* :func:`create_model_with_gridsize` -- PtychoPINN's signature, other options from ``params.cfg``,
* :func:`create_compiled_model` -- the same, compiled with the configured losses.

The deprecated module-level singletons ``autoencoder``, ``diffraction_to_obj`` and
``autoencoder_no_nll`` are built on first attribute access (with a ``DeprecationWarning``) by
:func:`_build_module_level_models` from the ``params.cfg`` of that moment, and cached.

Model inputs: ``X`` ``(B, N, N, C)`` float32 measured amplitudes (sqrt of counts) and
``positions`` ``(B, 1, 2, C)`` float32 offsets of each pattern from its group's mean position
(``coords_relative``). Outputs of ``autoencoder``: ``object`` ``(B, N, N, 1)`` complex64 (the
reassembled object around the group centre), ``amplitude`` ``(B, N, N, C)`` float32 predicted
amplitudes in counts units, ``intensity`` ``(B, N, N, C)`` float32 predicted counts.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import NamedTuple

import keras
import numpy as np

from . import params
from .config import ModelConfig, TrainingConfig
from .custom_layers import (
    CombineComplex,
    DiffractLayer,
    ExtractPatchesPositionLayer,
    FirstChannel,
    IntensityScaler,
    ProbeIllumination,
    ReassemblePatchesLayer,
    SquareLayer,
    TotalVariationPenalty,
    TrimObjectLayer,
)
from .losses import OUTPUTS, get_loss

__all__ = [
    "PtychoModels",
    "build_models",
    "create_model_with_gridsize",
    "create_compiled_model",
    "compile_model",
    "learning_rate",
    "reset_weights",
    "default_intensity_scale",
    "unet_depth",
    "filter_counts",
]

#: Legacy singletons, filled on first access by :func:`_build_module_level_models`.
_lazy_cache: dict[str, keras.Model] = {}
_model_construction_done = False
_LEGACY_NAMES = ("autoencoder", "diffraction_to_obj", "autoencoder_no_nll")


class PtychoModels(NamedTuple):
    """The three views of one network (they share every layer and weight)."""

    autoencoder: keras.Model
    diffraction_to_obj: keras.Model
    autoencoder_no_nll: keras.Model


def unet_depth(N: int) -> int:
    """Pooling levels of the encoder: ``log2(N) - 3`` (1 for N=16 ... 5 for N=256), so the
    bottleneck is always ``8 x 8``."""
    return int(math.log2(N)) - 3


def filter_counts(N: int, n_filters_scale: int) -> list[int]:
    """Filters of the encoder levels: ``32 * scale * 2**k`` for ``k < unet_depth(N)``, capped
    at ``256 * scale``; the ``8 x 8`` bottleneck keeps the last level's count."""
    return [min(32 * n_filters_scale * 2**k, 256 * n_filters_scale)
            for k in range(unet_depth(N))]


def default_intensity_scale(probe: np.ndarray, nphotons: float) -> float:
    """Amplitude scale that gives ``nphotons`` expected counts for a unit-amplitude object:
    ``sqrt(nphotons / sum |probe|**2)`` (the diffraction is Parseval-normalised)."""
    power = float(np.sum(np.abs(np.asarray(probe)) ** 2))
    if not power > 0:
        raise ValueError("the probe carries no power (all zeros)")
    return math.sqrt(float(nphotons) / power)


def _conv(x, filters, name, activation):
    return keras.layers.Conv2D(filters, 3, padding="same", activation=activation, name=name)(x)


def _unet(x, cfg: ModelConfig):
    """U-Net on normalised amplitudes ``(B, N, N, C)`` -> ``(amplitude, phase)`` of the object
    region, each ``(B, N/2, N/2, C)`` (``pad_object``) or ``(B, N, N, C)``.

    Stem (``cfg.resolved_stem``): none, or ``"patchify"``: a 2x2 stride-2 convolution, after
    which the U-Net below runs on ``N/2 x N/2`` features and decodes to its full resolution,
    ``N/2``.
    Encoder: per level two 3x3 convolutions and a 2x2 max-pool down to ``8 x 8``; bottleneck:
    two 3x3 convolutions. Decoder, per level: a 1x1 convolution (channel reduction at the low
    resolution, where it is cheap), 2x upsampling, concatenation with the encoder's features at
    that resolution, one 3x3 convolution. Shared by the amplitude head (``amp_activation``) and
    the phase head (``pi * tanh``), each a 3x3 convolution to C channels, their kernels
    initialised by ``cfg.head_init``. Every hidden convolution uses ``cfg.activation``.
    """
    act = cfg.activation  # hidden layers; the heads have their own
    patchify = cfg.resolved_stem == "patchify"
    side = cfg.N // 2 if patchify else cfg.N
    filters = filter_counts(side, cfg.n_filters_scale)
    if patchify:
        x = keras.layers.Conv2D(filters[0], 2, strides=2, activation=act, name="stem")(x)
    depth = len(filters)
    skips = []
    for k in range(depth):
        x = _conv(x, filters[k], f"enc{k}_a", act)
        x = _conv(x, filters[k], f"enc{k}_b", act)
        skips.append(x)  # resolution side / 2**k
        x = keras.layers.MaxPooling2D(2, name=f"pool{k}")(x)
    x = _conv(x, filters[-1], "bottleneck_a", act)
    x = _conv(x, filters[-1], "bottleneck_b", act)  # resolution 8
    # decode to N/2 (padded to N later), or to N; a patchify stem's side is already N/2
    last = 1 if cfg.pad_object and side == cfg.N else 0
    for k in range(depth - 1, last - 1, -1):
        x = keras.layers.Conv2D(filters[k], 1, activation=act, name=f"reduce{k}")(x)
        x = keras.layers.UpSampling2D(2, name=f"up{k}")(x)
        x = keras.layers.Concatenate(name=f"skip{k}")([x, skips[k]])
        x = _conv(x, filters[k], f"dec{k}", act)
    C = cfg.C
    amp = keras.layers.Conv2D(C, 3, padding="same", activation=cfg.amp_activation,
                              kernel_initializer=cfg.head_init, name="amp_head")(x)
    phase = keras.layers.Conv2D(C, 3, padding="same", activation="tanh",
                                kernel_initializer=cfg.head_init, name="phase_head")(x)
    phase = keras.layers.Rescaling(math.pi, name="phase_scale")(phase)
    return amp, phase


def _resolve_probe(N: int, probe, cfg_probe, model_cfg: ModelConfig) -> np.ndarray:
    """Probe from the argument, else ``params.cfg['probe']`` when it is ``N x N``, else the
    default probe for ``N``. Returns ``(N, N)`` complex64."""
    if probe is not None:
        arr = np.squeeze(np.asarray(probe, dtype=np.complex64))
        if arr.shape != (N, N):
            raise ValueError(f"probe must be ({N}, {N}) for N={N}; got shape {arr.shape}")
        return arr
    if cfg_probe is not None:
        arr = np.squeeze(np.asarray(cfg_probe, dtype=np.complex64))
        if arr.shape == (N, N):
            return arr
    from .probe import probe_for

    return probe_for(model_cfg)


def build_models(model_cfg: ModelConfig, probe=None, intensity_scale: float | None = None,
                 nphotons: float | None = None) -> PtychoModels:
    """Build the network for ``model_cfg``; reads no global state.

    Args:
        model_cfg: sizes and options.
        probe: ``(N, N)`` complex probe; default :func:`ptycho.probe.get_default_probe`.
        intensity_scale: initial amplitude scale (counts amplitude per unit amplitude); default
            :func:`default_intensity_scale` of the probe at ``nphotons`` (default 1e9).
    """
    N, C = model_cfg.N, model_cfg.C
    probe_arr = _resolve_probe(N, probe, None, model_cfg)
    if intensity_scale is None:
        intensity_scale = default_intensity_scale(probe_arr, 1e9 if nphotons is None else nphotons)
    x_in = keras.Input((N, N, C), name="X", dtype="float32")
    pos_in = keras.Input((1, 2, C), name="positions", dtype="float32")
    scaler = IntensityScaler(intensity_scale, model_cfg.intensity_scale_trainable,
                             name="intensity_scaler")
    x = scaler(x_in, inverse=True)
    amp, phase = _unet(x, model_cfg)
    if model_cfg.pad_object:
        pad = keras.layers.ZeroPadding2D(N // 4)
        amp, phase = pad(amp), pad(phase)
    patches = CombineComplex(name="object_patches")([amp, phase])  # (B, N, N, C)
    if C > 1 and model_cfg.object_big:
        canvas = ReassemblePatchesLayer(N, model_cfg.gridsize, model_cfg.padded_size,
                                        model_cfg.pad_object, model_cfg.use_xla,
                                        name="reassemble")([patches, pos_in])
        obj = TrimObjectLayer(N, model_cfg.gridsize, name="trim_object")(canvas)
        patches = ExtractPatchesPositionLayer(N, model_cfg.gridsize, model_cfg.use_xla,
                                              name="extract_patches")([canvas, pos_in])
    elif C > 1:
        obj = FirstChannel(name="first_patch")(patches)
    else:
        obj = patches
    obj = TotalVariationPenalty(0.0, name="object")(obj)
    illuminated = ProbeIllumination(probe_arr, N, model_cfg.probe_trainable,
                                    model_cfg.probe_mask, name="probe_illumination")(patches)
    amp_unit = DiffractLayer(name="diffract")(illuminated)
    amp_counts = scaler(amp_unit)
    amp_counts = keras.layers.Identity(name="amplitude")(amp_counts)
    intensity = SquareLayer(name="intensity")(amp_counts)
    autoencoder = keras.Model([x_in, pos_in], [obj, amp_counts, intensity], name="autoencoder")
    diffraction_to_obj = keras.Model([x_in, pos_in], obj, name="diffraction_to_obj")
    autoencoder_no_nll = keras.Model([x_in, pos_in], [obj, amp_counts],
                                     name="autoencoder_no_nll")
    for m in (autoencoder, diffraction_to_obj, autoencoder_no_nll):
        m.ptycho_config = model_cfg
    return PtychoModels(autoencoder, diffraction_to_obj, autoencoder_no_nll)


def _snapshot_cfg() -> dict:
    return {k: (v if k == "probe" else copy.deepcopy(v)) for k, v in params.cfg.items()}


def _restore_cfg(snapshot: dict) -> None:
    params.cfg.clear()
    params.cfg.update(snapshot)


def create_model_with_gridsize(gridsize: int, N: int, **overrides):
    """Build ``(autoencoder, diffraction_to_obj)`` for ``gridsize`` and ``N``.

    Options not given as ``overrides`` (any :class:`ModelConfig` field, plus ``probe``,
    ``intensity_scale`` and ``nphotons``) come from ``params.cfg``, which is left exactly as it
    was, also when this raises. The probe is the ``probe`` override, else ``params.cfg['probe']``
    when it is ``N x N``, else the default probe for ``N``.
    """
    snapshot = _snapshot_cfg()
    try:
        probe = overrides.pop("probe", None)
        intensity_scale = overrides.pop("intensity_scale", None)
        nphotons = overrides.pop("nphotons", params.cfg.get("nphotons", 1e9))
        model_cfg = params.model_config_from_cfg(N=N, gridsize=gridsize, **overrides)
        probe = _resolve_probe(N, probe, params.cfg.get("probe"), model_cfg)
        if intensity_scale is None:
            intensity_scale = params.cfg.get("intensity_scale")
        models = build_models(model_cfg, probe, intensity_scale, nphotons)
        return models.autoencoder, models.diffraction_to_obj
    finally:
        _restore_cfg(snapshot)


def _needs_steps(training: TrainingConfig) -> bool:
    """Whether the learning rate is a schedule laid out over the training steps."""
    return training.lr_schedule != "constant" or bool(training.warmup_epochs)


def learning_rate(training: TrainingConfig, steps_per_epoch: int | None = None):
    """Adam's learning rate for ``training``: the float ``learning_rate`` (``"constant"``, no
    warm-up) or a Keras schedule over ``nepochs * steps_per_epoch`` steps (``"cosine"``: decay
    to 1 %; ``warmup_epochs``: linear ramp from 0 first)."""
    if not _needs_steps(training):
        return training.learning_rate
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"lr_schedule={training.lr_schedule!r} with warmup_epochs="
                         f"{training.warmup_epochs} needs steps_per_epoch >= 1")
    warmup = training.warmup_epochs * steps_per_epoch
    total = training.nepochs * steps_per_epoch
    if training.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else training.learning_rate, total - warmup, alpha=0.01,
            warmup_target=training.learning_rate if warmup else None, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(  # constant after a linear warm-up
        0.0, 1, alpha=1.0, warmup_target=training.learning_rate, warmup_steps=warmup)


def compile_model(autoencoder: keras.Model, training: TrainingConfig,
                  jit_compile: bool | None = None,
                  steps_per_epoch: int | None = None) -> keras.Model:
    """(Re)compile ``autoencoder`` with a fresh Adam optimiser, the data loss
    ``training.loss`` from :data:`ptycho.losses.LOSSES` on its output, and the total-variation
    penalties (``realspace_weight`` on the amplitude, ``complex_tv_weight`` on the complex
    object). ``jit_compile`` defaults to the model's ``use_xla``;
    ``steps_per_epoch`` lays out learning-rate schedules (:func:`learning_rate`); without it a
    schedule falls back to the constant ``learning_rate`` with a ``UserWarning``."""
    model_cfg: ModelConfig | None = getattr(autoencoder, "ptycho_config", None)
    if jit_compile is None:
        jit_compile = bool(model_cfg.use_xla) if model_cfg is not None else False
    N = model_cfg.N if model_cfg is not None else int(autoencoder.inputs[0].shape[1])
    data_loss = get_loss(training.loss)
    fn = data_loss.make(training.nphotons / N**2, training)
    # One entry per output (object, amplitude, intensity); None = no loss on that output.
    losses = [None] + [fn if data_loss.output == out else None for out in OUTPUTS]
    weights = [0.0] + [1.0 if data_loss.output == out else 0.0 for out in OUTPUTS]
    penalty = autoencoder.get_layer("object")
    penalty.weight.assign(training.realspace_weight)
    penalty.complex_weight.assign(training.complex_tv_weight)
    if steps_per_epoch is None and _needs_steps(training):
        # Compiled for the caller's own fit: the number of steps is unknown, so the schedule
        # cannot be laid out; train() always passes it.
        warnings.warn(f"compile_model: lr_schedule={training.lr_schedule!r} needs "
                      "steps_per_epoch; using the constant learning_rate "
                      f"{training.learning_rate}", UserWarning, stacklevel=2)
        training_lr = training.learning_rate
    else:
        training_lr = learning_rate(training, steps_per_epoch)
    autoencoder.compile(optimizer=keras.optimizers.Adam(training_lr),
                        loss=losses, loss_weights=weights, jit_compile=bool(jit_compile))
    autoencoder.ptycho_training = training
    autoencoder.ptycho_loss_fn = fn  # train() moves a curriculum loss (set_progress)
    return autoencoder


def create_compiled_model(gridsize: int | None = None, N: int | None = None,
                          training: TrainingConfig | None = None, **overrides):
    """:func:`create_model_with_gridsize` then :func:`compile_model`.

    ``gridsize``/``N`` default to ``params.cfg``; ``training`` defaults to the training options
    of ``params.cfg``. ``jit_compile`` follows ``use_xla`` (``params.cfg['use_xla_translate']``
    unless overridden). Returns ``(autoencoder, diffraction_to_obj)``.
    """
    gridsize = params.cfg["gridsize"] if gridsize is None else gridsize
    N = params.cfg["N"] if N is None else N
    if training is None:
        training = params.training_config_from_cfg()
    overrides.setdefault("nphotons", training.nphotons)
    autoencoder, diffraction_to_obj = create_model_with_gridsize(gridsize, N, **overrides)
    compile_model(autoencoder, training)
    return autoencoder, diffraction_to_obj


def _initializer_with_seed(initializer, seed: int):
    config = dict(initializer.get_config())
    if "seed" in config:
        config["seed"] = seed
    return type(initializer).from_config(config)


def reset_weights(model: keras.Model, seed: int) -> None:
    """Re-initialise every weight of ``model`` in place, deterministically for ``seed``:
    convolution kernels from their initialisers, biases to zero, the probe and the intensity
    scale to their initial values. Lets one built model serve several arms (loss, seed)
    without rebuilding or retracing. Unknown weighted layers raise ``TypeError``."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            init = _initializer_with_seed(layer.kernel_initializer, seed * 100_003 + i)
            layer.kernel.assign(init(layer.kernel.shape, layer.kernel.dtype))
            if layer.bias is not None:
                layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
        elif isinstance(layer, ProbeIllumination):
            layer.reset_probe()
        elif isinstance(layer, IntensityScaler):
            layer.reset_scale()
        elif isinstance(layer, TotalVariationPenalty):
            pass
        elif layer.weights:
            raise TypeError(f"reset_weights does not know how to reset layer {layer.name!r} "
                            f"({type(layer).__name__})")


def _build_module_level_models() -> None:
    """Build the deprecated singletons once from the current ``params.cfg``."""
    global _model_construction_done
    if _model_construction_done:
        return
    model_cfg = params.model_config_from_cfg()
    training = params.training_config_from_cfg()
    probe = _resolve_probe(model_cfg.N, None, params.cfg.get("probe"), model_cfg)
    models = build_models(model_cfg, probe, params.cfg.get("intensity_scale"), training.nphotons)
    compile_model(models.autoencoder, training)
    _lazy_cache.update(models._asdict())
    _model_construction_done = True


def __getattr__(name: str):
    if name in _LEGACY_NAMES:
        warnings.warn(
            f"ptycho.model.{name} is deprecated: build models explicitly with "
            "create_model_with_gridsize(gridsize, N) or create_compiled_model()",
            DeprecationWarning, stacklevel=2)
        if not _model_construction_done:
            _build_module_level_models()
        return _lazy_cache[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
