"""Throughput of the diffraction simulator against the bare batched FFT it is built on.

For each patch size N, times the whole :func:`ptycho.simulation.simulate` path (bilinear patch
extraction, probe multiplication, FFT, global scaling, Poisson draws, sqrt, reshaping into
``(B, N, N, C)``) on a few thousand random positions in batches, and on the same
``(P, N, N) complex64`` array of exit waves a bare ``np.fft.fft2`` (the bound). Prints patterns
per second for both and the ratio ``sim_rate / fft_rate`` (goal: >= 0.5). Best of ``--repeats``.

    python benchmarks/simulate.py [--N 64 128] [--patterns 2048] [--batch 512]
                                  [--nphotons 1e4 1e6 1e9] [--repeats 3] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptycho.objects import make_object  # noqa: E402
from ptycho.probe import get_default_probe  # noqa: E402
from ptycho.scan import random_positions  # noqa: E402
from ptycho.simulation import simulate  # noqa: E402


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(N: int, patterns: int, batch: int, nphotons: float, repeats: int,
          workers: int | None) -> dict:
    """Rates in patterns per second for one N and dose."""
    rng = np.random.default_rng(0)
    size = max(256, 4 * N)
    obj = make_object("lines", size, 0)
    probe = get_default_probe(N, "np")
    pos = random_positions(patterns, size, N, 2, rng)
    batches = [pos[i:i + batch, None, :] for i in range(0, patterns, batch)]  # (b, 1, 2)

    def run_sim():
        for b in batches:
            simulate(obj, probe, b, nphotons, rng, workers=workers)

    # The bound: a bare batched numpy FFT on the same exit waves, in the same batches.
    psi = simulate(obj, probe, pos[:, None, :], nphotons, rng).patches[..., 0] * probe
    psi_batches = [np.ascontiguousarray(psi[i:i + batch]) for i in range(0, patterns, batch)]

    def run_fft():
        for b in psi_batches:
            np.fft.fft2(b)

    run_sim()  # warm up (allocator, thread pool, FFT plans)
    run_fft()
    # Alternate the two so that load from other processes hits both alike; keep the best.
    t_sim = t_fft = float("inf")
    for _ in range(repeats):
        t_sim = min(t_sim, _best(run_sim, 1))
        t_fft = min(t_fft, _best(run_fft, 1))
    return {"N": N, "nphotons": nphotons, "sim_rate": patterns / t_sim,
            "fft_rate": patterns / t_fft, "ratio": t_fft / t_sim, "dtype": str(psi.dtype)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, nargs="+", default=[64, 128], help="patch sizes")
    ap.add_argument("--patterns", type=int, default=2048, help="patterns per timing")
    ap.add_argument("--batch", type=int, default=512, help="patterns per simulate() call")
    ap.add_argument("--nphotons", type=float, nargs="+", default=[1e4, 1e6, 1e9],
                    help="doses (1e6 is the slowest for Poisson sampling)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many")
    ap.add_argument("--workers", type=int, default=0,
                    help="threads for simulate (0 = all cores, the default of simulate)")
    args = ap.parse_args(argv)
    workers = None if args.workers <= 0 else args.workers
    print(f"cores: {os.cpu_count()}  numpy {np.__version__}  patterns {args.patterns} in batches "
          f"of {args.batch}  best of {args.repeats}  workers {workers or 'all'}")
    print("sim = whole simulate() path; np.fft = bare np.fft.fft2 on the same complex64 exit waves")
    print(f"{'N':>4} {'nphotons':>9} {'sim pat/s':>10} {'np.fft pat/s':>13} {'ratio':>6}")
    for N in args.N:
        for nph in args.nphotons:
            r = bench(N, args.patterns, args.batch, nph, args.repeats, workers)
            print(f"{N:>4} {nph:>9.0e} {r['sim_rate']:>10.0f} {r['fft_rate']:>13.0f} "
                  f"{r['ratio']:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
