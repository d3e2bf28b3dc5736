"""Simulated ptychographic diffraction data sets (numpy + scipy only; no TensorFlow).

The forward model (PtychoPINN conventions, see DESIGN.md section 3) is :mod:`ptycho.diffsim`:
exit wave ``psi = P * patch(obj, p)``, far field ``F``, expected counts ``lam = s**2 |F|**2``.
Here a data set gets one global scale ``s``, chosen so that the mean over all patterns of the
total expected counts equals ``nphotons``; measured counts are ``Poisson(lam)`` and the stored
data are amplitudes ``X = sqrt(counts)``.

Glossary (shared with the rest of ``ptycho/``):

* ``N`` patch and pattern side in pixels; ``C = gridsize**2`` patterns per sample (group);
  ``B`` samples.
* positions are in object pixels, ordered ``(row, col)``. The patch "at position ``p``" has
  ``obj[p_row - N//2 + i, p_col - N//2 + j]`` at patch pixel ``(i, j)``, with bilinear
  interpolation for sub-pixel positions and zero outside the object.
* images ``(B, N, N, C)``; positions ``(B, 1, 2, C)`` (axis 2 = (row, col)); within a group the
  channels follow the ``gridsize x gridsize`` raster row-major.

Scan geometry (where the probe goes, and how positions are grouped) lives in
:mod:`ptycho.scan`, the forward operators in :mod:`ptycho.diffsim`; their public functions are
re-exported here under their old names.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ._validate import as_positions, nonneg_float
from .config import ModelConfig, SimulationConfig
from .diffsim import as_object, diffract, extract_patches, simulate_counts
from .objects import make_object
from .probe import probe_for
from .scan import (
    grid_centres,
    grid_positions,
    group_neighbors,
    group_positions,
    random_positions,
    scan_range,
)

__all__ = [
    "DiffractionData",
    "extract_patches",
    "diffract",
    "random_positions",
    "grid_positions",
    "group_positions",
    "group_neighbors",
    "simulate",
    "simulate_unit",
    "scan_range",
]

#: Salt mixed into the seed for the test object and the random streams of :func:`simulate_unit`.
_TEST_SALT = 0x7E57


# --------------------------------------------------------------------------------------------
# Data container
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)  # arrays: compare fields explicitly, not with ==
class DiffractionData:
    """A simulated data set of ``B`` samples of ``C`` diffraction patterns each.

    Attributes:
        X: ``(B, N, N, C) float32`` measured diffraction amplitudes ``sqrt(counts)`` (counts
            units), DC at pixel ``(N // 2, N // 2)``.
        coords: ``(B, 1, 2, C) float32`` absolute scan positions ``(row, col)`` of each pattern in
            object pixels.
        coords_relative: ``(B, 1, 2, C) float32`` ``coords`` minus the mean position of its group
            (the offsets by which the model reassembles the C patches); zero for ``C = 1``.
        patches: ``(B, N, N, C) complex64`` ground-truth object patches at ``coords``.
        probe: ``(N, N) complex64`` illumination used for the simulation.
        obj: ``(H, W) complex64`` ground-truth object.
        intensity_scale: amplitude scale ``s`` (float): noiseless ``X = s * |diffract(probe *
            patch)|``, i.e. expected counts ``= s**2 |F|**2``.
        nphotons: nominal dose (float), expected photons per pattern; for the set whose scale was
            fitted the mean expected total counts per pattern equal it exactly.
    """

    X: np.ndarray
    coords: np.ndarray
    coords_relative: np.ndarray
    patches: np.ndarray
    probe: np.ndarray
    obj: np.ndarray
    intensity_scale: float
    nphotons: float

    def __post_init__(self):
        if self.X.ndim != 4 or self.X.shape[1] != self.X.shape[2]:
            raise ValueError(f"X must be (B, N, N, C); got shape {self.X.shape}")
        B, N, _, C = self.X.shape
        for name, shape in (("coords", (B, 1, 2, C)), ("coords_relative", (B, 1, 2, C)),
                            ("patches", (B, N, N, C)), ("probe", (N, N))):
            actual = getattr(self, name).shape
            if actual != shape:
                raise ValueError(f"{name} must have shape {shape} to match X {self.X.shape}; "
                                 f"got {actual}")
        if self.obj.ndim != 2:
            raise ValueError(f"obj must be (H, W); got shape {self.obj.shape}")
        if math.isqrt(C) ** 2 != C:
            raise ValueError(f"C = X.shape[3] must be a perfect square gridsize**2; got {C}")

    @property
    def B(self) -> int:
        """Number of samples (groups)."""
        return self.X.shape[0]

    @property
    def N(self) -> int:
        """Pattern side in pixels."""
        return self.X.shape[1]

    @property
    def C(self) -> int:
        """Patterns per sample, ``gridsize**2``."""
        return self.X.shape[3]

    @property
    def gridsize(self) -> int:
        """``sqrt(C)``."""
        return math.isqrt(self.C)

    @property
    def norm_X(self) -> np.ndarray:
        """``(B, N, N, C) float32`` ``X / intensity_scale``: the amplitudes the network sees."""
        return (self.X / np.float32(self.intensity_scale)).astype(np.float32, copy=False)

    def subset(self, idx) -> DiffractionData:
        """The samples ``idx`` (anything that indexes axis 0: slice, int array, bool mask).

        Batch arrays are indexed (copied for fancy indices); ``probe`` and ``obj`` are shared.
        """
        if isinstance(idx, (int, np.integer)):
            idx = [idx]
        return DiffractionData(
            X=self.X[idx], coords=self.coords[idx], coords_relative=self.coords_relative[idx],
            patches=self.patches[idx], probe=self.probe, obj=self.obj,
            intensity_scale=self.intensity_scale, nphotons=self.nphotons,
        )


def _to_bnnc(a: np.ndarray, B: int, C: int) -> np.ndarray:
    """``(B*C, N, N)`` -> ``(B, N, N, C)`` (contiguous)."""
    N = a.shape[-1]
    return np.ascontiguousarray(a.reshape(B, C, N, N).transpose(0, 2, 3, 1))


def simulate(obj, probe, positions, nphotons: float, rng: np.random.Generator,
             intensity_scale: float | None = None, workers: int | None = None) -> DiffractionData:
    """Simulate noisy diffraction amplitudes of ``obj`` under ``probe`` at ``positions``.

    ``psi = probe * patch`` (:func:`extract_patches`), noiseless intensities
    ``|fftshift(fft2(psi, norm='ortho'))|**2``, one global scale ``s**2`` such that the mean over
    all ``B * C`` patterns of the total expected counts equals ``nphotons`` (unless
    ``intensity_scale`` is given, then ``s = intensity_scale``), counts
    ``= rng-derived Poisson(s**2 |F|**2)`` (exact Poisson draws, int64, no overflow for any
    finite dose numpy accepts) and ``X = sqrt(counts)``.

    The work runs in fixed chunks of patterns on ``workers`` threads; each chunk has its own
    random stream derived from ``rng``, so the result depends on the state of ``rng`` only (not
    on ``workers``).

    Args:
        obj: ``(H, W)`` complex object.
        probe: ``(N, N)`` complex probe.
        positions: ``(B, C, 2)`` positions ``(row, col)`` in object pixels, ``C`` a perfect
            square, channels in row-major raster order.
        nphotons: expected photons per pattern (> 0).
        rng: numpy Generator (consumed: a second call with the same generator gives new noise).
        intensity_scale: fixed amplitude scale ``s`` (> 0); ``None`` fits it to ``nphotons``.
        workers: threads (default: the cores this process may use, its CPU affinity).

    Returns:
        :class:`DiffractionData` with ``X (B, N, N, C) float32``, ``coords (B, 1, 2, C)``, ...

    Raises:
        ValueError: bad shapes (expected vs actual in the message) or arguments.
    """
    obj = as_object(obj)
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"probe must be square (N, N); got shape {probe.shape}")
    probe = probe.astype(np.complex64, copy=False)
    pos = as_positions(positions)
    if pos.ndim != 3:
        raise ValueError(f"positions must have shape (B, C, 2); got {pos.shape}")
    B, C, _ = pos.shape
    if B < 1 or C < 1 or math.isqrt(C) ** 2 != C:
        raise ValueError(f"positions must be (B, C, 2) with B >= 1 and C a perfect square; "
                         f"got {pos.shape}")
    nphotons = nonneg_float("nphotons", nphotons, positive=True)
    if intensity_scale is not None:
        intensity_scale = nonneg_float("intensity_scale", intensity_scale, positive=True)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    if workers is None:  # the cores this process may use (its affinity, where there is one)
        affinity = getattr(os, "sched_getaffinity", None)
        workers = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    workers = max(1, int(workers))

    X, patches, s = simulate_counts(obj, probe, pos.reshape(B * C, 2), nphotons, rng,
                                   intensity_scale, workers)
    coords = pos.transpose(0, 2, 1)[:, None, :, :]  # (B, 1, 2, C)
    rel = coords - coords.mean(axis=3, keepdims=True)
    return DiffractionData(
        X=_to_bnnc(X, B, C),
        coords=coords.astype(np.float32),
        coords_relative=rel.astype(np.float32),
        patches=_to_bnnc(patches, B, C),
        probe=probe,
        obj=obj,
        intensity_scale=float(s),
        nphotons=nphotons,
    )



def simulate_unit(model_cfg: ModelConfig, nphotons: float, sim_cfg: SimulationConfig,
                  probe=None, workers: int | None = None
                  ) -> tuple[DiffractionData, DiffractionData]:
    """Training and test sets for one (N, gridsize, dose) unit.

    * Probe: ``probe`` or ``ptycho.probe.probe_for(model_cfg)`` (the default probe with the
      config's ``probe_scale``, ``probe_mask``, ``probe_coma`` and ``probe_defocus``).
    * Train: object ``make_object(kind, object_size, seed, max_phase, feature_scale_for(N),
      amp_contrast)``. Scan ``'random'``: ``n_train`` group centres uniform over the area
      where the whole group fits (margin ``scan_buffer + offset * (gridsize - 1) / 2``), then
      :func:`group_positions` with spacing ``model_cfg.offset`` and jitter ``sim_cfg.jitter``
      (exact raster groups, which the model's reassembly canvas of ``padded_size`` is sized
      for). Scan ``'grid'``: the grid rule below with ``n_train``.
    * Test: a different object of the same kind and size (seed derived from ``sim_cfg.seed``),
      group centres on a square grid of ``floor(sqrt(n_test))`` per axis (so ``B_test =
      floor(sqrt(n_test))**2``; fewer if the object is too small for one-pixel steps), integer
      step ``min(floor(span / (side - 1)), N // 4)``, centred in the scannable area (so the
      central ``N/2`` windows overlap and the scored region has no holes); groups as above;
      ``intensity_scale = train.intensity_scale`` (one instrument scale for both sets).
    * After jitter, positions are clipped so every patch stays inside the object.
    * Everything (objects, scan, noise) is deterministic for ``sim_cfg.seed``.

    Args:
        model_cfg: gives ``N``, ``gridsize``, ``offset`` and the probe's settings.
        nphotons: expected photons per pattern (> 0).
        sim_cfg: object, scan and sizes.
        probe: optional ``(N, N)`` complex probe.
        workers: threads for the FFTs and noise (default: the cores this process may use);
            a runner's task passes its unit's thread budget. Results do not depend on it.

    Returns:
        ``(train, test)`` :class:`DiffractionData`.

    Raises:
        ConfigError: the object cannot hold a group (``sim_cfg.check_compatible``).
        ValueError: bad ``nphotons`` or probe shape.
    """
    sim_cfg.check_compatible(model_cfg)
    N, g, offset = model_cfg.N, model_cfg.gridsize, model_cfg.offset
    nphotons = nonneg_float("nphotons", nphotons, positive=True)
    if probe is None:
        probe = probe_for(model_cfg)
    probe = np.asarray(probe)
    if probe.shape != (N, N):
        raise ValueError(f"probe must have shape ({N}, {N}) for N={N}; got {probe.shape}")
    probe = probe.astype(np.complex64, copy=False)

    size, buf = sim_cfg.object_size, sim_cfg.scan_buffer
    half = offset * (g - 1) / 2
    group_buf = buf + half
    lo_in, hi_in = scan_range(size, N, 0)  # patch inside the object

    root = np.random.SeedSequence([sim_cfg.seed, _TEST_SALT])
    scan_seq, train_noise_seq, test_jitter_seq, test_noise_seq, test_obj_seq = root.spawn(5)
    test_seed = int(test_obj_seq.generate_state(1, np.uint32)[0])

    def groups(centres, seq):
        rng = np.random.default_rng(seq)
        pos = group_positions(centres, g, offset, sim_cfg.jitter, rng)
        return np.clip(pos, lo_in, hi_in)

    # Train.
    feature_scale = sim_cfg.feature_scale_for(N)
    train_obj = make_object(sim_cfg.object_kind, size, sim_cfg.seed, sim_cfg.max_phase,
                            feature_scale, sim_cfg.amp_contrast)
    if sim_cfg.scan == "random":
        scan_rng = np.random.default_rng(scan_seq)
        centres = random_positions(sim_cfg.n_train, size, N, group_buf, scan_rng)
        train_pos = groups(centres, scan_rng)
    else:
        train_pos = groups(grid_centres(size, N, group_buf, sim_cfg.n_train), scan_seq)
    train = simulate(train_obj, probe, train_pos, nphotons, np.random.default_rng(train_noise_seq),
                     workers=workers)

    # Test: a different object on a regular grid, same instrument scale.
    test_obj = make_object(sim_cfg.object_kind, size, test_seed, sim_cfg.max_phase,
                           feature_scale, sim_cfg.amp_contrast)
    test_pos = groups(grid_centres(size, N, group_buf, sim_cfg.n_test), test_jitter_seq)
    test = simulate(test_obj, probe, test_pos, nphotons, np.random.default_rng(test_noise_seq),
                    intensity_scale=train.intensity_scale, workers=workers)
    return train, test
