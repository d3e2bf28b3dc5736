"""Provenance of a record: when and where an arm ran, with which code, libraries and settings.

The columns and their dtypes are declared once, in :data:`runner.store.PROVENANCE`; this module
fills them. What cannot change during a process (host, processor model, package version, git
commit, Python and numpy versions) is computed once per process and never raises: an unknown
value is an empty string. The worker computes it before it calls the task, so the commit is the
one checked out when the unit started, also if another is made while it trains. The TensorFlow
version is read from ``sys.modules`` at record time, so it is set only when the task imported
TensorFlow (the worker never imports it for this).

``git_commit`` is ``git rev-parse HEAD`` of the checkout holding the ``runner`` package, only
when that package directory is the top level of a git work tree (an installed copy inside some
other repository does not report that repository's commit); it says nothing about uncommitted
changes.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .schema import PROVENANCE_SETTINGS

__all__ = ["utc_now", "process_provenance", "cpu_model", "git_commit", "training_settings",
           "arm_provenance", "planned_settings", "PACKAGE"]

#: Distribution name whose version is recorded.
PACKAGE = "ptycho-sweep"


def utc_now() -> str:
    """The current time, UTC, ISO 8601 with milliseconds (``2024-05-01T12:00:00.123+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except Exception:  # PackageNotFoundError, broken metadata
        return ""


@functools.cache
def git_commit(root: str | None = None) -> str:
    """HEAD of the git checkout whose top level is ``root`` (default: the directory holding
    the ``runner`` package); '' when it is not one, git is missing, or anything fails."""
    root_path = Path(root) if root else Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root_path), "rev-parse", "--show-toplevel",
                              "HEAD"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            return ""
        top, head = out.stdout.split()[:2]
        if Path(top).resolve() != root_path.resolve():
            return ""
        return head if len(head) == 40 else ""
    except Exception:
        return ""


def cpu_model() -> str:
    """The processor: on Linux the first processor's ``model name`` in ``/proc/cpuinfo`` and,
    where the kernel gives them, its family and model numbers (``AMD EPYC (family 26, model
    2)``: a VM's name alone may not tell two generations apart); elsewhere
    :func:`platform.processor`; '' if unknown. Training seconds, and the last bits of a
    multi-threaded result, depend on it: two rows from one ``host`` name (a VM's) may have run
    on different processors."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if fields.get("model name"):
        family, model = fields.get("cpu family"), fields.get("model")
        numbers = f" (family {family}, model {model})" if family and model else ""
        return fields["model name"] + numbers
    try:
        return platform.processor() or ""
    except Exception:
        return ""


@functools.cache
def process_provenance() -> dict[str, str]:
    """The values that are the same for every record of this process."""
    np = sys.modules.get("numpy")
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "package_version": _version(PACKAGE),
        "git_commit": git_commit(),
        "python_version": platform.python_version(),
        "numpy_version": str(getattr(np, "__version__", "") or _version("numpy")),
    }


def tensorflow_version() -> str:
    """TensorFlow's version if this process imported it, else ''."""
    tf = sys.modules.get("tensorflow")
    return str(getattr(tf, "__version__", "") or "") if tf is not None else ""


def training_settings(unit: Any, arm: Any = None) -> dict[str, Any]:
    """The settings of :data:`runner.schema.PROVENANCE_SETTINGS` as ``unit`` gives them (each
    from its section), with those ``arm`` sets itself (its ``settings``) in their place; None
    where neither says (``holdout`` at its neutral 0 is left out of a unit's settings, so a
    record the runner writes itself, for an arm that never reported, has it missing; the
    default task records its own value). ``unit`` is a :class:`runner.Unit` or the dict of a
    ``unit.json``; ``arm`` an :class:`runner.unit.Arm` or None."""
    out = {}
    for col, (section, key) in PROVENANCE_SETTINGS.items():
        sec = unit.get(section) if isinstance(unit, Mapping) else getattr(unit, section, None)
        out[col] = sec.get(key) if isinstance(sec, Mapping) else None
    own = dict(getattr(arm, "settings", ()) or ())
    return {**out, **{col: v for col, v in own.items() if col in out}}


def arm_provenance(unit: Any, started_at: str | None, ended_at: str | None,
                   arm: Any = None) -> dict[str, Any]:
    """Every provenance column of one arm's record (see :data:`runner.store.PROVENANCE`);
    ``arm``: as in :func:`training_settings`."""
    return {"started_at": started_at or "", "ended_at": ended_at or "",
            **process_provenance(), "tensorflow_version": tensorflow_version(),
            **training_settings(unit, arm)}


def planned_settings(sweep_toml: Any) -> dict[str, dict[str, Any]]:
    """``arm_id -> training_settings`` of every arm the sweep file ``sweep_toml`` (an output
    directory's record of what ran there) plans; ``{}`` when it is missing or no longer
    valid. It completes records written before a setting was recorded: the sweep says which
    value each of its arms trained with (an arm's id hashes it)."""
    from .sweep import SweepError, load_sweep

    try:
        sweep = load_sweep(sweep_toml, check_task=False)
    except (SweepError, OSError):
        return {}
    return {a.arm_id: training_settings(u, a) for u in sweep.plan() for a in u.arms}
