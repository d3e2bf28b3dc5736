"""Validation and planning cost of huge sweeps: ``ptycho-sweep run SWEEP --dry-run``.

Writes sweep files of 4 x K units (N 16/32, gridsize 1/2, K doses, one arm each), runs the
CLI's dry run on each in a fresh process (output to /dev/null) and prints the wall time and the
child's peak RSS. Goal (issue 10, D7): linear growth, 10^6 units in <= 30 s and <= 500 MB.

    python benchmarks/dry_run_scale.py [--units 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_sweep(path: Path, n_units: int) -> None:
    k = max(1, n_units // 4)
    doses = ", ".join(f"{1e4 + i:.1f}" for i in range(k))
    path.write_text(
        f'[sweep]\nname = "scale"\ntask = "experiments.dose_response:run_unit"\n\n'
        f"[grid]\nN = [16, 32]\ngridsize = [1, 2]\nnphotons = [{doses}]\n\n"
        f'[arms]\nloss = ["nll"]\nseed = [0]\n', encoding="utf-8")


def run_one(sweep: Path, out: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one dry run in a fresh interpreter."""
    code = ("import resource, sys; from runner.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "-q", "run", str(sweep), "--dry-run",
                           "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    rss_kib = int(proc.stderr.strip().splitlines()[-1]) if proc.returncode == 0 else 0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, rss_kib / 1024, proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    a = p.parse_args()
    print(f"{'units':>9} {'wall s':>8} {'peak MiB':>9} {'us/unit':>8} rc")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.units:
            sweep = Path(tmp) / f"scale_{n}.toml"
            write_sweep(sweep, n)
            wall, mib, rc = run_one(sweep, Path(tmp) / "out")
            units = 4 * max(1, n // 4)
            print(f"{units:>9} {wall:>8.2f} {mib:>9.0f} {1e6 * wall / units:>8.1f} {rc}",
                  flush=True)


if __name__ == "__main__":
    main()
