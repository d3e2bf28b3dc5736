"""How much a dose tells about the sample: the expected Poisson KL divergence of the true object's
patterns from those of a constant object, per pattern, for every unit of a sweep file.

A diagnostic of docs/quality.md (round 11). For each unit it simulates the training scan as
the default task does and takes the noiseless expected counts of every pattern, ``lam_t`` for
the true object and ``lam_c`` for a constant object (the true object's mean amplitude, zero
phase, scaled to the same total counts). It prints ``KL = sum(lam_c - lam_t + lam_t
log(lam_t / lam_c))`` in nats per pattern, averaged over the patterns: the expected
log-likelihood ratio by which one pattern tells the object from no object. It grows linearly
with the dose and about as the square of the sample's contrast, so two samples with the same
KL need the same dose times this ratio. No training; seconds per unit.

    python benchmarks/sample_information.py [SWEEP] [KEY=VALUE ...]

e.g. ``'simulation.amp_contrast=0.3' 'simulation.max_phase=0.2356'`` (default sweep:
``experiments/dose_response_n64_auto.toml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _args import load_or_exit, sweep_parser  # noqa: E402


def pattern_kl(patches: np.ndarray, probe: np.ndarray, nphotons: float) -> float:
    """Mean Poisson KL (nats per pattern) of a constant object's patterns from the truth's.

    Args:
        patches: ``(B, N, N, C)`` complex true object patches.
        probe: ``(N, N)`` complex probe.
        nphotons: expected counts per pattern (the mean over the patterns).
    """
    from ptycho.diffsim import diffract

    obj = np.moveaxis(patches, -1, 1).reshape(-1, *patches.shape[1:3])
    lam_t = diffract(probe * obj).astype(np.float64) ** 2
    lam_t *= nphotons / lam_t.sum(axis=(1, 2)).mean()
    flat = np.full_like(obj, np.abs(obj).mean())
    lam_c = diffract(probe * flat).astype(np.float64) ** 2
    lam_c *= lam_t.sum() / lam_c.sum()
    tiny = 1e-300
    kl = lam_c - lam_t + lam_t * np.log(np.maximum(lam_t, tiny) / np.maximum(lam_c, tiny))
    return float(kl.sum(axis=(1, 2)).mean())


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/dose_response_n64_auto.toml",
                      "simulation.amp_contrast=0.3")
    args = ap.parse_intermixed_args()
    sweep = load_or_exit(args, "sample_information.py", check_task=False)
    from ptycho.simulation import simulate_unit

    print("   N  gs  nphotons  amp_contrast  max_phase  KL nats/pattern  per 1e4 photons")
    for unit in sweep.plan():
        sim = unit.simulation_config()
        train, _ = simulate_unit(unit.model_config(), unit.nphotons, sim)
        kl = pattern_kl(train.patches, train.probe, unit.nphotons)
        print(f"{unit.N:4d} {unit.gridsize:3d} {unit.nphotons:9.0e} {sim.amp_contrast:13.2f} "
              f"{sim.max_phase:10.4f} {kl:16.4g} {kl * 1e4 / unit.nphotons:16.4g}", flush=True)


if __name__ == "__main__":
    main()
