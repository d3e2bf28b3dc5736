"""Argument checks shared by the numpy side of ``ptycho/`` (simulation and scan geometry).

Each returns the value in canonical form or raises ValueError naming the argument.
"""

from __future__ import annotations

import math

import numpy as np


def positive_int(name, value, lo=1):
    """``value`` as an int >= ``lo`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    return int(value)


def nonneg_float(name, value, positive=False):
    """``value`` as a finite float, > 0 if ``positive`` else >= 0 (bools rejected)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}; "
                         f"got {value!r}")
    return float(value)


def as_positions(positions, name="positions") -> np.ndarray:
    """``positions`` as a finite float64 array of shape ``(..., 2)`` (row, col)."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim < 1 or pos.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., 2) (row, col); got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{name} must be finite")
    return pos

