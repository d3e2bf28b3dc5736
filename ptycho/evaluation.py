"""Evaluation of reconstructions against ground truth. Imports no TensorFlow.

Pipeline (:func:`evaluate_reconstruction`): stitch the model's object patches into one object
(:func:`stitch_patches`), keep the largest fully covered rectangle (:func:`covered_region`),
remove the global phase offset (:func:`remove_global_phase`) and compute amplitude and phase
metrics (:func:`evaluate`): MAE, MSE, PSNR, SSIM and FRC50.

Shapes and coordinate conventions of patches, positions and regions: :mod:`ptycho.stitching`
(whose functions are re-exported here under their old names). Objects are ``(H, W)`` complex.

Conventions of the metrics:

* PSNR is capped at :data:`PSNR_CAP_DB` (100 dB), so identical images give ``psnr == 100.0``
  (a finite number that JSON can hold) instead of ``inf``.
* FRC50 is in cycles/pixel, 0 to 0.5, larger is better; identical images give 0.5.
* All metric values are plain Python ``float``.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .stitching import covered_region, illuminated_crop, illumination, stitch_patches

__all__ = [
    "PSNR_CAP_DB",
    "METRIC_KEYS",
    "stitch_patches",
    "illuminated_crop",
    "illumination",
    "covered_region",
    "remove_global_phase",
    "phase_near",
    "frc",
    "frc50",
    "image_metrics",
    "evaluate",
    "evaluate_reconstruction",
]

#: PSNR reported for identical images (and upper bound of every PSNR), in dB.
PSNR_CAP_DB = 100.0
#: Keys of the dictionary returned by :func:`evaluate`, in order.
METRIC_KEYS = tuple(
    f"{part}_{name}"
    for part in ("amp", "phase")
    for name in ("mae", "mse", "psnr", "ssim", "frc50")
)
#: Smallest image side accepted by :func:`image_metrics` (SSIM needs a 3x3 window).
MIN_SIDE = 3


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def _check_2d_pair(est, ref, what: str) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est)
    ref = np.asarray(ref)
    if est.ndim != 2 or ref.ndim != 2 or est.shape != ref.shape:
        raise ValueError(
            f"{what}: est and ref must be 2-D arrays of equal shape; "
            f"got est {est.shape} and ref {ref.shape}"
        )
    return est, ref


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


# --------------------------------------------------------------------------------------------
# Phase alignment and FRC
# --------------------------------------------------------------------------------------------
def remove_global_phase(est, ref) -> np.ndarray:
    """Remove the global phase offset of ``est`` relative to ``ref``.

    Returns ``est * exp(-1j * phi0)`` with ``phi0 = angle(sum(est * conj(ref)))``, the
    least-squares optimal constant phase (minimises ``sum |est * exp(-1j*phi) - ref|**2``).
    ``est`` and ``ref`` are complex arrays of equal shape (any number of dimensions); the
    result is complex with at least complex64 precision. If ``sum(est * conj(ref)) == 0``,
    ``phi0 = 0``.
    """
    est = np.asarray(est)
    ref = np.asarray(ref)
    if est.shape != ref.shape:
        raise ValueError(
            f"remove_global_phase: est and ref must have equal shapes; "
            f"got est {est.shape} and ref {ref.shape}"
        )
    dtype = np.result_type(est.dtype, np.complex64)
    inner = np.sum(est.astype(np.complex128) * np.conj(ref.astype(np.complex128)))
    phi0 = float(np.angle(inner))
    return (est * np.exp(-1j * phi0)).astype(dtype)


def phase_near(est, ref) -> np.ndarray:
    """``angle(est)`` in radians, taken modulo 2 pi nearest to ``angle(ref)`` pixelwise, so
    phase wraps never count as errors: ``angle(ref) + angle(exp(i angle(est)) conj(ref))``.
    Where ``est`` is 0 its phase is 0 (numpy's ``angle(0)``), never ``angle(ref)``: an empty
    estimate must not score a perfect phase. ``est``, ``ref``: complex, equal shapes."""
    ref_phase = np.angle(ref).astype(np.float64)
    return ref_phase + np.angle(np.exp(1j * np.angle(est)) * np.conj(ref))


def frc(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two real 2-D images of equal shape ``(H, W)``.

    Ring ``k`` holds the Fourier coefficients whose radial frequency ``|f|`` (cycles/pixel)
    rounds to ``k / L`` with ``L = min(H, W)``: rings one frequency-index pixel wide along the
    shorter axis. Coefficients beyond 0.5 cycles/pixel (the corners) are not used. No
    windowing and no mean subtraction.

    Returns
    -------
    freqs : (L//2 + 1,) float64
        Ring frequencies ``k / L`` in cycles/pixel, from 0 to (at most) 0.5.
    curve : (L//2 + 1,) float64
        ``Re(sum F_a conj(F_b)) / sqrt(sum |F_a|^2 * sum |F_b|^2)`` per ring, in [-1, 1].
        A ring where both images have zero power counts as perfectly correlated (1); a ring
        where only one has zero power gives 0.
    """
    a, b = _check_2d_pair(a, b, "frc")
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        raise ValueError("frc: images must be real")
    if min(a.shape) < 2:
        raise ValueError(f"frc: images must be at least 2x2; got {a.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    height, width = a.shape
    side = min(height, width)
    fa = np.fft.fft2(a)
    fb = np.fft.fft2(b)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    ring = np.rint(np.sqrt(fy**2 + fx**2) * side).astype(np.int64)
    n_rings = side // 2 + 1
    use = ring < n_rings
    idx = ring[use]
    cross = np.bincount(idx, weights=(fa * np.conj(fb)).real[use], minlength=n_rings)
    pa = np.bincount(idx, weights=(np.abs(fa) ** 2)[use], minlength=n_rings)
    pb = np.bincount(idx, weights=(np.abs(fb) ** 2)[use], minlength=n_rings)
    denom = np.sqrt(pa * pb)
    # Relative threshold: power below this is rounding noise of the FFT.
    scale = max(pa.max(), pb.max(), np.finfo(float).tiny)
    zero_a = pa <= 1e-24 * scale
    zero_b = pb <= 1e-24 * scale
    curve = np.zeros(n_rings)
    ok = ~(zero_a | zero_b)
    curve[ok] = np.clip(cross[ok] / denom[ok], -1.0, 1.0)
    curve[zero_a & zero_b] = 1.0
    freqs = np.arange(n_rings) / side
    return freqs, curve


def frc50(a, b) -> float:
    """Spatial frequency (cycles/pixel) where the FRC of ``a`` and ``b`` first drops below 0.5.

    ``a`` and ``b`` are real 2-D images of equal shape (see :func:`frc`). The crossing is
    linearly interpolated between the last ring at or above 0.5 and the first ring below it.
    The DC ring (a single coefficient whose correlation is just the sign of the product of the
    means) carries no resolution information and is taken as 1. Returns 0.5 (Nyquist) if the
    curve never drops below 0.5, also for odd sizes whose last ring lies just below 0.5.
    Larger is better; identical images give 0.5.
    """
    freqs, curve = frc(a, b)
    curve = curve.copy()
    curve[0] = 1.0
    below = np.flatnonzero(curve < 0.5)
    if below.size == 0:
        return 0.5
    k = int(below[0])
    c0, c1 = curve[k - 1], curve[k]
    t = (c0 - 0.5) / (c0 - c1)
    return float(freqs[k - 1] + t * (freqs[k] - freqs[k - 1]))


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def _data_range(ref: np.ndarray) -> float:
    """``ref.max() - ref.min()``; for a (near-)constant ``ref``, ``max|ref|`` or 1 if that is 0."""
    span = float(ref.max() - ref.min())
    scale = float(np.abs(ref).max())
    if span > 1e-6 * scale and span > 0:
        return span
    return scale if scale > 0 else 1.0


def image_metrics(est, ref, data_range: float | None = None) -> dict[str, float]:
    """Compare a real 2-D image ``est`` with the reference ``ref`` (equal shapes, >= 3x3).

    Parameters
    ----------
    est, ref : (H, W) real
    data_range : float, optional
        Range used by PSNR and SSIM. Default ``ref.max() - ref.min()``; if ``ref`` is constant
        (range <= 1e-6 * max|ref|) it falls back to ``max|ref|``, or 1.0 if ``ref`` is all zero.

    Returns
    -------
    dict with plain float values:
        ``mae`` mean |est - ref|; ``mse`` mean (est - ref)^2;
        ``psnr`` in dB, ``10 log10(data_range^2 / mse)`` (skimage), capped at
        :data:`PSNR_CAP_DB` = 100 (so identical images give 100.0, never inf);
        ``ssim`` skimage structural similarity, uniform window of side
        ``min(7, min(H, W))`` rounded down to odd; ``frc50`` (:func:`frc50`), cycles/pixel.
    """
    est, ref = _check_2d_pair(est, ref, "image_metrics")
    if np.iscomplexobj(est) or np.iscomplexobj(ref):
        raise ValueError("image_metrics: images must be real (use evaluate for complex objects)")
    if min(est.shape) < MIN_SIDE:
        raise ValueError(
            f"image_metrics: images must be at least {MIN_SIDE}x{MIN_SIDE}; got {est.shape}"
        )
    est = est.astype(np.float64)
    ref = ref.astype(np.float64)
    _check_finite(est, "est")
    _check_finite(ref, "ref")
    if data_range is None:
        data_range = _data_range(ref)
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number; got {data_range}")

    diff = est - ref
    mae = float(np.mean(np.abs(diff)))
    mse = float(np.mean(diff**2))
    if mse == 0.0:
        psnr = PSNR_CAP_DB
    else:
        psnr = min(float(peak_signal_noise_ratio(ref, est, data_range=data_range)), PSNR_CAP_DB)
    win = min(7, min(est.shape))
    win -= 1 - win % 2  # largest odd number <= win
    ssim = float(structural_similarity(ref, est, data_range=data_range, win_size=win))
    return {"mae": mae, "mse": mse, "psnr": psnr, "ssim": ssim, "frc50": frc50(est, ref)}


def _as_region(region, shape: tuple[int, int]) -> tuple[slice, slice]:
    if region is None:
        return (slice(0, shape[0]), slice(0, shape[1]))
    if (
        not isinstance(region, tuple)
        or len(region) != 2
        or not all(isinstance(s, slice) for s in region)
    ):
        raise ValueError(f"region must be a tuple of two slices; got {region!r}")
    return region


def evaluate(est_obj, ref_obj, region=None) -> dict[str, float]:
    """Amplitude and phase metrics of a complex reconstruction against the ground truth.

    Parameters
    ----------
    est_obj, ref_obj : (H, W) complex
        Reconstructed and true objects on the same pixel grid.
    region : (slice, slice), optional
        Part of the objects to compare (e.g. from :func:`covered_region`); default all. It
        must leave at least 3x3 pixels.

    Returns
    -------
    dict with keys :data:`METRIC_KEYS` (``amp_mae`` ... ``phase_frc50``), plain floats.

    Method: the global phase offset of ``est`` relative to ``ref`` is removed first
    (:func:`remove_global_phase`, computed on the region). Amplitude metrics compare
    ``|est|`` with ``|ref|`` (:func:`image_metrics`, default data range). Phase metrics compare
    ``angle(ref) + d`` with ``angle(ref)``, where ``d = angle(est * conj(ref))`` is the phase
    difference wrapped to [-pi, pi]: i.e. ``angle(est)`` taken modulo 2 pi nearest to
    ``angle(ref)`` pixelwise (:func:`phase_near`), so phase wraps never count as errors.
    Phase PSNR/SSIM use the data range ``ptp(angle(ref))``, or 2 pi if that is below 1e-6 rad.
    Units: phase in radians.
    """
    est, ref = _check_2d_pair(est_obj, ref_obj, "evaluate")
    region = _as_region(region, est.shape)
    est = est[region].astype(np.complex128)
    ref = ref[region].astype(np.complex128)
    if min(est.shape) < MIN_SIDE:
        raise ValueError(
            f"evaluate: region {region!r} leaves shape {est.shape}; need at least "
            f"{MIN_SIDE}x{MIN_SIDE}"
        )
    _check_finite(est, "est_obj")
    _check_finite(ref, "ref_obj")
    est = remove_global_phase(est, ref)

    amp = image_metrics(np.abs(est), np.abs(ref))
    ref_phase = np.angle(ref)
    est_phase = phase_near(est, ref)
    span = float(np.ptp(ref_phase))
    phase_range = span if span >= 1e-6 else 2 * math.pi
    phase = image_metrics(est_phase, ref_phase, data_range=phase_range)

    out = {f"amp_{k}": float(v) for k, v in amp.items()}
    out.update({f"phase_{k}": float(v) for k, v in phase.items()})
    return {k: out[k] for k in METRIC_KEYS}


def evaluate_reconstruction(
    patches, positions, ref_obj, crop: int | None = None
) -> tuple[dict[str, float], np.ndarray, tuple[slice, slice]]:
    """Stitch model patches, keep the fully covered rectangle and evaluate it.

    Parameters
    ----------
    patches : (B, N, N) or (B, N, N, 1) complex
        The model's object output, one patch per sample.
    positions : (B, 2) or (B, 1, 2, 1) float, pixels, (row, col)
        Centre (group mean position) of each patch, in the pixel frame of ``ref_obj``.
    ref_obj : (H, W) complex
        Ground-truth object.
    crop : int, optional
        Centred window of each patch used for stitching. Default :func:`illuminated_crop`
        (``N//4``): the window inside the probe's support disc. The corners of the ``N/2``
        window the model predicts lie outside that disc, where no diffraction data constrain
        the object, and averaging them in biases the stitched amplitude.

    Returns
    -------
    metrics : dict
        :func:`evaluate` on ``region``.
    obj : (H, W) complex64
        The stitched object (bilinear splat, see :func:`stitch_patches`), 0 where uncovered.
    region : (slice, slice)
        :func:`covered_region` of the coverage weights with ``min_weight=1``.

    Raises
    ------
    ValueError
        On bad shapes, if no pixel is covered, or if the covered region is smaller than 3x3.
    """
    ref = np.asarray(ref_obj)
    if ref.ndim != 2:
        raise ValueError(f"ref_obj must be a 2-D (H, W) array; got shape {ref.shape}")
    if crop is None:
        crop = illuminated_crop(np.asarray(patches).shape[1])
    obj, weight = stitch_patches(patches, positions, ref.shape, crop=crop)
    if not np.any(weight > 0):
        raise ValueError(
            f"no patch lands inside the object of shape {ref.shape}; nothing is covered"
        )
    region = covered_region(weight, min_weight=1)
    metrics = evaluate(obj, ref, region=region)
    return metrics, obj, region
