"""What process isolation costs. Prints figures; asserts nothing.

    python benchmarks/isolation_overhead.py [--units 4] [--burn-s 3] [--repeats 3]

(a) Per-unit fixed cost of the sweep machinery (spawn, imports, records, consolidation,
    teardown): mean wall per unit of a sweep of trivial one-arm units run with n_jobs=1,
    for a task that imports TensorFlow (the realistic floor) against a bare
    ``python -c "import tensorflow"`` measured in the same run (goal <= 1.5x), and for a
    task that imports nothing (pure spawn overhead) against ``python -c pass``.
(b) Peak RSS of an orchestrator process (ru_maxrss in a fresh subprocess) that plans and
    dry-runs a 1,000-arm sweep (goal < 200 MB).
(c) Wall time of 4 equal CPU-bound units (single-threaded busy loop of ~burn-s seconds)
    with n_jobs=2 against n_jobs=1 (goal <= 0.65 on >= 2 free cores).

The task functions below are imported by the sweep workers as ``isolation_overhead:<fn>``
(this directory is put on PYTHONPATH), so the module stays import-light.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# -- tasks run by the workers ----------------------------------------------------------------
def tf_task(unit):
    """Imports TensorFlow, does nothing else."""
    import tensorflow  # noqa: F401

    for arm in unit.arms:
        yield {"arm_id": arm.arm_id}


def bare_task(unit):
    """Imports nothing."""
    for arm in unit.arms:
        yield {"arm_id": arm.arm_id}


def burn_task(unit):
    """Single-threaded busy loop of BENCH_BURN_ITERS iterations."""
    n = int(os.environ["BENCH_BURN_ITERS"])
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i % 7
    for arm in unit.arms:
        yield {"arm_id": arm.arm_id, "train_s": time.perf_counter() - t0}


# -- helpers ---------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    parts = [str(REPO), str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(parts), TF_CPP_MIN_LOG_LEVEL="2")


def _sweep(name: str, task: str, n_units: int, nphotons=None) -> dict:
    nphotons = nphotons or [float(10 ** (4 + i)) for i in range(n_units)]
    return {"sweep": {"name": name, "task": f"isolation_overhead:{task}", "timeout_s": 600,
                      "retries": 0},
            "grid": {"N": [16], "gridsize": [1], "nphotons": nphotons},
            "arms": {"loss": ["nll"], "seed": [0]}}


def _bare_python(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=_env(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def _run(sweep: dict, out: Path, n_jobs: int) -> float:
    """Wall time of a fresh orchestrator process running ``sweep`` (checks every arm ok)."""
    code = ("import json, sys, runner\n"
            "df = runner.run_sweep(json.loads(sys.argv[1]), sys.argv[2], n_jobs=int(sys.argv[3]),"
            " progress=False)\n"
            "assert (df['status'] == 'ok').all(), df[['status', 'error']]\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, json.dumps(sweep), str(out), str(n_jobs)],
                   cwd=REPO, env=_env(), check=True)
    return time.perf_counter() - t0


def _per_unit(task: str, units: int, tmp: Path) -> float:
    """Marginal cost per unit: (wall of `units` units - wall of 1 unit) / (units - 1), which
    removes the orchestrator's own start-up; and the plain mean wall per unit."""
    one = _run(_sweep(f"{task}1", task, 1), tmp / f"{task}-1", 1)
    many = _run(_sweep(f"{task}{units}", task, units), tmp / f"{task}-{units}", 1)
    marginal = (many - one) / (units - 1)
    print(f"    {units} units: {many:.2f} s -> {many / units:.2f} s/unit including the "
          f"orchestrator's start-up; marginal cost {marginal:.2f} s/unit")
    return marginal


def _calibrate(seconds: float) -> int:
    n = 2_000_000
    while True:
        t0 = time.perf_counter()
        x = 0
        for i in range(n):
            x += i * i % 7
        dt = time.perf_counter() - t0
        if dt > 0.5:
            return int(n * seconds / dt)
        n *= 2


# -- the three measurements ------------------------------------------------------------------
def bench_unit_cost(units: int, repeats: int, tmp: Path) -> None:
    print("(a) per-unit fixed cost, n_jobs=1")
    bare_tf = _bare_python("import tensorflow", repeats)
    print(f"    python -c 'import tensorflow': {bare_tf:.2f} s (mean of {repeats})")
    tf_unit = _per_unit("tf_task", units, tmp)
    print(f"    unit with a TF-importing task: {tf_unit:.2f} s = {tf_unit / bare_tf:.2f}x the "
          f"bare import (goal <= 1.5x)")
    bare_py = _bare_python("pass", repeats)
    print(f"    python -c pass: {bare_py:.3f} s")
    bare_unit = _per_unit("bare_task", units, tmp)
    print(f"    unit with a no-import task: {bare_unit:.3f} s (pure machinery: "
          f"{bare_unit - bare_py:+.3f} s over a bare interpreter)")


def bench_orchestrator_rss(tmp: Path) -> None:
    print("(b) orchestrator peak RSS, plan + dry run of a 1,000-arm sweep")
    sweep = {"sweep": {"name": "big", "task": "isolation_overhead:bare_task"},
             "grid": {"N": [16, 32, 64, 128, 256], "gridsize": [1, 2],
                      "nphotons": [float(10 ** (3 + i / 8)) for i in range(50)]},
             "arms": {"loss": ["nll", "mae"], "seed": [0]},
             "simulation": {"object_size": 300}}
    code = ("import json, resource, sys, time\n"
            "t0 = time.perf_counter()\n"
            "import runner\n"
            "plan = runner.plan_run(json.loads(sys.argv[1]), sys.argv[2])\n"
            "df = runner.run_sweep(json.loads(sys.argv[1]), sys.argv[2], dry_run=True)\n"
            "print(plan.n_arms, len(df), time.perf_counter() - t0,"
            " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
            " 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(sweep), str(tmp / "big")],
                         cwd=REPO, env=_env(), check=True, capture_output=True, text=True)
    arms, rows, secs, rss, tf = out.stdout.split()
    print(f"    {arms} arms ({rows} planned rows) in {float(secs):.2f} s; peak RSS "
          f"{float(rss):.0f} MB (goal < 200 MB); tensorflow imported: {tf}; "
          f"output dir created: {(tmp / 'big').exists()}")


def bench_parallel(burn_s: float, tmp: Path) -> None:
    print(f"(c) 4 CPU-bound units of ~{burn_s:g} s each, n_jobs=2 vs n_jobs=1 "
          f"({os.cpu_count()} cores)")
    os.environ["BENCH_BURN_ITERS"] = str(_calibrate(burn_s))
    sweep = _sweep("burn", "burn_task", 4)
    serial = _run(sweep, tmp / "burn-1", 1)
    parallel = _run(sweep, tmp / "burn-2", 2)
    print(f"    n_jobs=1: {serial:.2f} s; n_jobs=2: {parallel:.2f} s; ratio "
          f"{parallel / serial:.2f} (goal <= 0.65)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=4, help="units per sweep in (a)")
    p.add_argument("--repeats", type=int, default=3, help="bare-interpreter repeats in (a)")
    p.add_argument("--burn-s", type=float, default=3.0, help="CPU seconds per unit in (c)")
    p.add_argument("--only", choices=["a", "b", "c"], help="run one measurement")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isolation-bench-") as tmp:
        tmp = Path(tmp)
        if args.only in (None, "a"):
            bench_unit_cost(max(2, args.units), args.repeats, tmp)
        if args.only in (None, "b"):
            bench_orchestrator_rss(tmp)
        if args.only in (None, "c"):
            bench_parallel(args.burn_s, tmp)


if __name__ == "__main__":
    main()
