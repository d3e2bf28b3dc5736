"""Synthetic complex objects (transmission functions) for simulated ptychography.

Every object is a ``(size, size) complex64`` array ``O = A * exp(i * phi)`` with amplitude
``A`` in ``[0.5, 1]`` (never 0: the object transmits everywhere; ``amp_contrast`` narrows it to
``[0.5, 0.5 + 0.5 * amp_contrast]``) and phase ``phi`` in ``[-max_phase, max_phase]`` radians
(at most ``[-pi/2, pi/2]`` by default). Both are dimensionless. Objects are deterministic for a seed
(``np.random.default_rng(seed)``).

Kinds:

* ``"lines"`` -- PtychoPINN-like: random straight line segments rasterised on a canvas and
  Gaussian smoothed. Each line has its own random amplitude weight and phase weight, so
  amplitude and phase share the same structure without being identical.
* ``"grf"`` -- Gaussian random fields: white noise filtered in Fourier space by a Matern-like
  spectrum (flat below ``1 / length_scale``, power law above), one field for the amplitude and an
  independent one for the phase, each mapped through the normal CDF onto its range.

Imports no TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import ndtr

__all__ = ["OBJECT_KINDS", "lines_object", "grf_object", "make_object",
           "AMP_RANGE", "PHASE_RANGE"]

OBJECT_KINDS = ("lines", "grf")
#: Amplitude range of every object (min, max).
AMP_RANGE = (0.5, 1.0)
#: Default phase range of the objects in radians (min, max); ``max_phase`` narrows it.
PHASE_RANGE = (-math.pi / 2, math.pi / 2)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"object size must be an integer >= 8 (pixels); got {size!r}")
    return int(size)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def _check_max_phase(max_phase) -> float:
    if not (isinstance(max_phase, (int, float)) and not isinstance(max_phase, bool)
            and math.isfinite(max_phase) and 0 <= max_phase <= math.pi):
        raise ValueError(f"max_phase must be a number from 0 to pi (radians); got {max_phase!r}")
    return float(max_phase)


def _check_amp_contrast(amp_contrast) -> float:
    if not (isinstance(amp_contrast, (int, float)) and not isinstance(amp_contrast, bool)
            and math.isfinite(amp_contrast) and 0 < amp_contrast <= 1):
        raise ValueError(f"amp_contrast must be a number in (0, 1]; got {amp_contrast!r}")
    return float(amp_contrast)


def _compose(t_amp: np.ndarray, t_phase: np.ndarray, max_phase: float,
             amp_contrast: float = 1.0) -> np.ndarray:
    """Map two ``[0, 1]`` fields onto ``[0.5, 0.5 + 0.5 * amp_contrast]`` (:data:`AMP_RANGE` at
    1) and ``[-max_phase, max_phase]``."""
    span = (AMP_RANGE[1] - AMP_RANGE[0]) * amp_contrast
    amp = AMP_RANGE[0] + span * np.clip(t_amp, 0.0, 1.0)
    phase = -max_phase + 2 * max_phase * np.clip(t_phase, 0.0, 1.0)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _splat_lines(shape, starts, ends, weights, spacing=0.5):
    """Rasterise segments onto a zero canvas by bilinear splatting of points along each line.

    Args:
        shape: canvas ``(H, W)``.
        starts, ends: ``(L, 2) float64`` end points ``(row, col)`` in canvas pixels.
        weights: ``(L,) float64`` line density (deposit per pixel of length).
        spacing: distance in pixels between the splatted points.

    Returns:
        ``(H, W) float64``; a line of weight ``w`` deposits ``w`` per pixel of its length.
    """
    H, W = shape
    lengths = np.linalg.norm(ends - starts, axis=1)
    npts = np.maximum(2, np.ceil(lengths / spacing).astype(np.int64) + 1)
    line_id = np.repeat(np.arange(len(starts)), npts)
    # t in [0, 1] along each line, vectorised over all lines.
    first = np.repeat(np.cumsum(npts) - npts, npts)
    t = (np.arange(npts.sum()) - first) / np.repeat(npts - 1, npts)
    pts = starts[line_id] + t[:, None] * (ends - starts)[line_id]
    w = (weights * lengths / npts)[line_id]  # deposit per point so the total is w * length
    r0 = np.floor(pts[:, 0]).astype(np.int64)
    c0 = np.floor(pts[:, 1]).astype(np.int64)
    fr = pts[:, 0] - r0
    fc = pts[:, 1] - c0
    canvas = np.zeros(H * W, dtype=np.float64)
    for dr, dc, ww in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                       (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        canvas += np.bincount(r[ok] * W + c[ok], weights=(w * ww)[ok], minlength=H * W)
    return canvas.reshape(H, W)


def lines_object(size: int, seed: int, n_lines: int | None = None, sigma: float = 1.0,
                 mean_spacing: float = 8.0, max_phase: float = PHASE_RANGE[1],
                 amp_contrast: float = 1.0) -> np.ndarray:
    """A PtychoPINN-like "lines" object: smoothed random line segments.

    Segments have uniformly random centres (on a canvas extending ``4 * sigma + 2`` pixels beyond
    the object, so edges look like the interior), uniformly random orientations and lengths
    uniform in ``[0.1, 0.5] * size``. Each segment gets an amplitude weight and an independent
    phase weight, both uniform in ``[0.5, 1]``. The two weighted rasters are Gaussian smoothed
    (``sigma`` pixels for the amplitude, ``1.5 * sigma`` for the phase) and saturated with
    ``t = 1 - exp(-c * sqrt(2 pi) * sigma)`` (an isolated unit-weight line peaks at
    ``t ~ 0.63``, crossings saturate towards 1). Amplitude ``= 0.5 + 0.5 amp_contrast t_amp``
    (bright lines on a 0.5 background), phase ``= max_phase * (2 t_phase - 1)``.

    Args:
        size: object side in pixels (>= 8).
        seed: integer >= 0 for ``np.random.default_rng``.
        n_lines: number of segments; ``None`` picks the number for which the total line length
            per unit area is ``1 / mean_spacing`` (about ``size / 2.4`` lines at the default).
        sigma: Gaussian smoothing in pixels (> 0).
        mean_spacing: typical distance in pixels between lines, used only when ``n_lines`` is
            ``None`` (> 0).
        max_phase: half the phase range in radians (0 to pi; default pi/2).
        amp_contrast: fraction of the amplitude span ``[0.5, 1]`` used, in ``(0, 1]``
            (default 1): a weakly scattering sample at small values.

    Returns:
        ``(size, size) complex64``, amplitude in ``[0.5, 0.5 + 0.5 amp_contrast]``, phase in
        ``[-max_phase, max_phase]``.

    Raises:
        ValueError: invalid ``size``, ``seed``, ``n_lines``, ``sigma``, ``mean_spacing``,
            ``max_phase`` or ``amp_contrast``.
    """
    size = _check_size(size)
    seed = _check_seed(seed)
    max_phase = _check_max_phase(max_phase)
    amp_contrast = _check_amp_contrast(amp_contrast)
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0 (pixels); got {sigma!r}")
    if not (isinstance(mean_spacing, (int, float)) and math.isfinite(mean_spacing)
            and mean_spacing > 0):
        raise ValueError(f"mean_spacing must be a finite number > 0 (pixels); got {mean_spacing!r}")
    rng = np.random.default_rng(seed)
    margin = int(math.ceil(4 * sigma)) + 2
    side = size + 2 * margin
    mean_len = 0.3 * size
    if n_lines is None:
        n_lines = max(1, round(side * side / (mean_spacing * mean_len)))
    if isinstance(n_lines, bool) or not isinstance(n_lines, (int, np.integer)) or n_lines < 1:
        raise ValueError(f"n_lines must be an integer >= 1 or None; got {n_lines!r}")
    centres = rng.uniform(0, side, size=(n_lines, 2))
    angles = rng.uniform(0, np.pi, size=n_lines)
    lengths = rng.uniform(0.1, 0.5, size=n_lines) * size
    half = 0.5 * lengths[:, None] * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    w_amp = rng.uniform(0.5, 1.0, size=n_lines)
    w_phase = rng.uniform(0.5, 1.0, size=n_lines)
    starts, ends = centres - half, centres + half
    gain = math.sqrt(2 * math.pi)
    c_amp = gaussian_filter(_splat_lines((side, side), starts, ends, w_amp), sigma)
    c_phase = gaussian_filter(_splat_lines((side, side), starts, ends, w_phase), 1.5 * sigma)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    t_amp = 1.0 - np.exp(-gain * sigma * c_amp[crop])
    t_phase = 1.0 - np.exp(-gain * 1.5 * sigma * c_phase[crop])
    return _compose(t_amp, t_phase, max_phase, amp_contrast)


def _grf(rng: np.random.Generator, size: int, length_scale: float, exponent: float):
    """``(size, size) float64`` zero-mean, unit-variance periodic Gaussian random field."""
    k = np.fft.fftfreq(size)  # cycles per pixel
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    # Power spectrum (1 + (2 pi k l)^2)^(-exponent / 2); the filter is its square root.
    filt = (1.0 + (2 * np.pi * length_scale) ** 2 * k2) ** (-exponent / 4)
    filt[0, 0] = 0.0  # zero mean
    noise = rng.standard_normal((size, size))
    field = np.fft.ifft2(np.fft.fft2(noise) * filt).real
    std = field.std()
    return field / std if std > 0 else field


def grf_object(size: int, seed: int, length_scale: float = 6.0,
               exponent: float = 4.0, max_phase: float = PHASE_RANGE[1],
               amp_contrast: float = 1.0) -> np.ndarray:
    """A Gaussian-random-field object: independent smooth random amplitude and phase.

    Each of amplitude and phase is white noise filtered in Fourier space with power spectrum
    ``(1 + (2 pi k length_scale)^2)^(-exponent / 2)`` (``k`` in cycles per pixel: flat below
    ``1 / (2 pi length_scale)``, power law ``k^-exponent`` above), standardised to zero mean and
    unit variance and mapped through the normal CDF ``Phi`` onto ``[0, 1]`` (uniform
    marginals): amplitude ``= 0.5 + 0.5 amp_contrast Phi(z_amp)``, phase
    ``= max_phase * (2 Phi(z_phase) - 1)``.
    The fields are periodic (FFT-based).

    Args:
        size: object side in pixels (>= 8).
        seed: integer >= 0 for ``np.random.default_rng``.
        length_scale: correlation length in pixels (> 0).
        exponent: spectral power-law exponent (> 2 for a field smoother than white noise).
        max_phase: half the phase range in radians (0 to pi; default pi/2).
        amp_contrast: fraction of the amplitude span ``[0.5, 1]`` used, in ``(0, 1]``.

    Returns:
        ``(size, size) complex64``, amplitude in ``[0.5, 0.5 + 0.5 amp_contrast]``, phase in
        ``[-max_phase, max_phase]``.

    Raises:
        ValueError: invalid ``size``, ``seed``, ``length_scale``, ``exponent``, ``max_phase`` or
            ``amp_contrast``.
    """
    size = _check_size(size)
    seed = _check_seed(seed)
    max_phase = _check_max_phase(max_phase)
    amp_contrast = _check_amp_contrast(amp_contrast)
    if not (isinstance(length_scale, (int, float)) and math.isfinite(length_scale)
            and length_scale > 0):
        raise ValueError(f"length_scale must be a finite number > 0 (pixels); got {length_scale!r}")
    if not (isinstance(exponent, (int, float)) and math.isfinite(exponent) and exponent > 0):
        raise ValueError(f"exponent must be a finite number > 0; got {exponent!r}")
    rng = np.random.default_rng(seed)
    z_amp = _grf(rng, size, length_scale, exponent)
    z_phase = _grf(rng, size, length_scale, exponent)
    return _compose(ndtr(z_amp), ndtr(z_phase), max_phase, amp_contrast)


def make_object(kind: str, size: int, seed: int,
                max_phase: float = PHASE_RANGE[1], feature_scale: float = 1.0,
                amp_contrast: float = 1.0) -> np.ndarray:
    """A synthetic object of the named kind with default parameters.

    Args:
        kind: ``"lines"`` (:func:`lines_object`) or ``"grf"`` (:func:`grf_object`).
        size: object side in pixels (>= 8).
        seed: integer >= 0; the same seed gives the same object.
        max_phase: half the phase range in radians (0 to pi; default pi/2).
        feature_scale: multiplies the kind's lengths in pixels (> 0): the lines' width
            ``sigma`` (1 px) and mean spacing (8 px), the field's ``length_scale`` (6 px). At 2
            the object at ``N = 64`` has the features per patch of the default at ``N = 32``.
        amp_contrast: fraction of the amplitude span ``[0.5, 1]`` used, in ``(0, 1]``.

    Returns:
        ``(size, size) complex64``, amplitude in ``[0.5, 0.5 + 0.5 amp_contrast]``, phase in
        ``[-max_phase, max_phase]``.

    Raises:
        ValueError: unknown ``kind`` (the message lists the allowed kinds), bad size or seed.
    """
    if not (isinstance(feature_scale, (int, float)) and math.isfinite(feature_scale)
            and feature_scale > 0):
        raise ValueError(f"feature_scale must be a finite number > 0; got {feature_scale!r}")
    if kind == "lines":
        return lines_object(size, seed, sigma=1.0 * feature_scale,
                            mean_spacing=8.0 * feature_scale, max_phase=max_phase,
                            amp_contrast=amp_contrast)
    if kind == "grf":
        return grf_object(size, seed, length_scale=6.0 * feature_scale, max_phase=max_phase,
                          amp_contrast=amp_contrast)
    raise ValueError(f"object kind must be one of {', '.join(map(repr, OBJECT_KINDS))}; "
                     f"got {kind!r}")
