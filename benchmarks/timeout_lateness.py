"""How late the unit timeout lands: the wall time of timed-out units minus ``timeout_s``.

Runs a sweep of ``--units`` one-arm units whose task never finishes, with ``timeout_s =
--timeout``, for two tasks: one that sleeps (cooperative) and one that ignores SIGTERM and
spins in a single C call holding the GIL (it never runs Python code again, so no watchdog
inside the worker could fire). The supervisor enforces the timeout from outside the worker
(issue 10, D12: goal <= 1 s late). Prints min / median / max lateness per task; asserts
nothing. The task functions below are imported by the workers as ``timeout_lateness:<fn>``.

    python benchmarks/timeout_lateness.py [--units 3] [--timeout 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def sleep_task(unit):
    """Sleeps far past any timeout (a cooperative worker)."""
    time.sleep(10_000)
    yield from ()


def gil_hog_task(unit):
    """Ignores SIGTERM, then spins in one C call that holds the GIL and never checks signals."""
    signal.signal(signal.SIGTERM, lambda *a: None)
    sum(range(10**14))
    yield from ()


def lateness(task: str, units: int, timeout_s: float, out: Path) -> list[float]:
    """Seconds past ``timeout_s`` at which each unit's worker was found dead (from the
    records the orchestrator wrote: ``wall_s`` of each ``timeout`` arm)."""
    import runner

    sweep = {"sweep": {"name": task, "task": f"timeout_lateness:{task}",
                       "timeout_s": timeout_s, "retries": 0},
             "grid": {"N": [16], "gridsize": [1],
                      "nphotons": [float(10 ** (4 + i)) for i in range(units)]},
             "arms": {"loss": ["nll"], "seed": [0]}}
    df = runner.run_sweep(sweep, out, n_jobs=1, progress=False)
    assert (df["status"] == "timeout").all(), df[["status", "error"]]
    return [float(w) - timeout_s for w in df["wall_s"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=3)
    p.add_argument("--timeout", type=float, default=2.0, help="timeout_s of each unit")
    args = p.parse_args(argv)
    logging.getLogger("runner").setLevel(logging.ERROR)  # each timeout logs its log tail
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    sys.path[:0] = [str(HERE), str(REPO)]
    print(f"unit timeout lateness: {args.units} units per task, timeout_s = {args.timeout:g} "
          f"(goal: <= 1 s late)")
    print(f"{'task':>14} {'min s':>7} {'median s':>9} {'max s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("sleep_task", "gil_hog_task"):
            late = lateness(task, args.units, args.timeout, Path(tmp) / task)
            print(f"{task:>14} {min(late):>7.2f} {statistics.median(late):>9.2f} "
                  f"{max(late):>7.2f}", flush=True)


if __name__ == "__main__":
    main()
