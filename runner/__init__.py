"""runner: process-isolated dose-response sweeps of the ptycho model core.

Every ``(N, gridsize, nphotons)`` combination of a sweep runs in a fresh Python process (a
worker unit), so no TensorFlow/XLA state survives from one combination to the next. The
orchestrator (this package, minus :mod:`runner.worker`) never imports TensorFlow.

Python API (loaded lazily, so ``import runner`` stays cheap for workers)::

    runner.run_sweep(sweep, out_dir=None, n_jobs=None, backend="local", force=False,
                     dry_run=False, progress=True) -> pandas.DataFrame
    runner.load_results(out_dir) -> pandas.DataFrame
    runner.load_sweep(path_or_dict) -> runner.Sweep
    runner.Unit, runner.Arm        what a task receives (see runner.unit for the contract)

CLI: ``ptycho-sweep`` / ``python -m runner`` (see :mod:`runner.cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .unit import Arm, Unit

__all__ = ["Arm", "Unit", "run_sweep", "plan_run", "load_results", "load_sweep", "Sweep",
           "SweepError", "BackendError", "register_executor", "available_executors",
           "OutputPaths"]

_LAZY = {
    "run_sweep": "runner.orchestrator",
    "plan_run": "runner.orchestrator",
    "load_results": "runner.store",
    "load_sweep": "runner.sweep",
    "Sweep": "runner.sweep",
    "SweepError": "runner.sweep",
    "BackendError": "runner.executors",
    "register_executor": "runner.executors",
    "available_executors": "runner.executors",
    "OutputPaths": "runner.paths",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
