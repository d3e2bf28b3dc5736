"""The numpy forward model of ptychography: patches, far-field diffraction, Poisson counts.

For an object ``obj`` and a probe ``P`` the exit wave at scan position ``p`` is
``psi = P * patch(obj, p)``, its far-field pattern ``F = fftshift(fft2(psi, norm='ortho'))``
(DC at pixel ``(N // 2, N // 2)``), and the expected counts ``s**2 |F|**2`` for a global scale
``s``. Positions and patch pixels follow the glossary of :mod:`ptycho.simulation`, which builds
data sets from these operators. numpy + scipy only; no TensorFlow.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft

from ._validate import as_positions, positive_int

__all__ = ["extract_patches", "diffract", "simulate_counts", "as_object"]

#: Target number of pixels per processing chunk (about 1 MB of float32): fixes the chunking, and
#: with it the random streams, independently of the number of worker threads.
_CHUNK_PIXELS = 1 << 18


def as_object(obj) -> np.ndarray:
    """``obj`` as a ``(H, W) complex64`` array; ValueError if it is not 2-D."""
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise ValueError(f"obj must be a 2-D (H, W) array; got shape {obj.shape}")
    return obj.astype(np.complex64, copy=False)


# --------------------------------------------------------------------------------------------
# Forward operators
# --------------------------------------------------------------------------------------------
def _pad_object(obj: np.ndarray, N: int) -> tuple[np.ndarray, int]:
    pad = N + 1
    return np.pad(obj, pad), pad


def _extract_padded(padded: np.ndarray, pad: int, pos: np.ndarray, N: int) -> np.ndarray:
    """Bilinear patches ``(P, N, N) complex64`` from a zero-padded object (see extract_patches)."""
    H, W = padded.shape
    fl = np.floor(pos)
    frac = (pos - fl).astype(np.float32)
    # Window start (top-left of the (N+1)x(N+1) window) in padded coordinates, clamped: a window
    # clamped to the border lies entirely in the zero padding, which is what it should read.
    r0 = np.clip(fl[:, 0].astype(np.int64) - N // 2 + pad, 0, H - N - 1)
    c0 = np.clip(fl[:, 1].astype(np.int64) - N // 2 + pad, 0, W - N - 1)
    win = np.lib.stride_tricks.sliding_window_view(padded, (N + 1, N + 1))[r0, c0]
    # Interpolate on the float32 (re, im) view: real weights times interleaved floats is half
    # the arithmetic of complex products. Column j of the complex window is floats 2j, 2j+1.
    w = win.view(np.float32)  # (P, N+1, 2N+2)
    fr = frac[:, 0, None, None]
    fc = frac[:, 1, None, None]
    rows = w[:, :N, :] * (1 - fr)  # (P, N, 2N+2)
    rows += w[:, 1:, :] * fr
    out = rows[:, :, : 2 * N] * (1 - fc)  # (P, N, 2N)
    out += rows[:, :, 2:] * fc
    return out.view(np.complex64)


def extract_patches(obj, positions, N: int) -> np.ndarray:
    """Patches of ``obj`` at ``positions`` by bilinear interpolation (vectorised).

    Patch pixel ``(i, j)`` at position ``p`` is ``obj(p_row - N//2 + i, p_col - N//2 + j)``,
    interpolated bilinearly for sub-pixel positions; object pixels outside ``obj`` read as 0.

    Args:
        obj: ``(H, W)`` complex (or real) object.
        positions: ``(P, 2)`` (or ``(..., 2)``) positions ``(row, col)`` in object pixels.
        N: patch side in pixels (>= 1).

    Returns:
        ``(P, N, N) complex64`` (leading shape of ``positions`` kept).

    Raises:
        ValueError: ``obj`` not 2-D, ``positions`` not ``(..., 2)`` or not finite, bad ``N``.
    """
    N = positive_int("N", N)
    obj = as_object(obj)
    pos = as_positions(positions)
    lead = pos.shape[:-1]
    flat = pos.reshape(-1, 2)
    padded, pad = _pad_object(obj, N)
    return _extract_padded(padded, pad, flat, N).reshape(*lead, N, N)


def diffract(exit_waves, workers: int = -1) -> np.ndarray:
    """Far-field amplitude ``|fftshift(fft2(psi, norm='ortho'))|`` over the last two axes.

    Unitary (Parseval): ``sum |out|**2 == sum |psi|**2`` per pattern. DC lands at pixel
    ``(N // 2, N // 2)``. Computed in single precision with ``scipy.fft``.

    Args:
        exit_waves: ``(..., N, N)`` complex exit waves (any units; amplitudes keep them).
        workers: threads for ``scipy.fft`` (-1 = all cores).

    Returns:
        ``(..., N, N) float32`` amplitudes.

    Raises:
        ValueError: fewer than 2 dimensions.
    """
    psi = np.asarray(exit_waves)
    if psi.ndim < 2:
        raise ValueError(f"exit_waves must be (..., N, N); got shape {psi.shape}")
    psi = psi.astype(np.complex64, copy=False)
    F = scipy.fft.fft2(psi, norm="ortho", workers=workers)
    amp = np.abs(F).astype(np.float32, copy=False)
    return np.fft.fftshift(amp, axes=(-2, -1))


# --------------------------------------------------------------------------------------------
# Noisy counts, chunked over threads
# --------------------------------------------------------------------------------------------
def _checkerboard(N: int) -> np.ndarray:
    """``(N, N) float32`` ``(-1)**(i + j)``: multiplying by it before an FFT of even size ``N``
    equals ``fftshift`` after it."""
    i = np.arange(N)
    return (1 - 2 * ((i[:, None] + i[None, :]) % 2)).astype(np.float32)


def _chunks(P: int, N: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // (N * N))
    return [slice(a, min(a + step, P)) for a in range(0, P, step)]


def _run(fn, items, workers: int):
    if workers <= 1 or len(items) <= 1:
        return [fn(i, it) for i, it in enumerate(items)]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, range(len(items)), items))


def simulate_counts(obj, probe, pos, nphotons, rng, intensity_scale, workers):
    """Noisy amplitudes at flat ``(P, 2)`` positions (the core of
    :func:`ptycho.simulation.simulate`, which validates the inputs).

    ``s`` is ``intensity_scale``, or if None the scale that makes the mean total expected
    counts per pattern ``nphotons``. Poisson draws come from one stream per fixed chunk of
    patterns (seeded from ``rng``), so they do not depend on ``workers`` (threads).

    Returns:
        ``(X, patches, s)``: ``X (P, N, N) float32`` amplitudes ``sqrt(counts)``, ``patches
        (P, N, N) complex64`` the object patches, ``s`` the scale used.
    """
    N = probe.shape[0]
    P = len(pos)
    chunks = _chunks(P, N)
    padded, pad = _pad_object(obj, N)
    even = N % 2 == 0
    probe_eff = probe * _checkerboard(N) if even else probe  # fftshift folded into the probe
    X = np.empty((P, N, N), dtype=np.float32)
    patches = np.empty((P, N, N), dtype=np.complex64)
    totals = np.empty(P, dtype=np.float64)

    def forward(_, sl):
        patch = _extract_padded(padded, pad, pos[sl], N)
        patches[sl] = patch
        psi = patch * probe_eff
        F = scipy.fft.fft2(psi, norm="ortho", overwrite_x=True, workers=1)
        if not even:
            F = np.fft.fftshift(F, axes=(-2, -1))
        I = X[sl]  # noiseless |F|^2 is stored in X until the noise pass
        np.multiply(F.real, F.real, out=I)
        I += F.imag * F.imag
        totals[sl] = I.reshape(len(I), -1).sum(axis=1, dtype=np.float64)

    _run(forward, chunks, workers)
    if intensity_scale is None:
        mean_total = totals.mean()
        if not mean_total > 0:
            raise ValueError("all exit waves are zero (object or probe is zero where scanned); "
                             "cannot scale to nphotons")
        s2 = float(nphotons) / mean_total
    else:
        s2 = float(intensity_scale) ** 2
    # One independent stream per chunk; the chunking depends only on (P, N), so the draws do
    # not depend on the number of threads.
    seq = np.random.SeedSequence(rng.integers(0, 2**63, size=4).tolist())
    streams = [np.random.default_rng(s) for s in seq.spawn(len(chunks))]

    def noise(i, sl):
        lam = np.multiply(X[sl], s2, dtype=np.float64)
        counts = streams[i].poisson(lam)
        np.sqrt(counts, out=X[sl], dtype=np.float32)

    _run(noise, chunks, workers)
    return X, patches, math.sqrt(s2)
