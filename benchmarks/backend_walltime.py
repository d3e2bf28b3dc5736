"""Wall time of a real sweep on the local backend and on the Dask backend. Prints figures.

    python benchmarks/backend_walltime.py [--sweep experiments/smoke.toml] [--n-jobs 2]
                                          [--repeats 1]

Both runs happen in this one invocation, one after the other, each as the CLI in a fresh
process into its own temporary directory with ``--force``:

    local:  ptycho-sweep run SWEEP --out TMP/local --n-jobs K --force
    dask:   ptycho-sweep run SWEEP --out TMP/dask  --n-jobs K --force --backend dask

so the Dask figure includes starting and closing its LocalCluster of K worker processes
(``threads_per_worker=1``) and shipping every record and ``.npz`` back through Dask. Each
unit is a fresh interpreter on both backends, so the difference is the backend's overhead.
Prints the wall time of each run, the ratio dask / local and the per-unit worker wall; exits 1
if any arm is not ok.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _run(sweep: Path, out: Path, n_jobs: int, backend: str) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "runner", "-q", "run", str(sweep), "--out", str(out),
           "--n-jobs", str(n_jobs), "--force", "--no-progress", "--backend", backend]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{backend} run failed with exit status {proc.returncode}")
    return wall, proc.returncode


def _unit_walls(out: Path) -> list[float]:
    sys.path.insert(0, str(REPO))
    import runner

    df = runner.load_results(out)
    return list(df.groupby("unit_id")["wall_s"].sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", type=Path, default=REPO / "experiments" / "smoke.toml")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    status = 0
    walls: dict[str, list[float]] = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory(prefix="backend-walltime-") as tmp:
        for r in range(args.repeats):
            for backend in ("local", "dask"):
                out = Path(tmp) / f"{backend}-{r}"
                wall, code = _run(args.sweep, out, args.n_jobs, backend)
                walls[backend].append(wall)
                status |= code
                units = _unit_walls(out)
                print(f"{backend:>5} (repeat {r + 1}): {wall:7.1f} s wall for {len(units)} "
                      f"unit(s); worker wall per unit: median {statistics.median(units):.1f} s"
                      + ("" if code == 0 else "  [some arms not ok]"), flush=True)
    local, dask = statistics.median(walls["local"]), statistics.median(walls["dask"])
    print(f"\nsweep {args.sweep.name}, n_jobs {args.n_jobs}, {os.cpu_count()} CPU(s)")
    print(f"  local backend:                 {local:7.1f} s")
    print(f"  dask backend (LocalCluster):   {dask:7.1f} s")
    print(f"  ratio dask / local:            {dask / local:7.2f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
