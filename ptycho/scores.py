"""Upstream-style (PtychoPINN) scores of a reconstruction and the constant-image baselines.

:func:`ptycho.evaluation.evaluate` compares raw amplitudes and the phase after removing one
global offset. Those numbers punish an overall amplitude scale and a phase ramp, which the data
cannot fix (the scale trades off against the dose, a ramp against a shift of the scan). The
scores here remove exactly those ambiguities, as PtychoPINN's evaluation does:

* amplitude divided by its mean over the scored region (``amp_norm_*``);
* phase with its least-squares plane ``a*row + b*col + c`` removed, from the estimate and from
  the truth separately (``phase_plane_*``), after the global phase offset is removed.

Next to each SSIM and PSNR there is a ``*_baseline`` column: the same score for a constant image
(the mean amplitude everywhere, a flat phase), so a table says at a glance whether a model
learnt anything. FRC50 is also given as a resolution length: ``*_frc50_px``, the half period in
pixels of the spatial frequency where the FRC drops below 0.5 (``1 / (2 frc50)``; 1 px at
Nyquist, smaller is better). ``*_r`` is the Pearson correlation of estimate and truth over the
region: scale- and offset-free, 0 for a constant image (so it needs no baseline column), and
not dominated by flat background as SSIM's 7-pixel windows are on a faint sample, where a
noisy but correlated reconstruction can score below the constant image (docs/quality.md,
round 19).

Images are ``(H, W)``; scores are plain floats; phase in radians. Imports no TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np

from .evaluation import image_metrics, phase_near, remove_global_phase

__all__ = ["SCORE_KEYS", "plane_removed", "frc50_px", "pearson_r", "upstream_scores"]

#: Keys of :func:`upstream_scores`, in order.
SCORE_KEYS = (
    "amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_psnr", "amp_norm_psnr_baseline",
    "amp_norm_frc50", "amp_frc50_px", "amp_norm_r",
    "phase_plane_ssim", "phase_plane_ssim_baseline", "phase_plane_psnr",
    "phase_plane_psnr_baseline", "phase_plane_frc50", "phase_frc50_px", "phase_plane_r",
)


def plane_removed(image) -> np.ndarray:
    """``image`` ``(H, W)`` minus its least-squares plane ``a*row + b*col + c`` (float64)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got shape {img.shape}")
    rows, cols = np.indices(img.shape, dtype=np.float64)
    design = np.stack([rows.ravel(), cols.ravel(), np.ones(img.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, img.ravel(), rcond=None)
    return img - (design @ coef).reshape(img.shape)


def frc50_px(frc50: float) -> float:
    """Half-period resolution in pixels, ``1 / (2 frc50)`` for ``frc50`` in cycles/pixel
    (``inf`` when nothing correlates)."""
    return math.inf if frc50 <= 0 else 1.0 / (2.0 * frc50)


def pearson_r(est, ref) -> float:
    """Pearson correlation of two real images of equal shape over all pixels.

    0.0 when either is constant, i.e. its peak-to-peak range is at most ``1e-6 * max(1,
    max|x|)``: a constant image carries no information about ``ref``, and the rounding left in
    a float32 constant (e.g. a flat phase after :func:`ptycho.evaluation.phase_near`) must not
    correlate by chance. Meant for the unit-scale images scored here (amplitude / its mean,
    phase in radians).
    """
    a = np.asarray(est, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    if any(np.ptp(x) <= 1e-6 * max(1.0, float(np.abs(x).max())) for x in (a, b)):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))


def _pair(est, ref, range_ref) -> dict[str, float]:
    """SSIM/PSNR/FRC50/r of ``est``, and SSIM/PSNR of a constant image, against ``ref``."""
    data_range = float(np.ptp(range_ref)) or 1.0
    got = image_metrics(est, ref, data_range=data_range)
    base = image_metrics(np.full_like(ref, float(np.mean(ref))), ref, data_range=data_range)
    return {"ssim": got["ssim"], "ssim_baseline": base["ssim"], "psnr": got["psnr"],
            "psnr_baseline": base["psnr"], "frc50": got["frc50"], "r": pearson_r(est, ref)}


def upstream_scores(est_obj, ref_obj) -> dict[str, float]:
    """Scores :data:`SCORE_KEYS` of the complex reconstruction ``est_obj`` against ``ref_obj``.

    Both are ``(H, W)`` complex on the scored region (e.g. ``obj[region]`` from
    :func:`ptycho.evaluation.evaluate_reconstruction`).

    * Amplitude: ``|est| / mean|est|`` against ``|ref| / mean|ref|``, data range
      ``ptp(|ref| / mean|ref|)``; the baseline is the constant 1 (the mean amplitude
      everywhere). A reconstruction of zero mean amplitude is scored as the constant 0.
    * Phase: the global phase offset removed (:func:`remove_global_phase`), then the phase
      difference to the truth unwrapped pixelwise (as in ``evaluate``), then the plane removed
      from estimate and truth separately; data range ``ptp`` of the plane-free truth (``2 pi``
      if flat); the baseline is a flat phase.
    """
    est = np.asarray(est_obj)
    ref = np.asarray(ref_obj)
    if est.shape != ref.shape or est.ndim != 2:
        raise ValueError(f"est_obj and ref_obj must be 2-D of equal shape; "
                         f"got {est.shape} and {ref.shape}")
    est = remove_global_phase(est.astype(np.complex128), ref.astype(np.complex128))
    amp_ref = np.abs(ref).astype(np.float64)
    amp_est = np.abs(est)
    ref_n = amp_ref / amp_ref.mean()
    mean_est = amp_est.mean()
    est_n = amp_est / mean_est if mean_est > 0 else np.zeros_like(amp_est)
    amp = _pair(est_n, ref_n, ref_n)

    ref_phase = np.angle(ref).astype(np.float64)
    est_phase = phase_near(est, ref)
    ref_p, est_p = plane_removed(ref_phase), plane_removed(est_phase)
    phase = _pair(est_p, ref_p, ref_p if np.ptp(ref_p) >= 1e-6 else np.array([0, 2 * np.pi]))

    out = {f"amp_norm_{k}": v for k, v in amp.items()}
    out.update({f"phase_plane_{k}": v for k, v in phase.items()})
    out["amp_frc50_px"] = frc50_px(amp["frc50"])
    out["phase_frc50_px"] = frc50_px(phase["frc50"])
    return {k: float(out[k]) for k in SCORE_KEYS}
