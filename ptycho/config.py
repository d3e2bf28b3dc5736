"""Typed, validated configuration of the model core. Imports no TensorFlow.

Three frozen dataclasses hold everything a run needs:

* :class:`ModelConfig` -- the network and its physics layers (patch size ``N``, ``gridsize``, ...).
* :class:`TrainingConfig` -- dose ``nphotons`` (expected photons per diffraction pattern), epochs,
  batch size, loss weights, learning rate and seed.
* :class:`SimulationConfig` -- the synthetic object, scan and number of patterns.

Each validates itself on construction and raises :class:`ConfigError` (a ``ValueError``) whose
message names the class, the field, the offending value and what is allowed. ``to_dict`` /
``from_dict`` round-trip through plain JSON/TOML-compatible dictionaries; ``from_dict`` rejects
unknown keys.

Glossary used across ``ptycho/``: ``N`` patch side in pixels; ``C = gridsize**2`` patterns per
sample; images are ``(B, N, N, C)``; positions are ``(B, 1, 2, C)`` in pixels, ordered
``(row, col)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config_base import (
    ConfigError,
    _check_bool,
    _check_choice,
    _check_float,
    _check_int,
    _ConfigBase,
    _fail,
    added_option,
)
from .losses import LOSS_NAMES

__all__ = [
    "ConfigError",
    "ModelConfig",
    "TrainingConfig",
    "SimulationConfig",
    "SUPPORTED_N",
    "LOSS_PRESETS",
]

SUPPORTED_N = (16, 32, 64, 128, 256)
#: The default probe's defocus: the pupil's quadratic phase at the aperture edge, radians (a
#: quarter wave, Rayleigh's tolerance: "mild"). ``ModelConfig.probe_defocus`` changes it.
DEFAULT_PROBE_DEFOCUS = math.pi / 2
AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
#: ``ModelConfig.activation``: the U-Net's hidden activation (Keras names).
ACTIVATIONS = ("relu", "leaky_relu")
#: Kernel initialisers of the two output heads (``ModelConfig.head_init``).
HEAD_INITS = ("glorot_uniform", "zeros")
#: ``ModelConfig.stem``: what the U-Net does to the patterns first (``ptycho.model._unet``).
STEMS = ("auto", "none", "patchify")
#: ``ModelConfig.stem = "auto"`` is ``"patchify"`` from this ``N`` up (docs/quality.md, round 9).
PATCHIFY_FROM_N = 128
OBJECT_KINDS = ("lines", "grf")
SCAN_KINDS = ("random", "grid")
LR_SCHEDULES = ("constant", "cosine")
RECONSTRUCT_MODES = ("same", "new")
#: ``SimulationConfig.feature_scale = "auto"`` is ``max(1, N / FEATURE_REFERENCE_N)``: the
#: object's default lengths (1 px lines, 8 px apart) are those seen by a patch of this many
#: pixels.
FEATURE_REFERENCE_N = 32
#: What a sweep arm's ``loss = NAME`` sets in :class:`TrainingConfig`: every loss of the
#: registry :data:`ptycho.losses.LOSSES`; ``nll`` and ``mae`` also set the legacy weights.
_LEGACY_WEIGHTS = {"nll": {"nll_weight": 1.0, "mae_weight": 0.0},
                   "mae": {"nll_weight": 0.0, "mae_weight": 1.0}}
LOSS_PRESETS: dict[str, dict] = {name: {"loss": name, **_LEGACY_WEIGHTS.get(name, {})}
                                 for name in LOSS_NAMES}


@dataclass(frozen=True)
class ModelConfig(_ConfigBase):
    """The network and its physics layers.

    Attributes:
        N: patch and diffraction-pattern side in pixels; a power of two from 16 to 256.
        gridsize: neighbouring scan positions per sample along each axis; ``C = gridsize**2``.
        n_filters_scale: multiplies the U-Net filter counts (32, 64, 128, ... per level).
        offset: nominal spacing in pixels between neighbours of one group.
        max_position_jitter: extra canvas margin in pixels for positions off the nominal grid.
        object_big: reassemble the object from the C patches by position (only used when
            gridsize > 1); False treats the C patches independently.
        pad_object: the decoder predicts the central ``N/2 x N/2`` object region and zero pads it
            to ``N`` (2x oversampled diffraction); False predicts the full ``N x N`` patch.
        probe_scale: the ``default_probe_scale`` of the default probe: the radius of the probe's
            Fourier-space aperture is ``1.22 / probe_scale`` pixels of the ``N x N`` frequency
            grid, so the in-focus probe's first dark ring has radius ``probe_scale * N / 2``
            real-space pixels; larger = wider probe. At the default 0.5 that ring is the mask
            radius N/4, so the masked probe falls smoothly to zero at its support's edge (no
            hard edge: see docs/quality.md; 0.7, PtychoPINN-like, puts it at 0.35 N).
        probe_mask: multiply the probe by the disc of radius N/4 (its support).
        probe_coma: coma of the probe's pupil, radians at its edge (``ptycho.probe``); 0 keeps
            ``|P|`` centro-symmetric, which leaves gridsize 1 unable to tell the object from its
            twin; 1.5 lifted N = 64 gridsize 1 from 0.23 to 0.33 amplitude SSIM
            (docs/quality.md, round 4).
        probe_defocus: the pupil's defocus phase at the aperture edge, radians (default a
            quarter wave, ``pi / 2``). With a wider aperture (smaller ``probe_scale``) a strong
            defocus keeps the probe wide in real space while its bright-field disc covers more
            of the detector (``ptycho.probe``; on a weak sample it did not help the network:
            docs/quality.md, round 12).
        probe_trainable: let the probe be learnt.
        intensity_scale_trainable: let the log intensity scale be learnt (default False: the
            dose fixes it, and a free scale trades off against the object amplitude).
        amp_activation: activation of the amplitude head.
        activation: the U-Net's hidden activation, ``"relu"`` (default) or ``"leaky_relu"``
            (slope 0.2 below zero: a unit never stops passing gradient). On a weak sample
            (``SimulationConfig.amp_contrast = 0.1``) about half the channels of several ReLU
            layers stop firing while the network sits at the constant object, which it never
            leaves; leaky units leave it (docs/quality.md, round 11).
        head_init: kernel initialiser of the amplitude and phase heads: ``"glorot_uniform"``
            (default) or ``"zeros"``, with which the untrained network outputs a constant
            object (amplitude ``amp_activation(0)``, phase 0) for every input, so training
            need not first undo a random output (docs/quality.md, round 12).
        stem: ``"none"``: the U-Net's first level runs at ``N x N``; ``"patchify"``: a 2x2
            stride-2 convolution first, so the U-Net runs at ``N/2 x N/2`` (one level fewer,
            about a quarter of the cost) and decodes to the ``N/2`` object region at full
            resolution (needs ``pad_object`` and ``N >= 32``); ``"auto"`` (default):
            ``"patchify"`` from ``N = 128`` (with ``pad_object``), else ``"none"``
            (:attr:`resolved_stem`; run ids hash the resolved value).
        use_xla: use the XLA-compilable translation and compile the model with ``jit_compile``.
    """

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    offset: int = 4
    max_position_jitter: int = 10
    object_big: bool = True
    pad_object: bool = True
    probe_scale: float = 0.5
    probe_mask: bool = True
    probe_coma: float = added_option(0.0)
    probe_defocus: float = added_option(DEFAULT_PROBE_DEFOCUS)
    probe_trainable: bool = False
    intensity_scale_trainable: bool = False
    amp_activation: str = "sigmoid"
    activation: str = added_option("relu")
    head_init: str = added_option("glorot_uniform")
    stem: str = added_option("none", default="auto")
    use_xla: bool = False

    def __post_init__(self):
        o = type(self).__name__
        if isinstance(self.N, bool) or not isinstance(self.N, int) or self.N not in SUPPORTED_N:
            _fail(o, "N", self.N, f"must be a power of two from 16 to 256 ({SUPPORTED_N})")
        _check_int(o, "gridsize", self.gridsize, 1, 3)
        _check_int(o, "n_filters_scale", self.n_filters_scale, 1, 8)
        _check_int(o, "offset", self.offset, 1, self.N)
        _check_int(o, "max_position_jitter", self.max_position_jitter, 0, self.N)
        _check_bool(o, "object_big", self.object_big)
        _check_bool(o, "pad_object", self.pad_object)
        _check_float(o, "probe_scale", self.probe_scale, 0.0, 16.0, lo_open=True)
        _check_bool(o, "probe_mask", self.probe_mask)
        _check_float(o, "probe_coma", self.probe_coma, -10.0, 10.0)
        _check_float(o, "probe_defocus", self.probe_defocus, -200.0, 200.0)
        _check_bool(o, "probe_trainable", self.probe_trainable)
        _check_bool(o, "intensity_scale_trainable", self.intensity_scale_trainable)
        _check_choice(o, "amp_activation", self.amp_activation, AMP_ACTIVATIONS)
        _check_choice(o, "activation", self.activation, ACTIVATIONS)
        _check_choice(o, "head_init", self.head_init, HEAD_INITS)
        _check_choice(o, "stem", self.stem, STEMS)
        if self.stem == "patchify" and self.N < 32:
            _fail(o, "stem", self.stem, "\"patchify\" needs N >= 32 (its U-Net runs at N/2 "
                  "and bottoms out at 8 x 8)")
        if self.stem == "patchify" and not self.pad_object:
            _fail(o, "stem", self.stem, "\"patchify\" needs pad_object = true (the U-Net "
                  "decodes the N/2 object region)")
        _check_bool(o, "use_xla", self.use_xla)

    @property
    def resolved_stem(self) -> str:
        """The stem the network is built with: ``stem`` with ``"auto"`` resolved."""
        if self.stem != "auto":
            return self.stem
        return "patchify" if self.N >= PATCHIFY_FROM_N and self.pad_object else "none"

    def identity_dict(self) -> dict[str, Any]:
        """As :meth:`_ConfigBase.identity_dict`, of the config with its stem resolved: ids name
        the network built, not the spelling (``"auto"`` at ``N = 64`` is the pre-option id)."""
        return _ConfigBase.identity_dict(self.replace(stem=self.resolved_stem))

    @property
    def C(self) -> int:
        """Channels per sample: ``gridsize**2`` diffraction patterns."""
        return self.gridsize**2

    @property
    def padded_size(self) -> int:
        """Side of the canvas on which a group's C patches are reassembled, in pixels."""
        return self.N + (self.gridsize - 1) * self.offset + self.max_position_jitter


@dataclass(frozen=True)
class TrainingConfig(_ConfigBase):
    """Training of one arm.

    Attributes:
        nphotons: dose, the expected total photon count of one diffraction pattern (> 0).
        nepochs: passes over the training set (>= 1). Default 400: with the default 64
            groups, N = 64 gridsize 2 learns its object in situ (MAE, 1e9 photons: amplitude
            SSIM 0.89 after 400 epochs, 7.8 min on 2 cores; 0.46 after 160), and the NLL
            still improves at 400 (docs/quality.md, round 3); what matters is passes over
            each pattern, not Adam steps.
        batch_size: samples per gradient step (>= 1).
        loss: the data loss, a name of the registry :data:`ptycho.losses.LOSSES`. Default
            ``"nll_huber"``, the Poisson negative log-likelihood made robust to large
            residuals: it scored at least the plain ``"nll"`` at every N, gridsize and dose
            measured (the figures: docs/quality.md, round 5). ``"mae"`` is the amplitude MAE,
            ``"weighted"`` the legacy mix below.
        nll_weight, mae_weight: PtychoPINN's loss weights (>= 0, not both zero); only the
            ``"weighted"`` loss reads them. :meth:`with_loss` keeps them in step with ``loss``
            for the legacy ``params.cfg`` view.
        realspace_weight: weight (>= 0) of a total-variation penalty on the object amplitude.
        complex_tv_weight: weight (>= 0) of a total-variation penalty on the complex object
            (the modulus of neighbour differences), which smooths amplitude and phase together
            where ``realspace_weight`` smooths the amplitude alone and lets the phase take up
            the structure (docs/quality.md, round 17). Both may be set; they add.
        learning_rate: Adam step size (> 0); the peak of the schedule.
        lr_schedule: ``"constant"`` or ``"cosine"`` (cosine decay from ``learning_rate`` to
            1 % of it over all steps, after ``warmup_epochs`` of linear warm-up).
        warmup_epochs: epochs of linear learning-rate warm-up from 0 (>= 0, < nepochs).
        holdout: fraction ``h`` of each pattern's photons held out to choose the stopping
            epoch, in ``[0, 0.9]``; 0 (default) holds out nothing. The counts are split
            binomially (:mod:`ptycho.holdout`): the model is fitted to ``(1 - h)`` of them (its
            dose is ``(1 - h) nphotons``) and the weights of the epoch whose intensities best
            predict the held-out ``h`` are kept. For in-situ training at low dose, where the fit
            goes on to fit the noise (docs/quality.md, rounds 13 and 14).
        patience: with ``holdout``, stop after this many epochs without a new held-out minimum
            (>= 0; 0, the default, runs every epoch). Needs ``holdout > 0``. It saves time at
            low dose but a plateau defeats it: on the faint sample at 1e9 the held-out loss
            stays flat for the 100-odd epochs the network sits on the constant object, and
            ``patience = 100`` ended that arm at epoch 159 with the constant image
            (docs/quality.md, round 14). Use it only longer than any plateau.
        seed: seeds weight initialisation, batch order and the held-out split (>= 0).
    """

    nphotons: float = 1e9
    nepochs: int = 400
    batch_size: int = 16
    loss: str = "nll_huber"
    nll_weight: float = 1.0
    mae_weight: float = 0.0
    realspace_weight: float = 0.0
    complex_tv_weight: float = added_option(0.0)
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    holdout: float = added_option(0.0)
    patience: int = added_option(0)
    seed: int = 0

    @classmethod
    def check_nphotons(cls, value: Any) -> None:
        """Raise :class:`ConfigError` unless ``value`` is a valid dose (finite, > 0)."""
        _check_float(cls.__name__, "nphotons", value, 0.0, lo_open=True)

    @classmethod
    def check_seed(cls, value: Any) -> None:
        """Raise :class:`ConfigError` unless ``value`` is a valid seed (integer >= 0)."""
        _check_int(cls.__name__, "seed", value, 0)

    def __post_init__(self):
        o = type(self).__name__
        self.check_nphotons(self.nphotons)
        _check_int(o, "nepochs", self.nepochs, 1)
        _check_int(o, "batch_size", self.batch_size, 1)
        for name in ("nll_weight", "mae_weight", "realspace_weight", "complex_tv_weight"):
            _check_float(o, name, getattr(self, name), 0.0)
        if self.nll_weight + self.mae_weight == 0:
            _fail(o, "nll_weight", self.nll_weight,
                  "nll_weight and mae_weight cannot both be 0 (nothing would fit the data)")
        _check_choice(o, "loss", self.loss, LOSS_NAMES)
        _check_float(o, "learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        _check_choice(o, "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_int(o, "warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs and self.warmup_epochs >= self.nepochs:
            _fail(o, "warmup_epochs", self.warmup_epochs,
                  f"must be smaller than nepochs ({self.nepochs})")
        _check_float(o, "holdout", self.holdout, 0.0, 0.9)
        _check_int(o, "patience", self.patience, 0)
        if self.patience and not self.holdout:
            _fail(o, "patience", self.patience, "needs holdout > 0 (the held-out photons say "
                  "when to stop)")
        self.check_seed(self.seed)

    def with_loss(self, loss: str) -> TrainingConfig:
        """A copy training with the named loss (:data:`LOSS_PRESETS`)."""
        if loss not in LOSS_PRESETS:
            _fail(type(self).__name__, "loss", loss,
                  f"must be one of {', '.join(map(repr, LOSS_PRESETS))}")
        return self.replace(**LOSS_PRESETS[loss])


@dataclass(frozen=True)
class SimulationConfig(_ConfigBase):
    """The synthetic data of one unit.

    Attributes:
        object_kind: ``"lines"`` (PtychoPINN's random lines) or ``"grf"`` (Gaussian random field).
        max_phase: the object's phase spans ``[-max_phase, max_phase]`` radians (0 to pi).
            Default pi/4: a moderately strong phase object (see docs/quality.md: at pi/2 the
            network does not learn N=64 in a CPU budget, at 0 the twin image is exact for a
            real probe).
        amp_contrast: fraction of the amplitude span ``[0.5, 1]`` the object uses, in ``(0, 1]``
            (default 1): amplitude in ``[0.5, 0.5 + 0.5 * amp_contrast]``. With a smaller
            ``max_phase`` it makes a weakly scattering sample, whose features need more
            photons: the information per pattern goes about as the contrast squared
            (``benchmarks/sample_information.py``: 0.3 of both needs 12.5x the dose, 0.1
            116x). With the default Glorot output heads the network reaches less: at 0.3 its
            1e9 score falls to about 0.8, at 0.1 it does not learn (docs/quality.md, round 11);
            with ``head_init = "zeros"`` and 600 epochs the 0.1 sample reaches 0.998 at 1e9
            (round 13, ``experiments/dose_response_weak_zero.toml``).
        feature_scale: multiplies the object's lengths in pixels (``ptycho.objects.make_object``:
            the lines' width 1 px and spacing 8 px, the field's correlation length 6 px), a
            number in ``(0, 16]``, or ``"auto"`` (default): ``max(1, N / 32)``
            (:data:`FEATURE_REFERENCE_N`). From ``N = 32`` up every ``N`` then sees about the
            same object per probe (widths and spacings scale; the lines' lengths follow
            ``object_size``), as a fixed sample does when a larger detector region (``N``)
            makes the real-space pixel finer: the default probe's radius is ``N / 4`` pixels, a
            fixed physical width, and the sample's features span ``N / 32`` times the pixels
            they span at ``N = 32``. Below 32 the pixel is coarser than the 1 px lines and the
            grid cannot hold them finer: they stay at 1. At 1 everywhere (the code before
            round 7) the object is fixed in pixels and a larger ``N`` means a larger probe over
            the same features: gridsize 1 does not learn that at ``N = 64`` (docs/quality.md,
            round 7). :meth:`feature_scale_for` resolves it.
        object_size: side of the square object in pixels; must hold at least one patch plus the
            scan buffer (checked against ``N`` by :meth:`check_compatible`).
        n_train, n_test: samples (groups of C patterns) in the training and test sets (>= 1).
            Default ``n_train = 64``: an 8 x 8 grid a quarter patch apart. More groups on the
            same object only make the grid denser, and the same training time then covers
            each pattern fewer times (at N = 64, 256 groups scored 0.30 against 0.68 for 64
            in the same time: docs/quality.md).
        scan: ``"grid"``, a raster of about ``n_train`` group centres with a step of at most
            N/4 (PtychoPINN's grid mode; the in-situ score then covers a region without
            holes), or ``"random"`` uniform positions (their stitched coverage has holes, so
            ``reconstruct = "same"`` scores a smaller rectangle).
        scan_buffer: pixels kept between the outermost patch edge and the object edge.
        jitter: standard deviation in pixels added to each position (>= 0).
        seed: seeds the object, the scan and the Poisson noise (>= 0).
        reconstruct: which scan a trained model is scored on: ``"same"``, the training scan
            itself (in situ, as ptychography is used: the network is fitted to the measured
            data and reconstructs that object), or ``"new"``, the test scan of a different
            object (generalisation to data never seen).
    """

    object_kind: str = "lines"
    max_phase: float = math.pi / 4
    amp_contrast: float = added_option(1.0)
    object_size: int = 256
    feature_scale: float | str = added_option(1.0, default="auto")
    n_train: int = 64
    n_test: int = 128
    scan: str = "grid"
    scan_buffer: int = 4
    jitter: float = 0.0
    seed: int = 0
    reconstruct: str = "same"

    def __post_init__(self):
        o = type(self).__name__
        _check_choice(o, "object_kind", self.object_kind, OBJECT_KINDS)
        _check_float(o, "max_phase", self.max_phase, 0.0, math.pi)
        _check_float(o, "amp_contrast", self.amp_contrast, 0.0, 1.0, lo_open=True)
        _check_int(o, "object_size", self.object_size, 16, 8192)
        if self.feature_scale != "auto":
            if isinstance(self.feature_scale, str):
                _fail(o, "feature_scale", self.feature_scale, "must be \"auto\" or a number")
            _check_float(o, "feature_scale", self.feature_scale, 0.0, 16.0, lo_open=True)
        _check_int(o, "n_train", self.n_train, 1)
        _check_int(o, "n_test", self.n_test, 1)
        _check_choice(o, "scan", self.scan, SCAN_KINDS)
        _check_int(o, "scan_buffer", self.scan_buffer, 0)
        _check_float(o, "jitter", self.jitter, 0.0)
        _check_int(o, "seed", self.seed, 0)
        _check_choice(o, "reconstruct", self.reconstruct, RECONSTRUCT_MODES)

    def feature_scale_for(self, N: int) -> float:
        """The object's length multiplier at patch size ``N`` (``"auto"``: ``max(1, N / 32)``)."""
        if self.feature_scale == "auto":
            return max(1.0, N / FEATURE_REFERENCE_N)
        return float(self.feature_scale)

    def for_N(self, N: int) -> SimulationConfig:
        """A copy with every ``N``-dependent value resolved (``feature_scale = "auto"``): what
        a unit at patch size ``N`` simulates, so run ids name it (``runner.plan``)."""
        return self.replace(feature_scale=self.feature_scale_for(N))

    def check_compatible(self, model: ModelConfig) -> None:
        """Raise :class:`ConfigError` if the object cannot hold a group of patches of ``model``."""
        need = model.N + (model.gridsize - 1) * model.offset + 2 * self.scan_buffer + 2
        if self.object_size < need:
            _fail(type(self).__name__, "object_size", self.object_size,
                  f"must be >= {need} for N={model.N}, gridsize={model.gridsize}, "
                  f"offset={model.offset} and scan_buffer={self.scan_buffer}")
