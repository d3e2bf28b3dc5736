"""The default illumination (probe) and its support mask.

The probe is a focused beam: a disc aperture in Fourier space (a low-pass pupil) carrying a
quadratic (defocus) phase, inverse Fourier transformed to real space. In focus its intensity is an
Airy pattern; the default defocus (a quarter wave at the aperture edge) curves its wavefront
without changing its width much. An optional coma (``coma`` radians, ``ModelConfig.probe_coma``)
makes the probe's intensity asymmetric.

Why a stronger defocus (``defocus``, ``ModelConfig.probe_defocus``): the default aperture is
about 2.4 Fourier pixels wide, so the unscattered beam (the bright field) covers a few dozen of
the ``N**2`` detector pixels. Outside it the counts are the sample's scattering alone, which
depends on a weak sample's contrast to second order; only inside it does the scattering
interfere with the beam, to first order. A wider aperture (smaller ``probe_scale``) widens the
bright field but shrinks the in-focus probe; a wave or more of defocus spreads it again, so the
probe can cover the same area with a bright field ten times larger (``probe_scale = 0.1``,
``defocus = 2 pi``). Measured on a weak sample (docs/quality.md, round 12), it neither shortened
the network's early plateau nor made the patterns tell the sample from a constant object more
sharply (half the Poisson KL at the same dose): an option to study, not a better default.

Why coma: with a probe whose modulus is centro-symmetric (``|P(r)| = |P(-r)|``, true of the default
probe) a single diffraction pattern cannot tell an object patch ``O(r)`` from its twin, the patch
rotated by 180 degrees and conjugated (times a smooth phase): both give the same counts. Gridsize 1
then has no way to choose (docs/quality.md, round 2). Coma, an odd phase across the pupil, makes
``|P(r)| != |P(-r)|``, so the twin is no longer a valid object and the data decide.

Conventions shared with the rest of ``ptycho/``: arrays are ``(N, N)``, the probe is centred at
pixel ``(N // 2, N // 2)`` and normalised to ``max |P| = 1``. Units: pixels of the ``N x N``
real-space grid; Fourier-space radii are in pixels of the ``N x N`` frequency grid (one pixel
``= 1 / N`` cycles per real-space pixel).

Mapping of ``probe_scale`` (legacy ``params.cfg['default_probe_scale']``, default 0.5): the
aperture radius is ``1.22 / probe_scale`` Fourier pixels, so the first dark ring of the in-focus
probe lies at radius ``0.61 * N / (1.22 / probe_scale) = probe_scale * N / 2`` real-space pixels.
At the default 0.5 that is ``N / 4``, the mask radius: the probe falls smoothly to its first
zero at the edge of its support, so the mask cuts nothing and adds no hard edge. At 0.7 (``0.35
N``, 1.4 times the mask radius) the masked probe still carries about 0.35 of its peak amplitude
at the mask edge, a hard edge whose diffraction spreads over the whole detector. Larger
``probe_scale`` = wider probe.

Imports no TensorFlow at import time; ``get_default_probe(..., fmt='tf')`` imports it lazily.
"""

from __future__ import annotations

import math

import numpy as np

from .config import DEFAULT_PROBE_DEFOCUS, SUPPORTED_N

__all__ = ["get_probe_mask", "get_default_probe", "probe_for", "rotate_180", "APERTURE_CONSTANT",
           "DEFOCUS_EDGE_PHASE"]

#: Fourier aperture radius in Fourier pixels = ``APERTURE_CONSTANT / probe_scale``.
APERTURE_CONSTANT = 1.22
#: The default defocus phase at the aperture edge in radians (``ptycho.config``).
DEFOCUS_EDGE_PHASE = DEFAULT_PROBE_DEFOCUS

_FORMATS = ("tf", "np")


def _check_N(N) -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or int(N) not in SUPPORTED_N:
        raise ValueError(
            f"N must be a power of two from 16 to 256 (one of {SUPPORTED_N}); got {N!r}"
        )
    return int(N)


def _radius_grid(N: int) -> np.ndarray:
    """``(N, N) float64`` distance in pixels of each pixel from ``(N // 2, N // 2)``."""
    k = np.arange(N, dtype=np.float64) - N // 2
    return np.hypot(k[:, None], k[None, :])


def get_probe_mask(N: int) -> np.ndarray:
    """The probe support: the open disc of radius ``N / 4`` pixels centred at ``(N // 2, N // 2)``.

    Strictly inside the radius, so the support lies within the central ``N/2 x N/2`` window
    (rows and columns ``N/4 ... 3N/4 - 1``) that the model predicts.

    Args:
        N: patch side in pixels, a power of two from 16 to 256.

    Returns:
        ``(N, N) float32``: 1 where the distance to ``(N // 2, N // 2)`` is ``< N / 4``
        pixels, 0 elsewhere.

    Raises:
        ValueError: ``N`` is not one of 16, 32, 64, 128, 256.
    """
    N = _check_N(N)
    return (_radius_grid(N) < N / 4).astype(np.float32)


def _probe_np(N: int, probe_scale: float, mask: bool, coma: float,
              defocus: float) -> np.ndarray:
    kr = _radius_grid(N)  # Fourier-pixel radius, DC at (N // 2, N // 2)
    rk = APERTURE_CONSTANT / probe_scale
    # Disc aperture with a one-pixel linear (anti-aliased) edge, so the probe varies
    # continuously with probe_scale.
    aperture = np.clip(rk - kr + 0.5, 0.0, 1.0)
    rho = kr / rk  # 1 at the aperture edge
    phase = defocus * rho**2
    if coma:
        # Zernike primary coma (3 rho^3 - 2 rho) cos(theta), theta from the (1, 1) diagonal so
        # both axes are asymmetric; its -2 rho tilt keeps the probe near the centre.
        k = np.arange(N, dtype=np.float64) - N // 2
        u = (k[:, None] + k[None, :]) / (math.sqrt(2.0) * rk)  # rho cos(theta)
        phase = phase + coma * (3.0 * rho**2 - 2.0) * u
    pupil = aperture * np.exp(1j * phase)
    # ifftshift moves DC to index 0; fftshift centres the real-space probe at (N//2, N//2).
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    if mask:
        probe = probe * get_probe_mask(N)
    peak = np.abs(probe).max()
    if not peak > 0:  # pragma: no cover - the aperture always holds the DC pixel
        raise ValueError(f"probe_scale={probe_scale!r} gives an empty probe")
    return (probe / peak).astype(np.complex64)


def get_default_probe(N: int, fmt: str = "tf", probe_scale: float | None = None,
                      mask: bool = True, coma: float = 0.0,
                      defocus: float = DEFOCUS_EDGE_PHASE):
    """The default focused probe of side ``N``.

    A disc aperture of radius ``1.22 / probe_scale`` Fourier pixels with a defocus phase
    ``defocus * (k / k_edge)**2`` (default ``pi / 2``, a quarter wave at the edge), inverse
    FFT to real space, centred at ``(N // 2, N // 2)``, multiplied by :func:`get_probe_mask`
    when ``mask``, and normalised to ``max |P| = 1``. With ``coma`` the pupil also carries the
    primary coma ``coma * (3 k^3 - 2 k) cos(theta)`` (``k`` the radius over the aperture radius,
    ``theta`` from the (1, 1) diagonal): ``coma`` radians at the aperture edge. The in-focus probe's
    first dark ring has radius ``probe_scale * N / 2`` pixels: at the default 0.5 that is the
    mask radius ``N / 4``, so the probe covers the central ``N / 2`` region and falls smoothly
    to zero at its edge.

    Args:
        N: patch side in pixels, a power of two from 16 to 256.
        fmt: ``'tf'`` for a ``tf.Tensor`` (imports TensorFlow), ``'np'`` for a numpy array.
        probe_scale: width parameter (> 0, larger = wider probe). ``None`` reads the legacy
            ``ptycho.params.cfg['default_probe_scale']`` (default 0.5).
        mask: multiply by the disc of radius ``N / 4``.
        coma: coma in radians at the aperture edge (0, the default, keeps ``|P|``
            centro-symmetric; about 1 makes it clearly asymmetric, see the module docstring).
        defocus: defocus phase in radians at the aperture edge (see the module docstring).

    Returns:
        ``(N, N) complex64`` probe (``np.ndarray`` or ``tf.Tensor``), dimensionless,
        ``max |P| = 1``.

    Raises:
        ValueError: ``N`` not in 16..256 or not a power of two, unknown ``fmt``, or
            ``probe_scale`` not a finite number > 0, or ``coma`` or ``defocus`` not finite.
    """
    N = _check_N(N)
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}; got {fmt!r}")
    if probe_scale is None:
        from . import params

        probe_scale = params.cfg["default_probe_scale"]
    if (isinstance(probe_scale, bool) or not isinstance(probe_scale, (int, float, np.floating))
            or not math.isfinite(probe_scale) or probe_scale <= 0):
        raise ValueError(f"probe_scale must be a finite number > 0; got {probe_scale!r}")
    for name, value in (("coma", coma), ("defocus", defocus)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}")
    probe = _probe_np(N, float(probe_scale), bool(mask), float(coma), float(defocus))
    if fmt == "np":
        return probe
    import tensorflow as tf

    return tf.convert_to_tensor(probe, dtype=tf.complex64)


def probe_for(model_cfg) -> np.ndarray:
    """The default probe of a :class:`ptycho.config.ModelConfig` (its ``N``, ``probe_scale``,
    ``probe_mask``, ``probe_coma`` and ``probe_defocus``): ``(N, N) complex64`` numpy array. The
    one place the model and the simulation turn a configuration into a probe."""
    return get_default_probe(model_cfg.N, "np", model_cfg.probe_scale, mask=model_cfg.probe_mask,
                             coma=model_cfg.probe_coma, defocus=model_cfg.probe_defocus)


def rotate_180(a: np.ndarray) -> np.ndarray:
    """``a(-r)``: rotation by 180 degrees about pixel ``(N // 2, N // 2)`` over the last two
    axes (index ``j`` maps to ``-j mod N``), the geometry of the twin image for this centring."""
    return np.roll(np.asarray(a)[..., ::-1, ::-1], 1, axis=(-2, -1))
