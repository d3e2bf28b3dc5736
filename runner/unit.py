"""What a task receives: one worker unit, i.e. one ``(N, gridsize, nphotons)`` combination and
the arms (loss x seed) to run in it. Imports no TensorFlow (only :mod:`ptycho.config`).

Task contract
-------------
A task is a top-level function ``task(unit: Unit) -> Iterable[dict]`` named in the sweep file
as ``"module:function"``. It runs in a fresh worker process, once per unit attempt, and returns
(or, better, ``yield``\\ s) one dict per arm of ``unit.arms``. Each dict must contain
``"arm_id"`` (one of ``unit.arms``) and any metrics (``amp_ssim``, ``train_s``, ``final_loss``,
...). A generator is consumed lazily: each record is written to disk the moment it is yielded,
so a crash later in the unit loses nothing already yielded. The worker adds the common columns;
see :mod:`runner.worker` for which keys win on conflict. Typical shape::

    def run_unit(unit):
        data = simulate(unit.simulation_config(), unit.model_config())   # once per unit
        model = build(unit.model_config())                               # once per unit
        for arm in unit.arms:
            cfg = unit.training_config(arm)        # nphotons, seed and loss preset applied
            metrics = train_and_evaluate(model, data, cfg)
            np.savez(unit.artifact_path(arm), amplitude=..., phase=..., ...)
            yield {"arm_id": arm.arm_id, **metrics}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig

__all__ = ["Arm", "Unit"]


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a unit: a loss preset and a seed. ``arm["loss"]`` works too."""

    arm_id: str
    loss: str
    seed: int

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {"arm_id": self.arm_id, "loss": self.loss, "seed": self.seed}


@dataclass(frozen=True)
class Unit:
    """One worker unit, as read from ``units/<unit_id>/unit.json``.

    Attributes:
        sweep: sweep name.
        unit_id: stable id of the unit (readable slug + hash of its configuration).
        task: the ``"module:function"`` being run.
        N, gridsize: patch size and group size of every arm of the unit.
        nphotons: dose of every arm of the unit.
        arms: the arms still to run in this attempt (arms already ok are not listed).
        model: full :class:`ModelConfig` dict (N, gridsize included).
        simulation: full :class:`SimulationConfig` dict.
        training: full :class:`TrainingConfig` dict with ``nphotons`` set; seed and loss
            weights are those of the defaults -- use :meth:`training_config` for an arm.
        artifact_dir: directory for the task's files (created before the task runs).
        timeout_s: the unit's wall-time limit; the worker is killed after it.
        attempt: 1 for the first attempt, 2... for retries of a crashed unit.
        attempt_id: unique id of this attempt (recorded with every record).
        threads: intra-op thread budget of this worker (``PTYCHO_SWEEP_THREADS``), or None;
            the task gives it to TensorFlow, BLAS and its own thread pools (the simulation's).
        interop_threads: inter-op threads (``PTYCHO_SWEEP_INTEROP_THREADS``), or None. Both
            are decided once, by the orchestrator (:func:`runner.resources.thread_counts`).
        paths: the unit's file paths as strings (see :class:`runner.paths.OutputPaths`).
    """

    sweep: str
    unit_id: str
    task: str
    N: int
    gridsize: int
    nphotons: float
    arms: tuple[Arm, ...]
    model: Mapping[str, Any]
    simulation: Mapping[str, Any]
    training: Mapping[str, Any]
    artifact_dir: Path
    timeout_s: float
    attempt: int = 1
    attempt_id: str = ""
    threads: int | None = None
    interop_threads: int | None = None
    paths: Mapping[str, str] = field(default_factory=dict)

    # -- configs -----------------------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        """The validated :class:`ModelConfig` of the unit."""
        return ModelConfig.from_dict(self.model)

    def simulation_config(self) -> SimulationConfig:
        """The validated :class:`SimulationConfig` of the unit."""
        return SimulationConfig.from_dict(self.simulation)

    def training_config(self, arm: Arm | str | Mapping[str, Any]) -> TrainingConfig:
        """The :class:`TrainingConfig` of ``arm`` (an Arm, its arm_id or a dict): the unit's
        training settings with ``nphotons``, the arm's ``seed`` and its loss preset applied."""
        arm = self.arm(arm)
        base = TrainingConfig.from_dict(self.training)
        return base.replace(nphotons=float(self.nphotons), seed=arm.seed).with_loss(arm.loss)

    def arm(self, arm: Arm | str | Mapping[str, Any]) -> Arm:
        """Look up an arm of this unit by Arm, arm_id or ``{"arm_id": ...}``."""
        arm_id = arm if isinstance(arm, str) else arm["arm_id"]
        for a in self.arms:
            if a.arm_id == arm_id:
                return a
        raise KeyError(f"unit {self.unit_id} has no arm {arm_id!r}; arms: "
                       f"{', '.join(a.arm_id for a in self.arms)}")

    def artifact_path(self, arm: Arm | str | Mapping[str, Any], suffix: str = ".npz") -> Path:
        """``artifact_dir / <arm_id><suffix>``: where an arm's reconstruction goes."""
        return self.artifact_dir / f"{self.arm(arm).arm_id}{suffix}"

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (the content of ``unit.json``)."""
        return {
            "version": 1,
            "sweep": self.sweep,
            "unit_id": self.unit_id,
            "task": self.task,
            "N": self.N,
            "gridsize": self.gridsize,
            "nphotons": self.nphotons,
            "arms": [a.to_dict() for a in self.arms],
            "model": dict(self.model),
            "simulation": dict(self.simulation),
            "training": dict(self.training),
            "artifact_dir": str(self.artifact_dir),
            "timeout_s": self.timeout_s,
            "attempt": self.attempt,
            "attempt_id": self.attempt_id,
            "paths": dict(self.paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unit:
        """Inverse of :meth:`to_dict`; ``threads`` and ``interop_threads`` come from
        ``PTYCHO_SWEEP_THREADS`` and ``PTYCHO_SWEEP_INTEROP_THREADS``."""
        threads = os.environ.get("PTYCHO_SWEEP_THREADS")
        inter = os.environ.get("PTYCHO_SWEEP_INTEROP_THREADS")
        return cls(
            sweep=data["sweep"],
            unit_id=data["unit_id"],
            task=data["task"],
            N=int(data["N"]),
            gridsize=int(data["gridsize"]),
            nphotons=float(data["nphotons"]),
            arms=tuple(Arm(a["arm_id"], a["loss"], int(a["seed"])) for a in data["arms"]),
            model=dict(data["model"]),
            simulation=dict(data["simulation"]),
            training=dict(data["training"]),
            artifact_dir=Path(data["artifact_dir"]),
            timeout_s=float(data["timeout_s"]),
            attempt=int(data.get("attempt", 1)),
            attempt_id=str(data.get("attempt_id", "")),
            threads=int(threads) if threads and threads.isdigit() else None,
            interop_threads=int(inter) if inter and inter.isdigit() else None,
            paths=dict(data.get("paths", {})),
        )
