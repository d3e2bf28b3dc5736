"""Stitching: average a model's object patches into one object. Imports no TensorFlow.

Conventions (shared with :mod:`ptycho.evaluation`):

* ``N`` patch side in pixels; ``B`` number of patches (one per sample).
* patches ``(B, N, N)`` or ``(B, N, N, 1)`` complex: the model's object output, one per sample,
  centred on the sample's (group mean) scan position. Only the central ``N//2 x N//2`` window
  is meaningful (the rest is zero padding), so stitching uses a centred ``crop x crop`` window
  (default :func:`illuminated_crop`, the part inside the probe's support).
* positions ``(B, 2)`` or ``(B, 1, 2, 1)`` float, pixels, ordered ``(row, col)``. The patch at
  position ``p`` covers object pixels ``(p_row - N//2 + i, p_col - N//2 + j)`` for patch pixel
  ``(i, j)``; sub-pixel positions shift that grid continuously.
* objects ``(H, W)`` complex; region: a tuple ``(slice(r0, r1), slice(c0, c1))``.
"""

from __future__ import annotations

import numpy as np

from .diffsim import extract_patches

__all__ = ["stitch_patches", "covered_region", "illuminated_crop", "illumination"]

# Tolerance on coverage weights (bilinear weights sum to integers only up to rounding).
_WEIGHT_TOL = 1e-4
# Elements (patches x crop pixels) splatted per chunk in stitch_patches, to bound memory.
_CHUNK_ELEMENTS = 1 << 22


def _as_patches(patches) -> np.ndarray:
    arr = np.asarray(patches)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[1] == 0:
        raise ValueError(
            f"patches must have shape (B, N, N) or (B, N, N, 1); got {np.shape(patches)}"
        )
    return arr


def _as_positions(positions, n_patches: int) -> np.ndarray:
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[1] == 1 and arr.shape[2] == 2 and arr.shape[3] == 1:
        arr = arr[:, 0, :, 0]
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] != n_patches:
        raise ValueError(
            f"positions must have shape ({n_patches}, 2) or ({n_patches}, 1, 2, 1) to match "
            f"{n_patches} patches; got {np.shape(positions)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("positions contain non-finite values")
    return arr


def _as_pixel_weights(weights, n_patches: int, n: int) -> np.ndarray | None:
    """``weights`` as ``(B, N, N)`` float64 (an ``(N, N)`` array is shared by every patch)."""
    if weights is None:
        return None
    arr = np.asarray(weights, dtype=np.float64)
    if arr.shape == (n, n):
        arr = np.broadcast_to(arr, (n_patches, n, n))
    if arr.shape != (n_patches, n, n):
        raise ValueError(f"weights must have shape ({n}, {n}) or ({n_patches}, {n}, {n}) to "
                         f"match the patches; got {np.shape(weights)}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("weights must be finite and non-negative")
    return arr


def stitch_patches(
    patches, positions, object_shape, crop: int | None = None, *, method: str = "bilinear",
    weights=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Average object patches into one object.

    Parameters
    ----------
    patches : (B, N, N) or (B, N, N, 1) complex (real is accepted)
        Object patches, each centred on its position.
    positions : (B, 2) or (B, 1, 2, 1) float, pixels, (row, col)
        Position of each patch: patch pixel ``(i, j)`` lands on object pixel
        ``(p_row - N//2 + i, p_col - N//2 + j)``.
    object_shape : (H, W) ints
        Shape of the stitched object.
    crop : int, optional
        Side of the centred window of each patch that is used: patch pixels
        ``(N - crop)//2 ... (N - crop)//2 + crop - 1`` along each axis. Default ``N//2`` (the
        region the model predicts meaningfully). ``1 <= crop <= N``.
    method : {"bilinear", "nearest"}
        Sub-pixel handling. ``"bilinear"`` (default) splats each value onto the four nearest
        object pixels with bilinear weights (the adjoint of bilinear extraction);
        ``"nearest"`` rounds each position to the nearest pixel (halves round up). Both are
        identical for integer positions.
    weights : (N, N) or (B, N, N) float >= 0, optional
        A weight per patch pixel (e.g. :func:`illumination`), multiplying its contribution
        inside the window: each object pixel becomes the weighted mean of the patch pixels
        landing on it. Default: every pixel weighs 1.

    Returns
    -------
    obj : (H, W) complex64
        Weighted average of all contributions (``sum(w * value) / sum(w)``); 0 where nothing
        landed.
    weight : (H, W) float32
        Coverage per pixel: the number of patch windows covering it (with ``"bilinear"`` a sum
        of bilinear weights, equal to the count for integer positions; with ``weights``, the
        sum of the weights landed); 0 where nothing landed. Contributions falling outside the
        object are dropped.
    """
    arr = _as_patches(patches)
    n_patches, n = arr.shape[0], arr.shape[1]
    pos = _as_positions(positions, n_patches)
    try:
        height, width = (int(s) for s in object_shape)
    except (TypeError, ValueError):
        raise ValueError(f"object_shape must be (H, W); got {object_shape!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"object_shape must be positive (H, W); got {object_shape!r}")
    if crop is None:
        crop = max(n // 2, 1)
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or not 1 <= crop <= n:
        raise ValueError(f"crop must be an integer from 1 to N={n}; got {crop!r}")
    crop = int(crop)
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"method must be 'bilinear' or 'nearest'; got {method!r}")

    pixel_w = _as_pixel_weights(weights, n_patches, n)
    start = (n - crop) // 2
    window = arr[:, start : start + crop, start : start + crop].astype(np.complex128)
    if pixel_w is not None:
        pixel_w = pixel_w[:, start : start + crop, start : start + crop]
    # Continuous object coordinate of the window's first pixel, per patch and axis.
    origin = pos - n // 2 + start
    if method == "nearest":
        base = np.floor(origin + 0.5)
        corners = [((0, 0), np.ones(n_patches))]
    else:
        base = np.floor(origin)
        frac = origin - base
        fr, fc = frac[:, 0], frac[:, 1]
        corners = [
            ((0, 0), (1 - fr) * (1 - fc)),
            ((0, 1), (1 - fr) * fc),
            ((1, 0), fr * (1 - fc)),
            ((1, 1), fr * fc),
        ]
    base = base.astype(np.int64)

    size = height * width
    acc_re = np.zeros(size)
    acc_im = np.zeros(size)
    acc_w = np.zeros(size)
    offsets = np.arange(crop)
    chunk = max(1, _CHUNK_ELEMENTS // (crop * crop))
    for lo in range(0, n_patches, chunk):
        hi = min(lo + chunk, n_patches)
        vals = window[lo:hi]
        for (dr, dc), corner_w in corners:
            w = corner_w[lo:hi]
            keep = w > 0
            if not np.any(keep):
                continue
            rows = base[lo:hi, 0, None] + dr + offsets  # (b, crop)
            cols = base[lo:hi, 1, None] + dc + offsets  # (b, crop)
            valid = (
                keep[:, None, None]
                & ((rows >= 0) & (rows < height))[:, :, None]
                & ((cols >= 0) & (cols < width))[:, None, :]
            )
            if not np.any(valid):
                continue
            flat = (rows[:, :, None] * width + cols[:, None, :])[valid]
            wv = np.broadcast_to(w[:, None, None], valid.shape)
            if pixel_w is not None:
                wv = wv * pixel_w[lo:hi]
            wv = wv[valid]
            v = vals[valid] * wv
            acc_re += np.bincount(flat, weights=v.real, minlength=size)
            acc_im += np.bincount(flat, weights=v.imag, minlength=size)
            acc_w += np.bincount(flat, weights=wv, minlength=size)

    acc = acc_re + 1j * acc_im
    obj = np.zeros(size, dtype=np.complex128)
    landed = acc_w > 0
    obj[landed] = acc[landed] / acc_w[landed]
    return (
        obj.reshape(height, width).astype(np.complex64),
        acc_w.reshape(height, width).astype(np.float32),
    )


def covered_region(weight, min_weight: float = 1) -> tuple[slice, slice]:
    """Largest axis-aligned rectangle in which every pixel has ``weight >= min_weight``.

    Parameters
    ----------
    weight : (H, W) float
        Coverage weights, e.g. from :func:`stitch_patches`.
    min_weight : float
        Threshold, compared with a tolerance of 1e-4 (bilinear weights sum to integers only up
        to rounding).

    Returns
    -------
    (slice(r0, r1), slice(c0, c1))
        The rectangle of largest area (maximal-rectangle algorithm over the thresholded mask).
        Ties go to the first found, scanning bottom edges top to bottom, then left to right.

    Raises
    ------
    ValueError
        If ``weight`` is not 2-D or no pixel reaches ``min_weight``.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D (H, W) array; got shape {w.shape}")
    mask = w >= (min_weight - _WEIGHT_TOL)
    if not mask.any():
        raise ValueError(
            f"no pixel has weight >= {min_weight} (max weight {w.max() if w.size else 0.0}); "
            "nothing is covered"
        )
    height, width = mask.shape
    heights = np.zeros(width, dtype=np.int64)
    best_area, best = 0, (0, 1, 0, 1)
    for r in range(height):
        # Heights of the runs of covered pixels ending at row r, per column.
        heights = np.where(mask[r], heights + 1, 0)
        h_list = heights.tolist() + [0]
        stack: list[int] = []  # column indices with increasing heights
        for c, h in enumerate(h_list):
            while stack and h_list[stack[-1]] >= h:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = h_list[top] * (c - left)
                if area > best_area:
                    best_area = area
                    best = (r + 1 - h_list[top], r + 1, left, c)
            stack.append(c)
    r0, r1, c0, c1 = best
    return (slice(r0, r1), slice(c0, c1))


def illuminated_crop(N: int) -> int:
    """Side of the centred window of an ``N x N`` patch that lies inside the probe's support
    disc of radius ``N/4`` (the inscribed square has side ``N / (2 sqrt 2)``): ``N // 4``, at
    least 1. With the test grid's step of ``N/4`` these windows tile the scan area."""
    return max(1, int(N) // 4)


def illumination(probe, offsets) -> np.ndarray:
    """How strongly each pixel of a sample's object patch was lit: ``(B, N, N)`` float64.

    Parameters
    ----------
    probe : (N, N) complex
        The illumination.
    offsets : (B, 1, 2, C) or (B, 2, C) float, pixels, (row, col)
        Each pattern's position relative to its group's centre (``coords_relative`` of
        :class:`ptycho.simulation.DiffractionData`; zero for gridsize 1).

    Returns
    -------
    (B, N, N) float64
        ``sum_c |P(r - o_c)|**2``: the probe intensity of each of the group's ``C`` patterns
        on the patch centred on the group, shifted by its offset (bilinear, zero outside:
        :func:`ptycho.diffsim.extract_patches`).
        As ``weights`` of :func:`stitch_patches` it averages overlapping patches as the
        object update of ePIE-type ptychography does, each pixel by how many photons saw it.
    """
    intensity = np.abs(np.asarray(probe)) ** 2
    if intensity.ndim != 2 or intensity.shape[0] != intensity.shape[1]:
        raise ValueError(f"probe must be square (N, N); got shape {np.shape(probe)}")
    off = np.asarray(offsets, dtype=np.float64)
    if off.ndim == 4 and off.shape[1] == 1:
        off = off[:, 0]
    if off.ndim != 3 or off.shape[1] != 2:
        raise ValueError("offsets must have shape (B, 1, 2, C) or (B, 2, C); "
                         f"got {np.shape(offsets)}")
    # Pattern c lights patch pixel (i, j) with |P|^2 at (i - o_row, j - o_col): the patch of
    # |P|^2 centred on N//2 - o (bilinear, zero outside), as the simulation cuts object patches.
    n = intensity.shape[0]
    centres = n // 2 - np.moveaxis(off, 1, 2)  # (B, C, 2)
    return extract_patches(intensity, centres, n).real.astype(np.float64).sum(axis=1)
