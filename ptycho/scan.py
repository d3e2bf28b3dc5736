"""Scan geometry: where the probe goes (numpy + scipy only; no TensorFlow).

Positions are in object pixels, ordered ``(row, col)``; a group is ``C = gridsize**2``
positions whose channels follow the ``gridsize x gridsize`` raster row-major (see
``ptycho.simulation`` for the patch convention).

Scannable area: a patch plus ``buffer`` pixels stays inside an object of side ``S`` when every
position coordinate lies in ``[N//2 + buffer, S - buffer - (N - N//2)]`` (this also keeps the
extra pixel read by bilinear interpolation inside).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ._validate import as_positions, nonneg_float, positive_int

__all__ = [
    "scan_range",
    "random_positions",
    "grid_positions",
    "grid_centres",
    "group_positions",
    "group_neighbors",
]


def scan_range(object_size: int, N: int, buffer: float = 0.0) -> tuple[float, float]:
    """Range ``(lo, hi)`` of a position coordinate whose patch plus ``buffer`` fits the object.

    ``lo = N//2 + buffer``, ``hi = object_size - buffer - (N - N//2)`` (pixels). Raises
    ValueError if ``hi < lo`` (the object is too small).
    """
    lo = N // 2 + buffer
    hi = object_size - buffer - (N - N // 2)
    if hi < lo:
        raise ValueError(f"object of side {object_size} cannot hold a patch of N={N} with "
                         f"buffer {buffer}: needs side >= {N + 2 * buffer}")
    return float(lo), float(hi)


def random_positions(n: int, object_size: int, N: int, buffer: float,
                     rng: np.random.Generator) -> np.ndarray:
    """``n`` positions uniform over the scannable area of the object.

    Each coordinate is uniform in :func:`scan_range` ``(object_size, N, buffer)``, so the patch
    plus ``buffer`` pixels stays inside the object.

    Args:
        n: number of positions (>= 1).
        object_size: object side in pixels.
        N: patch side in pixels.
        buffer: margin in pixels (>= 0) between the patch and the object edge.
        rng: numpy Generator.

    Returns:
        ``(n, 2) float64`` positions ``(row, col)`` in object pixels.

    Raises:
        ValueError: bad arguments or an object too small for ``N + 2 * buffer``.
    """
    n = positive_int("n", n)
    object_size = positive_int("object_size", object_size)
    N = positive_int("N", N)
    buffer = nonneg_float("buffer", buffer)
    lo, hi = scan_range(object_size, N, buffer)
    return rng.uniform(lo, hi, size=(n, 2))


def grid_positions(object_size: int, N: int, step: float, buffer: float) -> np.ndarray:
    """A raster of positions with spacing ``step`` centred in the scannable area.

    Per axis: ``n = floor((hi - lo) / step) + 1`` coordinates ``lo + shift + k * step`` with
    ``(lo, hi)`` from :func:`scan_range` and ``shift = floor((hi - lo - (n - 1) * step) / 2)``
    (so integer ``step`` and ``buffer`` give integer positions).

    Args:
        object_size: object side in pixels.
        N: patch side in pixels.
        step: raster spacing in pixels (> 0).
        buffer: margin in pixels (>= 0) between the patch and the object edge.

    Returns:
        ``(n * n, 2) float64`` positions ``(row, col)``, row-major (rows outer).

    Raises:
        ValueError: bad arguments or an object too small.
    """
    object_size = positive_int("object_size", object_size)
    N = positive_int("N", N)
    step = nonneg_float("step", step, positive=True)
    buffer = nonneg_float("buffer", buffer)
    lo, hi = scan_range(object_size, N, buffer)
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    shift = math.floor((hi - lo - (n - 1) * step) / 2 + 1e-9)
    axis = lo + shift + step * np.arange(n)
    rr, cc = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def _raster_offsets(gridsize: int, offset: float) -> np.ndarray:
    """``(C, 2)`` offsets ``(row, col)`` of a gridsize x gridsize raster centred on 0."""
    a = (np.arange(gridsize) - (gridsize - 1) / 2) * offset
    rr, cc = np.meshgrid(a, a, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def group_positions(centres, gridsize: int, offset: float, jitter: float = 0.0,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Groups of ``C = gridsize**2`` positions on a raster around each centre.

    Channel ``k = a * gridsize + b`` (row-major) sits at
    ``centre + ((a - (gridsize-1)/2) * offset, (b - (gridsize-1)/2) * offset)`` plus independent
    Gaussian jitter of standard deviation ``jitter`` pixels per coordinate. For ``gridsize = 1``
    that is the centre (+ jitter).

    Args:
        centres: ``(B, 2)`` group centres ``(row, col)`` in object pixels.
        gridsize: 1 to 3 (any integer >= 1 works).
        offset: raster spacing in pixels (>= 0).
        jitter: standard deviation of the jitter in pixels (>= 0).
        rng: numpy Generator; required when ``jitter > 0`` (not used otherwise).

    Returns:
        ``(B, C, 2) float64`` positions.

    Raises:
        ValueError: bad shapes or arguments, or ``jitter > 0`` without ``rng``.
    """
    c = as_positions(centres, "centres")
    if c.ndim != 2:
        raise ValueError(f"centres must have shape (B, 2); got {c.shape}")
    gridsize = positive_int("gridsize", gridsize)
    offset = nonneg_float("offset", offset)
    jitter = nonneg_float("jitter", jitter)
    pos = c[:, None, :] + _raster_offsets(gridsize, offset)[None]
    if jitter > 0:
        if rng is None:
            raise ValueError("rng is required when jitter > 0")
        pos = pos + rng.normal(0.0, jitter, size=pos.shape)
    return pos


def group_neighbors(positions, gridsize: int, n_groups: int, rng: np.random.Generator,
                    k: int | None = None) -> np.ndarray:
    """PtychoPINN-style grouping of a (random) scan into groups of true spatial neighbours.

    For each group a seed position is drawn uniformly (with replacement across groups); its
    ``k`` nearest positions (``scipy.spatial.cKDTree``; the seed itself, at distance 0, first)
    are found and the group is the seed plus ``C - 1`` of the other ``k - 1`` drawn without
    replacement. The C members are then put in best-effort raster order: sorted by row, split
    into ``gridsize`` rows of ``gridsize``, each sorted by column.

    Args:
        positions: ``(P, 2)`` scan positions ``(row, col)``.
        gridsize: ``C = gridsize**2`` members per group.
        n_groups: number of groups (>= 1).
        rng: numpy Generator.
        k: neighbourhood size, ``C <= k <= P``; default ``min(P, C + 3)`` (7 for gridsize 2,
            PtychoPINN's K) and 1 for gridsize 1.

    Returns:
        ``(n_groups, C) int64`` indices into ``positions``; every member is within the distance
        of the seed's ``k``-th nearest neighbour from the seed.

    Raises:
        ValueError: bad shapes, fewer than C positions, or ``k`` out of range.
    """
    pos = as_positions(positions)
    if pos.ndim != 2:
        raise ValueError(f"positions must have shape (P, 2); got {pos.shape}")
    gridsize = positive_int("gridsize", gridsize)
    n_groups = positive_int("n_groups", n_groups)
    C = gridsize**2
    P = len(pos)
    if P < C:
        raise ValueError(f"need at least C={C} positions for gridsize {gridsize}; got {P}")
    if k is None:
        k = 1 if C == 1 else min(P, C + 3)
    k = positive_int("k", k)
    if not C <= k <= P:
        raise ValueError(f"k must satisfy C={C} <= k <= P={P}; got {k}")
    seeds = rng.integers(0, P, size=n_groups)
    if C == 1:
        return seeds[:, None].astype(np.int64)
    _, nn = cKDTree(pos).query(pos[seeds], k=k)
    nn = np.asarray(nn, dtype=np.int64).reshape(n_groups, k)
    # Column 0 is the seed (or an exact duplicate of its position). Draw C-1 of the others.
    pick = np.argsort(rng.random((n_groups, k - 1)), axis=1)[:, : C - 1] + 1
    members = np.concatenate([nn[:, :1], np.take_along_axis(nn, pick, axis=1)], axis=1)
    # Best-effort raster order: by row, then by column within each raster row.
    mp = pos[members]
    order = np.argsort(mp[..., 0], axis=1, kind="stable")
    members = np.take_along_axis(members, order, axis=1).reshape(n_groups, gridsize, gridsize)
    cols = pos[members][..., 1]
    members = np.take_along_axis(members, np.argsort(cols, axis=2, kind="stable"), axis=2)
    return members.reshape(n_groups, C)


def _grid_axis(lo: float, hi: float, side: int, max_step: int | None = None) -> np.ndarray:
    """``side`` coordinates with an integer step (>= 1, <= ``max_step``) spanning ``[lo, hi]``
    as far as it can, centred; fewer if ``hi - lo < side - 1``."""
    span = hi - lo
    side = max(1, min(side, int(math.floor(span)) + 1))
    if side == 1:
        return np.array([lo + math.floor(span / 2)])
    step = max(1, int(math.floor(span / (side - 1))))
    if max_step is not None:
        step = max(1, min(step, int(max_step)))
    shift = math.floor((span - step * (side - 1)) / 2)
    return lo + shift + step * np.arange(side)


def grid_centres(object_size: int, N: int, buffer: float, n: int) -> np.ndarray:
    """About ``n`` group centres on a square grid: ``floor(sqrt(n))`` per axis, with a step of
    at most ``N // 4`` pixels so the central ``N/2`` windows overlap (2x) and tile a
    contiguous region without holes.

    Returns:
        ``(side**2, 2) float64`` centres ``(row, col)`` in object pixels, row-major, with
        ``side = floor(sqrt(n))`` (fewer if the object is too small for one-pixel steps).
    """
    lo, hi = scan_range(object_size, N, buffer)
    axis = _grid_axis(lo, hi, max(1, math.isqrt(n)), max_step=max(1, N // 4))
    rr, cc = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)
