"""Merging sweep output directories: ``ptycho-sweep merge SRC... --into DEST``.

A study run in parts (one directory per weight, per machine, per session) becomes one
directory as if one sweep had run there. The sweeps must be able to share a directory (the
check of a run into it, :func:`runner.outdir.check_compatible`: only the grid and the arm
lists may differ). Parts that each fix a training setting of
:data:`runner.schema.ARM_SETTINGS` to another value (one weight per directory) join on it as
an ``[arms]`` list: their arms keep their ids. Every record must sit at its grid point under
the id the merged sweep gives it (:func:`runner.outdir.check_recorded_ids`). All of this is
checked before anything is written.

Then, holding DEST's lock, each source's arms are copied in unless DEST already holds that arm
``ok``: its artifacts first (``units/<unit_id>/artifacts/<arm_id>*``), then its record
(atomically), so a record never names a missing file; a unit's ``unit.json`` and
``worker.log`` are copied when DEST has none for that unit. A source's ``ok`` arm replaces a
record that is not ``ok``; among sources, the first to hold an arm ``ok`` wins. DEST's
``sweep.toml`` becomes the union of the sweeps and its tables are rebuilt. Sources are only
read.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .outdir import (
    check_compatible,
    check_output_dir,
    check_recorded_ids,
    merge_sweeps,
    output_lock,
)
from .paths import OutputPaths
from .plan import Sweep
from .schema import ARM_SETTINGS
from .store import atomic_write_json, atomic_write_text, consolidate, read_records
from .sweep import Problem, SweepError, load_sweep

__all__ = ["MergeSummary", "merge_dirs"]


@dataclass
class MergeSummary:
    """What :func:`merge_dirs` did: arms copied per source, source arms not copied (DEST
    already held them), and the merged table's size and statuses."""

    dest: Path
    copied: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    n_arms: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"merged into {self.dest}: {self.n_arms} arm(s) in the table ("
                 + ", ".join(f"{n} {s}" for s, n in self.statuses.items()) + ")"]
        lines += [f"  {n} copied from {src}" for src, n in self.copied.items()]
        lines.append(f"  {self.kept} not copied: the arm was already there (ok, or neither ok)")
        return "\n".join(lines)


def _source(path: str | Path) -> tuple[OutputPaths, Sweep]:
    paths = OutputPaths(Path(path).expanduser().resolve())
    if not paths.sweep_toml.is_file() or not paths.records_dir.is_dir():
        raise SweepError(str(paths.root), [Problem(
            "SRC", f"{paths.root} is not a sweep output directory (no sweep.toml and "
                   f"records/)")])
    # loaded by the path as given: the merged sweep.toml names it, and a study commits it
    return paths, load_sweep(OutputPaths(path).sweep_toml, check_task=False)


def _fixed_differences(a: Sweep, b: Sweep) -> list[str]:
    """The training settings of :data:`ARM_SETTINGS` that ``a`` and ``b`` fix to different
    values (one weight per part): merged, they become an arm axis."""
    ta, tb = a.settings()["training"], b.settings()["training"]  # resolved, axes left out
    return [k for k in ARM_SETTINGS if k in ta and k in tb and ta[k] != tb[k]]


def _plan(sources: Sequence[tuple[OutputPaths, Sweep]], dest: OutputPaths) -> Sweep:
    """The union of DEST's sweep (if any) and the sources' ones; raises SweepError. Parts
    that fix a setting of :data:`ARM_SETTINGS` to different values join on it as an arm axis
    (their arms keep their ids), which a run into a used directory would refuse as ambiguous."""
    if not dest.sweep_toml.is_file():
        check_output_dir(sources[0][1], dest.root)  # refuses a directory of other files
    merged = load_sweep(dest.sweep_toml, check_task=False) if dest.sweep_toml.is_file() \
        else None
    for _, sweep in sources:
        if merged is None:
            merged = sweep
            continue
        keys = _fixed_differences(merged, sweep)
        merged, sweep = merged.with_arm_axes(keys), sweep.with_arm_axes(keys)
        check_compatible(sweep, merged, dest.root)
        merged = merge_sweeps(merged, sweep)
    return merged


def _copy_arm(src: OutputPaths, dest: OutputPaths, rec: dict[str, Any]) -> None:
    arm_id, unit_id = rec["arm_id"], rec.get("unit_id")
    if unit_id:
        for there, here in ((src.unit_json(unit_id), dest.unit_json(unit_id)),
                            (src.worker_log(unit_id), dest.worker_log(unit_id))):
            if there.is_file() and not here.exists():
                here.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(there, here)
        artifacts = src.artifact_dir(unit_id)
        for f in sorted(artifacts.glob(f"{arm_id}*")) if artifacts.is_dir() else ():
            target = dest.artifact_dir(unit_id) / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{f.name}")
            shutil.copy2(f, tmp)
            tmp.replace(target)
    atomic_write_json(dest.record(arm_id), rec)


def merge_dirs(sources: Sequence[str | Path], into: str | Path) -> MergeSummary:
    """Merge the sweep output directories ``sources`` into ``into`` (created if missing);
    see the module's docstring. Raises :class:`SweepError` before writing anything if a
    source is not a sweep directory, the sweeps cannot share a directory, or records would
    sit at one grid point under two ids."""
    dest = OutputPaths(Path(into).expanduser().resolve())
    srcs = [_source(s) for s in sources]
    for paths, _ in srcs:
        if paths.root == dest.root:
            raise SweepError(str(paths.root), [Problem(
                "--into", f"{paths.root} is both a source and --into; name another --into")])
    if dest.root.exists() and not dest.root.is_dir():
        raise SweepError(str(dest.root), [Problem("--into", f"{dest.root} is not a directory")])
    created = not dest.root.exists()
    dest.root.mkdir(parents=True, exist_ok=True)
    try:
        return _merge_locked(srcs, dest)
    except SweepError:
        if created:  # refused: leave no empty directory behind
            with contextlib.suppress(OSError):
                dest.lock.unlink(missing_ok=True)
                dest.root.rmdir()
        raise


def _merge_locked(srcs: Sequence[tuple[OutputPaths, Sweep]], dest: OutputPaths) -> MergeSummary:
    summary = MergeSummary(dest.root)
    with output_lock(dest):
        merged = _plan(srcs, dest)
        records = read_records(dest)
        incoming = [(paths, read_records(paths)) for paths, _ in srcs]
        everything = dict(records)
        for _, recs in incoming:
            for arm_id, rec in recs.items():
                if everything.get(arm_id, {}).get("status") != "ok":
                    everything[arm_id] = rec
        check_recorded_ids(merged, merged.plan(), everything, dest.root)
        for paths, recs in incoming:
            summary.copied[str(paths.root)] = 0
            for arm_id, rec in sorted(recs.items()):
                if records.get(arm_id, {}).get("status") == "ok" or (
                        arm_id in records and rec.get("status") != "ok"):
                    summary.kept += 1  # DEST's record stays
                    continue
                _copy_arm(paths, dest, rec)
                records[arm_id] = rec
                summary.copied[str(paths.root)] += 1
        atomic_write_text(dest.sweep_toml, merged.to_toml())
        df = consolidate(dest, records)
    summary.n_arms = len(df)
    summary.statuses = {str(s): int(n) for s, n in df["status"].value_counts().items()}
    return summary
