"""What a run would do: the units of a sweep and, per unit, the arms still to run.

:func:`plan_run` validates a sweep and its output directory and reads the records there, never
writing anything: ``ptycho-sweep run --dry-run`` prints its :meth:`RunPlan.describe`, and
:func:`runner.orchestrator.run_sweep` runs it (after taking the directory's lock).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .outdir import check_output_dir, check_recorded_ids
from .paths import OutputPaths
from .schema import IDENTITY
from .store import read_records
from .sweep import Sweep, load_sweep
from .unit import Arm, Unit

__all__ = ["RunPlan", "plan_run", "resolve_out", "DEFAULT_ROOT"]

#: Default output root: ``results/<sweep name>`` relative to the current directory.
DEFAULT_ROOT = Path("results")


# -- planning --------------------------------------------------------------------------------
@dataclass
class RunPlan:
    """What a run would do: every unit, and per unit the arms to run (the rest are skipped).

    ``sweep`` is what was asked for; ``recorded`` is what the output directory's
    ``sweep.toml`` will hold (the union with the sweeps run there before, see
    :mod:`runner.outdir`)."""

    sweep: Sweep
    paths: OutputPaths
    units: list[Unit]
    todo: dict[str, Sequence[Arm]]
    existing: dict[str, dict[str, Any]]
    force: bool = False
    recorded: Sweep | None = None

    @property
    def n_arms(self) -> int:
        return sum(len(u.arms) for u in self.units)

    @property
    def n_run(self) -> int:
        return sum(len(a) for a in self.todo.values())

    def frame(self):
        """One row per arm: identity columns, ``action`` (run/skip) and ``previous_status``."""
        import pandas as pd

        cols: dict[str, list] = {k: [] for k in (*IDENTITY, "action", "previous_status")}
        for u in self.units:  # column by column: no dict per row (10^6-arm plans)
            run = {a.arm_id for a in self.todo.get(u.unit_id, [])}
            for a in u.arms:
                for k, v in u.arm_columns(a).items():
                    cols[k].append(v)
                cols["action"].append("run" if a.arm_id in run else "skip")
                cols["previous_status"].append(self.existing.get(a.arm_id, {}).get("status"))
        return pd.DataFrame(cols)

    def describe(self, max_units: int = 50) -> str:
        """Human-readable plan (the first ``max_units`` units, then a count of the rest)."""
        s = self.sweep
        grew = self.recorded is not None and self.recorded.n_arms > s.n_arms
        lines = [
            f"sweep {s.name!r} from {s.source}: task {s.task}",
            f"  {len(self.units)} unit(s) x {s.arms_per_unit} arm(s) ("
            + " x ".join(f"{k} {v}" for k, v in s.arm_axes().items())
            + f") = {self.n_arms} arm(s)",
            f"  output: {self.paths.root}" + ("" if self.paths.root.exists() else " (new)")
            + (f" (holds a larger sweep of {self.recorded.n_arms} arm(s); its other rows are "
               f"kept)" if grew else ""),
            f"  to run: {self.n_run} arm(s) in {len(self.todo)} unit(s); skipped (already ok): "
            f"{self.n_arms - self.n_run}" + (" [--force]" if self.force else ""),
            f"  timeout {s.timeout_s:g} s per unit; a crashed unit is retried "
            f"{s.retries} time(s)",
            "",
            f"  {'unit_id':<32} {'N':>4} {'gs':>3} {'nphotons':>9}  arms",
        ]
        for u in self.units[:max_units]:
            run = self.todo.get(u.unit_id, [])
            parts = []
            for a in u.arms:
                prev = self.existing.get(a.arm_id, {}).get("status")
                act = "run" if a in run else "skip"
                own = "".join(f",{k}={v:g}" for k, v in a.settings)  # two weights: which is which
                parts.append(f"{a.arm_id}[{a.loss},s{a.seed}{own}]:{act}"
                             + (f"(was {prev})" if prev else ""))
            lines.append(f"  {u.unit_id:<32} {u.N:>4} {u.gridsize:>3} {u.nphotons:>9.3g}  "
                         + ", ".join(parts))
        if len(self.units) > max_units:
            lines.append(f"  ... and {len(self.units) - max_units} more unit(s)")
        return "\n".join(lines)


def resolve_out(sweep: Sweep, out_dir: str | Path | None) -> Path:
    """The absolute output directory: ``out_dir``, or ``results/<sweep name>`` under the
    current directory. Absolute from the start, so a task that changes directory cannot
    send records elsewhere."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / sweep.name
    return Path(os.path.abspath(out.expanduser()))


def plan_run(sweep: str | Path | Mapping[str, Any] | Sweep, out_dir: str | Path | None = None,
             force: bool = False, overrides: Sequence[str] = ()) -> RunPlan:
    """Validate ``sweep`` (with ``overrides``) and its output directory and plan the run
    (reads, never writes). Raises :class:`SweepError`."""
    sw = load_sweep(sweep, overrides=overrides)
    paths = OutputPaths(resolve_out(sw, out_dir))
    recorded = check_output_dir(sw, paths.root)
    existing = read_records(paths)
    units = sw.plan()
    check_recorded_ids(sw, units, existing, paths.root)
    todo: dict[str, Sequence[Arm]] = {}
    for u in units:
        if force or not existing:  # every arm runs: share the unit's tuple (no copy per unit)
            todo[u.unit_id] = u.arms
            continue
        arms = [a for a in u.arms if existing.get(a.arm_id, {}).get("status") != "ok"]
        if arms:
            todo[u.unit_id] = arms
    return RunPlan(sw, paths, units, todo, existing, force, recorded)
