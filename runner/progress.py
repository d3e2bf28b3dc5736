"""Progress of a run, and the summary printed at its end.

:class:`RunProgress` follows a run unit by unit. Each finished unit gets one log line
(logger ``runner.progress``, level INFO) with its statuses, its own time, arms done of the
total, the time elapsed and the estimated time left, e.g.::

    [3/16 units] N32_g1_p1e+04_18948178 done in 1m12s: 2 ok | 6/32 arms, 4m10s elapsed, ETA 18m

On a terminal there is also a tqdm bar (counted in arms) whose postfix names the units
running now. :func:`run_summary` is the text ``ptycho-sweep run`` prints at the end: the
absolute output directory, arms per status, the next commands and where the logs of the
units that are not ok are.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .paths import OutputPaths

__all__ = ["RunProgress", "format_duration", "run_summary"]

log = logging.getLogger(__name__)

#: Units named in the bar's postfix at most (the rest are counted).
_MAX_RUNNING_SHOWN = 3


def format_duration(seconds: float) -> str:
    """``"45s"``, ``"3m05s"``, ``"2h07m"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _counts_text(statuses: Iterable[Any]) -> str:
    statuses = [str(s) for s in statuses]
    return ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))


class RunProgress:
    """Progress of one run; its methods may be called from any thread.

    Args:
        units: ``{unit_id: (label, arms to run)}``, the label short (``"N32 g1 1e+04"``).
        name: the sweep's name (the bar's description).
        bar: show a tqdm bar (only if stderr is a terminal, or ``file`` is given).
        file: where the bar is drawn (default stderr); for tests.
        clock: seconds, monotonic; for tests.
    """

    def __init__(self, units: dict[str, tuple[str, int]], name: str = "", bar: bool = True,
                 file=None, clock: Callable[[], float] = time.monotonic):
        self.units = dict(units)
        self.total_units = len(self.units)
        self.total_arms = sum(n for _, n in self.units.values())
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.done_units = 0
        self.done_arms = 0
        self.bar = None
        if bar and self.total_arms and (file is not None or sys.stderr.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=self.total_arms, unit="arm", desc=name, dynamic_ncols=True,
                            file=file)

    @classmethod
    def for_plan(cls, plan, bar: bool = True) -> RunProgress:
        """For a :class:`runner.orchestrator.RunPlan`: the units and arms it will run."""
        by_id = {u.unit_id: u for u in plan.units}
        units = {uid: (f"N{by_id[uid].N} g{by_id[uid].gridsize} {by_id[uid].nphotons:.0e}",
                       len(arms)) for uid, arms in plan.todo.items()}
        return cls(units, plan.sweep.name, bar)

    # -- events ------------------------------------------------------------------------------
    def unit_started(self, unit_id: str) -> None:
        with self._lock:
            self._running.setdefault(unit_id, self._clock())
            self._refresh_postfix()

    def arm_done(self, status: str) -> None:
        with self._lock:
            self.done_arms += 1
            self._counts[status] = self._counts.get(status, 0) + 1
            if self.bar is not None:
                self.bar.update(1)
                self._refresh_postfix()

    def unit_done(self, unit_id: str, statuses: Sequence[Any]) -> str:
        """Log (and return) the unit's line; ``statuses``: of each of its arms."""
        with self._lock:
            now = self._clock()
            started = self._running.pop(unit_id, None)
            self.done_units += 1
            self._refresh_postfix()
            elapsed = now - self._start
            took = f" in {format_duration(now - started)}" if started is not None else ""
            left = self.total_arms - self.done_arms
            if not left:
                eta = "ETA 0s"
            elif self.done_arms:
                eta = f"ETA {format_duration(elapsed / self.done_arms * left)}"
            else:
                eta = "ETA unknown"
            line = (f"[{self.done_units}/{self.total_units} units] {unit_id} done{took}: "
                    f"{_counts_text(statuses) or 'no arm recorded'} | "
                    f"{self.done_arms}/{self.total_arms} arms, "
                    f"{format_duration(elapsed)} elapsed, {eta}")
        log.info("%s", line)
        return line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def running_text(self) -> str:
        """``"running: N32 g1 1e+04, N64 g2 1e+09 (+2)"``, or ``""``."""
        labels = [self.units.get(u, (u, 0))[0] for u in self._running]
        if not labels:
            return ""
        extra = len(labels) - _MAX_RUNNING_SHOWN
        return ("running: " + ", ".join(labels[:_MAX_RUNNING_SHOWN])
                + (f" (+{extra})" if extra > 0 else ""))

    def _refresh_postfix(self) -> None:  # with the lock held
        if self.bar is None:
            return
        parts = [", ".join(f"{k}={v}" for k, v in self._counts.items()), self.running_text()]
        self.bar.set_postfix_str(" | ".join(p for p in parts if p), refresh=True)


def run_summary(df, out_dir: str | Path, arm_ids: Iterable[str] | None = None,
                max_logs: int = 10) -> str:
    """What ``ptycho-sweep run`` prints at the end: the absolute output directory, the arms of
    this sweep (``arm_ids``; default every row of ``df``) by status (pending: planned, not
    recorded), the commands to run next, and the worker logs of the units not ok."""
    paths = OutputPaths(Path(out_dir).resolve())
    wanted = None if arm_ids is None else set(arm_ids)
    rows = df if wanted is None else df[df["arm_id"].isin(wanted)]
    statuses = list(rows["status"]) if len(rows) else []
    pending = 0 if wanted is None else len(wanted) - len(rows)
    counts = _counts_text(sorted(statuses, key=lambda s: (s != "ok", s)))
    counts = ", ".join(p for p in (counts, f"{pending} pending" if pending else "") if p)
    lines = [f"output: {paths.root}",
             f"arms: {counts or 'none recorded'} (of {len(statuses) + pending})",
             "next:",
             f"  ptycho-sweep status {paths.root}",
             f"  ptycho-sweep plot {paths.root}"]
    bad = rows[rows["status"] != "ok"] if len(rows) else rows
    if len(bad):
        units = list(dict.fromkeys(bad["unit_id"]))
        lines.append("logs of the units not ok:")
        for uid in units[:max_logs]:
            lines.append(f"  {paths.worker_log(uid)}  "
                         f"({_counts_text(bad.loc[bad['unit_id'] == uid, 'status'])})")
        if len(units) > max_logs:
            lines.append(f"  ... {len(units) - max_logs} more: {paths.units_dir}/*/worker.log")
    return "\n".join(lines)
