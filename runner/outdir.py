"""Output directories: which sweep a directory may take, and growing a study in place.

A directory takes a sweep if it does not exist, is empty, or holds a ``sweep.toml`` whose
settings (name, task, model, simulation and training, fully resolved) equal the sweep's. The
grid and the arms may differ: that is how a study grows (one more dose, N or seed) or is
resumed in parts. :func:`check_output_dir` then returns the sweep to record in the directory:
the union of both grids and arms, so ``status`` and ``plot`` see every unit that was ever
planned there, and every old row stays. A changed setting is refused with the keys that
changed and how to start a new directory.

Settings equal as written can still mean other runs when a default changed in between (a
setting the file leaves out now resolves to something else). Arm ids hash the resolved
settings, so :func:`check_recorded_ids` refuses a directory whose records sit at grid points
of the sweep under ids the sweep no longer gives them.

A run holds :func:`output_lock` on the directory from before it checks the directory until it
ends, so two starts can never both pass the check.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .paths import OutputPaths
from .plan import Sweep, dumps_toml
from .schema import ARM_SETTINGS
from .sweep import Problem, SweepError, load_sweep

__all__ = ["check_output_dir", "check_recorded_ids", "merge_sweeps", "output_lock"]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: A sweep's grid and arm lists (besides the varied settings, ``Sweep.arm_settings``).
_LISTS = ("N", "gridsize", "nphotons", "loss", "seed")


def _union(old: tuple, new: tuple) -> tuple:
    return tuple(dict.fromkeys(old + new))


def _axis_keys(*sweeps: Sweep) -> list[str]:
    """The settings any of ``sweeps`` lists in ``[arms]``, in order of first appearance."""
    return list(dict.fromkeys(k for s in sweeps for k, _ in s.arm_settings))


def merge_sweeps(old: Sweep, new: Sweep) -> Sweep:
    """A sweep with ``new``'s settings and policy and the union of both grids and arms (old
    values first). A setting one of them varies in ``[arms]`` and the other fixes (in
    ``[training]`` or by default) joins as a one-value list (:meth:`Sweep.with_arm_axes`).
    Returns ``new`` itself when it already covers ``old``, ``old`` when ``new`` adds nothing
    (their files' texts, with comments, are then kept)."""
    import dataclasses

    keys = _axis_keys(old, new)
    old_axes, new_axes = old.with_arm_axes(keys), new.with_arm_axes(keys)

    def lists(s: Sweep) -> dict[str, tuple]:
        return {**{k: getattr(s, k) for k in _LISTS}, **dict(s.arm_settings)}

    o, n = lists(old_axes), lists(new_axes)
    merged = {k: _union(o[k], n[k]) for k in n}
    if all(set(merged[k]) == set(n[k]) for k in merged):
        return new
    if all(set(merged[k]) == set(o[k]) for k in merged):
        return dataclasses.replace(old, timeout_s=new.timeout_s, retries=new.retries)
    out = dataclasses.replace(new_axes, **{k: merged[k] for k in _LISTS},
                              arm_settings=tuple((k, merged[k]) for k in keys), text=None)
    # the directory's own sweep.toml by its name only: no machine-specific path in a file
    # a study commits
    header = (f"# the union of the sweeps run into this directory: its earlier sweep.toml "
              f"and {new.source}\n")
    return dataclasses.replace(out, text=header + dumps_toml(out.to_dict()))


def check_output_dir(sweep: Sweep, out_dir: str | Path) -> Sweep:
    """Check that ``out_dir`` may take ``sweep``; return the sweep to record there.

    Raises :class:`SweepError` (nothing written) if the directory is not a directory, holds
    files but no ``sweep.toml``, holds an unreadable ``sweep.toml``, or a sweep with other
    settings. Otherwise returns ``sweep`` (new or empty directory, same sweep, or a sweep that
    grew) or the union of both (see :func:`merge_sweeps`)."""
    paths = OutputPaths(out_dir)
    root = paths.root
    if not root.exists():
        return sweep
    if not root.is_dir():
        raise SweepError(sweep.source, [f"output {root} exists and is not a directory; pick "
                                        f"another --out"])
    if not paths.sweep_toml.is_file():
        if any(p.name != paths.lock.name for p in root.iterdir()):
            raise SweepError(sweep.source, [
                f"output directory {root} is not empty and holds no sweep.toml; pick another "
                f"--out (or an empty directory)"])
        return sweep
    try:
        other = load_sweep(paths.sweep_toml, check_task=False)
    except SweepError as exc:
        raise SweepError(sweep.source, [
            f"output directory {root} holds an invalid sweep.toml ({exc.errors[0]}); pick "
            f"another --out"]) from None
    check_compatible(sweep, other, root)
    return merge_sweeps(other, sweep)


def check_compatible(sweep: Sweep, other: Sweep, root: str | Path) -> None:
    """Raise :class:`SweepError` (for ``sweep``'s file) unless ``sweep`` may join ``other``,
    the sweep of the directory ``root``: the same settings, except the grid and the arm lists
    (a setting varied in ``[arms]`` by one and fixed by the other joins as a list)."""
    axes = _axis_keys(other, sweep)
    mine = _flatten(sweep.with_arm_axes(axes).settings())
    theirs = _flatten(other.with_arm_axes(axes).settings())
    diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if diff:
        details = "; ".join(f"{k} = {mine.get(k)!r} here but {theirs.get(k)!r} there"
                            for k in diff[:5])
        varied = [k.split(".", 1)[1] for k in diff if k.startswith("training.")
                  and k.split(".", 1)[1] in ARM_SETTINGS]
        hint = (f" (or, to run other values of {', '.join(varied)} beside these arms, list "
                f"them in [arms]: arms.{varied[0]} = [...])"
                if varied and len(varied) == len(diff) else "")
        raise SweepError(sweep.source, [
            f"output directory {root} already holds a different sweep (its sweep.toml differs: "
            f"{details}); a study can grow in place only in [grid] and [arms]: pick another "
            f"--out or give the sweep a new sweep.name{hint}"])


def _point(rec: dict[str, Any], axes: tuple = ()) -> tuple:
    """A record's or an arm's grid point: (N, gridsize, nphotons, loss, seed, and the values
    of the arm settings ``axes``)."""
    return (rec.get("N"), rec.get("gridsize"), rec.get("nphotons"), rec.get("loss"),
            rec.get("seed"), *(rec.get(k) for k in axes))


def check_recorded_ids(sweep: Sweep, units: list, records: dict[str, dict[str, Any]],
                       out_dir: str | Path) -> None:
    """Raise :class:`SweepError` if a record in the directory sits at a grid point of
    ``units`` (the sweep's plan) under an id the plan does not give that point: the code now
    resolves the same file to other settings (a default it leaves out has changed), and
    running would put a second, different arm beside each old one."""
    # the settings that tell arms of one grid point apart: the sweep's [arms] lists, and any
    # the records in the directory vary (a study grown into such a list)
    seen: dict[str, set] = {k: set() for k in ARM_SETTINGS}
    for rec in records.values():
        for k in ARM_SETTINGS:
            if rec.get(k) is not None:
                seen[k].add(rec[k])
    axes = tuple(k for k in ARM_SETTINGS
                 if k in dict(sweep.arm_settings) or len(seen[k]) > 1)
    planned: dict[tuple, str] = {}
    for u in units:
        for a in u.arms:
            cfg = u.training_config(a)
            planned[_point({**u.arm_columns(a), **{k: getattr(cfg, k) for k in axes}},
                           axes)] = a.arm_id
    moved = [(arm_id, planned[_point(rec, axes)]) for arm_id, rec in sorted(records.items())
             if _point(rec, axes) in planned and planned[_point(rec, axes)] != arm_id]
    if moved:
        old, new = moved[0]
        N, g, p, loss, seed = _point(records[old])
        raise SweepError(sweep.source, [
            f"output directory {Path(out_dir)} holds {len(moved)} arm(s) that this code would "
            f"run under other ids (e.g. N={N} gridsize={g} nphotons={p:g} loss={loss} seed="
            f"{seed}: recorded {old}, now {new}): a default the sweep file leaves unset has "
            f"changed since they ran; write that setting with its old value (the records' "
            f"columns show it) into the sweep file and into {OutputPaths(out_dir).sweep_toml}, "
            f"or pick another --out"])


def _flock(fd: int, root: Path) -> None:
    """Take an exclusive, non-blocking flock on ``fd``; a held lock is a :class:`SweepError`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SweepError(str(root), [
            "another ptycho-sweep run is writing to this output directory; wait for it or pick "
            "another --out"]) from None


@contextlib.contextmanager
def output_lock(paths: OutputPaths) -> Iterator[None]:
    """Hold an exclusive flock on the output directory itself (released by the kernel if we
    die). Locking the directory, not a file in it, means deleting a file cannot defeat it;
    where a file system cannot lock directories, ``<out>/.lock`` is locked instead."""
    try:
        fd = os.open(paths.root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise SweepError(str(paths.root), [Problem("--out", f"cannot open the output "
                                                   f"directory: {exc.strerror}")]) from None
    try:
        try:
            _flock(fd, paths.root)
        except OSError:  # no directory locks here (e.g. some network file systems)
            os.close(fd)
            fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
            _flock(fd, paths.root)
        yield
    finally:
        os.close(fd)
