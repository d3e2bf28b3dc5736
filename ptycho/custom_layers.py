"""Keras layers wrapping the physics of :mod:`ptycho.tf_helper`.

Every size (``N``, ``gridsize``, ``padded_size``) is a constructor argument stored in
``get_config``; no layer reads ``params.cfg`` at call time, so models for different ``N`` coexist
in one process and survive ``keras.models.load_model``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from . import tf_helper as hh

__all__ = [
    "CombineComplex",
    "ReassemblePatchesLayer",
    "ExtractPatchesPositionLayer",
    "TrimObjectLayer",
    "ProbeIllumination",
    "DiffractLayer",
    "IntensityScaler",
    "SquareLayer",
    "FirstChannel",
    "TotalVariationPenalty",
    "CUSTOM_OBJECTS",
]

_PKG = "ptycho"


@keras.saving.register_keras_serializable(package=_PKG)
class CombineComplex(keras.layers.Layer):
    """``[amplitude, phase]`` float32 ``(B, H, W, K)`` -> complex64 ``amplitude * exp(i phase)``."""

    def call(self, inputs):
        amplitude, phase = inputs
        return hh.combine_complex(amplitude, phase)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, dtype="complex64")


class _SizedLayer(keras.layers.Layer):
    """Base for layers configured by ``N`` and ``gridsize``."""

    def __init__(self, N, gridsize=1, use_xla=False, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.gridsize = int(gridsize)
        self.use_xla = bool(use_xla)

    @property
    def C(self):
        return self.gridsize**2

    def get_config(self):
        return {**super().get_config(), "N": self.N, "gridsize": self.gridsize,
                "use_xla": self.use_xla}


@keras.saving.register_keras_serializable(package=_PKG)
class ReassemblePatchesLayer(_SizedLayer):
    """``[patches (B, N, N, C) complex64, offsets (B, 1, 2, C)]`` -> canvas ``(B, M, M, 1)``
    complex64 with ``M = padded_size``: the C patches averaged at their offsets."""

    def __init__(self, N, gridsize, padded_size, pad_object=True, use_xla=False, **kwargs):
        super().__init__(N, gridsize, use_xla, **kwargs)
        if int(padded_size) < self.N:
            raise ValueError(f"padded_size={padded_size} must be >= N={self.N}")
        self.padded_size = int(padded_size)
        self.pad_object = bool(pad_object)

    def call(self, inputs):
        patches, offsets = inputs
        return hh.reassemble_patches(patches, offsets, self.padded_size, self.pad_object,
                                     use_xla=self.use_xla)

    def compute_output_spec(self, inputs):
        b = inputs[0].shape[0]
        return keras.KerasTensor((b, self.padded_size, self.padded_size, 1), dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "padded_size": self.padded_size,
                "pad_object": self.pad_object}


@keras.saving.register_keras_serializable(package=_PKG)
class ExtractPatchesPositionLayer(_SizedLayer):
    """``[canvas (B, M, M, 1), offsets (B, 1, 2, C)]`` -> patches ``(B, N, N, C)``."""

    def call(self, inputs):
        canvas, offsets = inputs
        return hh.extract_patches_position(canvas, offsets, self.N, use_xla=self.use_xla)

    def compute_output_spec(self, inputs):
        canvas = inputs[0]
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, self.C), dtype=canvas.dtype)


@keras.saving.register_keras_serializable(package=_PKG)
class TrimObjectLayer(_SizedLayer):
    """Canvas ``(B, M, M, K)`` -> its centred ``(B, N, N, K)`` window."""

    def call(self, canvas):
        return hh.crop_center(canvas, self.N)

    def compute_output_spec(self, canvas):
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, canvas.shape[-1]),
                                 dtype=canvas.dtype)


def _probe_to_config(probe):
    arr = np.asarray(probe, dtype=np.complex64)
    return {"real": arr.real.tolist(), "imag": arr.imag.tolist()}


def _probe_from_config(value):
    if isinstance(value, dict):
        return np.asarray(value["real"], np.float32) + 1j * np.asarray(value["imag"], np.float32)
    return np.asarray(value, dtype=np.complex64)


@keras.saving.register_keras_serializable(package=_PKG)
class ProbeIllumination(keras.layers.Layer):
    """Multiply object patches ``(B, N, N, C)`` complex64 by the probe ``(N, N)``.

    Args:
        initial_probe: ``(N, N)`` complex array or tensor (also ``(N, N, 1)``).
        N: patch side; must match the probe.
        trainable_probe: learn the probe (stored as real and imaginary float32 weights).
        mask: keep the probe inside the disc of radius N/4 (its support) while learning.
    """

    def __init__(self, initial_probe, N, trainable_probe=False, mask=True, **kwargs):
        super().__init__(**kwargs)
        probe = _probe_from_config(initial_probe) if isinstance(initial_probe, dict) else \
            np.asarray(initial_probe, dtype=np.complex64)
        probe = np.squeeze(probe)
        self.N = int(N)
        if probe.shape != (self.N, self.N):
            raise ValueError(f"initial_probe must be ({self.N}, {self.N}) for N={self.N}; "
                             f"got shape {probe.shape}")
        self.initial_probe = probe
        self.trainable_probe = bool(trainable_probe)
        self.mask = bool(mask)
        from .probe import get_probe_mask

        self._probe_mask = get_probe_mask(self.N) if self.mask else \
            np.ones((self.N, self.N), np.float32)

    def build(self, input_shape):
        self.probe_real = self.add_weight(
            name="probe_real", shape=(self.N, self.N),
            initializer=keras.initializers.Constant(self.initial_probe.real),
            trainable=self.trainable_probe)
        self.probe_imag = self.add_weight(
            name="probe_imag", shape=(self.N, self.N),
            initializer=keras.initializers.Constant(self.initial_probe.imag),
            trainable=self.trainable_probe)

    def probe(self):
        """The current probe ``(N, N)`` complex64 (masked when ``mask``)."""
        m = tf.constant(self._probe_mask)
        return tf.complex(self.probe_real * m, self.probe_imag * m)

    def reset_probe(self):
        """Restore the initial probe."""
        self.probe_real.assign(self.initial_probe.real)
        self.probe_imag.assign(self.initial_probe.imag)

    def call(self, patches):
        return patches * self.probe()[None, :, :, None]

    def compute_output_spec(self, patches):
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "initial_probe": _probe_to_config(self.initial_probe),
                "N": self.N, "trainable_probe": self.trainable_probe, "mask": self.mask}


@keras.saving.register_keras_serializable(package=_PKG)
class DiffractLayer(keras.layers.Layer):
    """Exit waves ``(B, N, N, C)`` complex64 -> far-field amplitudes ``(B, N, N, C)`` float32
    (:func:`ptycho.tf_helper.diffract`, unit scale: Parseval-preserving)."""

    def call(self, exit_waves):
        return hh.diffract(exit_waves)

    def compute_output_spec(self, exit_waves):
        return keras.KerasTensor(exit_waves.shape, dtype="float32")


@keras.saving.register_keras_serializable(package=_PKG)
class IntensityScaler(keras.layers.Layer):
    """Scales amplitudes by ``exp(log_scale)``; ``inverse=True`` divides (normalises inputs).

    One instance is called twice in a model so the input normalisation and the output scale
    share a single (optionally trainable) variable, as in PtychoPINN.

    Args:
        intensity_scale: initial amplitude scale ``s`` (counts amplitude per unit amplitude), > 0.
        trainable_scale: learn ``log s``.
    """

    def __init__(self, intensity_scale=1.0, trainable_scale=True, **kwargs):
        super().__init__(**kwargs)
        if not (intensity_scale > 0 and math.isfinite(intensity_scale)):
            raise ValueError(f"intensity_scale must be finite and > 0; got {intensity_scale}")
        self.intensity_scale = float(intensity_scale)
        self.trainable_scale = bool(trainable_scale)

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(),
            initializer=keras.initializers.Constant(math.log(self.intensity_scale)),
            trainable=self.trainable_scale)

    def reset_scale(self, intensity_scale=None):
        """Restore (or set) the scale."""
        if intensity_scale is not None:
            self.intensity_scale = float(intensity_scale)
        self.log_scale.assign(math.log(self.intensity_scale))

    def set_scale(self, intensity_scale):
        """Set the current scale, keeping the initial one :meth:`reset_scale` restores (a fit
        to part of the photons: ``ptycho.train_pinn.train`` with ``holdout``)."""
        self.log_scale.assign(math.log(float(intensity_scale)))

    def call(self, x, inverse=False):
        s = tf.exp(self.log_scale)
        return x / s if inverse else x * s

    def get_config(self):
        return {**super().get_config(), "intensity_scale": self.intensity_scale,
                "trainable_scale": self.trainable_scale}


@keras.saving.register_keras_serializable(package=_PKG)
class FirstChannel(keras.layers.Layer):
    """``(B, H, W, C)`` -> ``(B, H, W, 1)``: channel 0 (the object output when the C patches
    are not reassembled)."""

    def call(self, x):
        return x[..., :1]

    def compute_output_spec(self, x):
        return keras.KerasTensor(tuple(x.shape[:-1]) + (1,), dtype=x.dtype)


@keras.saving.register_keras_serializable(package=_PKG)
class SquareLayer(keras.layers.Layer):
    """Amplitudes -> intensities (counts): ``x**2``."""

    def call(self, x):
        return tf.square(x)


@keras.saving.register_keras_serializable(package=_PKG)
class TotalVariationPenalty(keras.layers.Layer):
    """Identity on the object ``(B, N, N, K)`` complex64 that adds the real-space terms to the
    model's losses: ``weight * TV(|object|) + complex_weight * TV(object)``.

    ``TV`` is the mean modulus of the differences between vertical and between horizontal
    neighbours (summed over the two directions). On the amplitude it smooths the amplitude
    alone; on the complex object a step of amplitude ``da`` and phase ``dphi`` costs about
    ``sqrt(da**2 + (a dphi)**2)``, so it smooths amplitude and phase together. The complex
    modulus is smoothed by :attr:`EPS` so its gradient stays finite where neighbours are equal
    (a constant object, as zero-initialised heads give).

    Both weights are non-trainable variables so a compiled model can change them without
    rebuilding.
    """

    #: Added inside the complex modulus's square root: ``sqrt(|d|**2 + EPS**2)``.
    EPS = 1e-6

    def __init__(self, weight=0.0, complex_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_weight = float(weight)
        self.initial_complex_weight = float(complex_weight)

    def build(self, input_shape):
        self.weight = self.add_weight(name="tv_weight", shape=(),
                                      initializer=keras.initializers.Constant(self.initial_weight),
                                      trainable=False)
        self.complex_weight = self.add_weight(
            name="complex_tv_weight", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.initial_complex_weight))

    @staticmethod
    def amplitude_tv(obj):
        """``TV(|obj|)`` of a complex ``(B, N, N, K)`` batch: a float32 scalar."""
        amp = tf.abs(obj)
        return tf.reduce_mean(tf.abs(amp[:, 1:] - amp[:, :-1])) + \
            tf.reduce_mean(tf.abs(amp[:, :, 1:] - amp[:, :, :-1]))

    @classmethod
    def complex_tv(cls, obj):
        """``TV(obj)`` of a complex ``(B, N, N, K)`` batch (smoothed modulus): a float32 scalar."""
        def mean_modulus(d):
            return tf.reduce_mean(tf.sqrt(tf.square(tf.math.real(d)) + tf.square(tf.math.imag(d))
                                          + cls.EPS ** 2))
        return mean_modulus(obj[:, 1:] - obj[:, :-1]) + mean_modulus(obj[:, :, 1:] - obj[:, :, :-1])

    def call(self, obj):
        self.add_loss(self.weight * self.amplitude_tv(obj)
                      + self.complex_weight * self.complex_tv(obj))
        return obj

    def compute_output_spec(self, obj):
        return keras.KerasTensor(obj.shape, dtype=obj.dtype)

    def get_config(self):
        return {**super().get_config(), "weight": self.initial_weight,
                "complex_weight": self.initial_complex_weight}


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (
    CombineComplex, ReassemblePatchesLayer, ExtractPatchesPositionLayer, TrimObjectLayer,
    ProbeIllumination, DiffractLayer, IntensityScaler, SquareLayer, FirstChannel,
    TotalVariationPenalty)}
