"""What a task receives: one worker unit, i.e. one ``(N, gridsize, nphotons)`` combination and
the arms (loss x seed x the training settings the sweep varies) to run in it. Imports no
TensorFlow (only :mod:`ptycho.config`).

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
            cfg = unit.training_config(arm)        # nphotons, seed, settings, loss applied
            metrics = train_and_evaluate(model, data, cfg)
            np.savez(unit.artifact_path(arm), amplitude=..., phase=..., ...)
            yield {"arm_id": arm.arm_id, **metrics}
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig

if TYPE_CHECKING:
    from .paths import OutputPaths

__all__ = ["Arm", "Unit"]

_NO_PATHS: Mapping[str, str] = MappingProxyType({})


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a unit: a loss preset, a seed and the training settings the sweep varies
    between arms (``settings``: (name, value) pairs of :data:`runner.schema.ARM_SETTINGS`,
    empty when it varies none). ``arm["loss"]`` works too."""

    arm_id: str
    loss: str
    seed: int
    settings: tuple[tuple[str, Any], ...] = ()

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        out = {"arm_id": self.arm_id, "loss": self.loss, "seed": self.seed}
        return {**out, "settings": dict(self.settings)} if self.settings else out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arm:
        return cls(data["arm_id"], data["loss"], int(data["seed"]),
                   tuple((data.get("settings") or {}).items()))

    def label(self) -> str:
        """``loss, seed N`` and the arm's own settings, for log lines."""
        return ", ".join([self.loss, f"seed {self.seed}",
                          *(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in self.settings)])


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of a sweep: planned by :meth:`runner.plan.Sweep.plan`, handed to the task.

    The same type serves both: the plan makes one per ``(N, gridsize, nphotons)`` (attempt
    fields at their defaults, dicts shared between units so a 10^6-unit plan stays small), and
    :meth:`for_attempt` gives the copy written to ``units/<unit_id>/unit.json`` for a worker.

    Attributes:
        sweep: sweep name.
        unit_id: stable id of the unit (readable slug + hash of its configuration).
        task: the ``"module:function"`` being run.
        N, gridsize: patch size and group size of every arm of the unit.
        nphotons: dose of every arm of the unit (photons per pattern).
        arms: the unit's arms; in an attempt, those still to run (arms already ok are not
            listed).
        model: full :class:`ModelConfig` dict (N, gridsize included).
        simulation: full :class:`SimulationConfig` dict.
        training_base: full :class:`TrainingConfig` dict as the sweep resolves it (shared by
            the sweep's units); :attr:`training` has this unit's ``nphotons`` set.
        timeout_s: the unit's wall-time limit; the worker is killed after it.
        attempt: 1 for the first attempt, 2... for retries of a crashed unit.
        attempt_id: unique id of this attempt (recorded with every record).
        paths: the unit's file paths as strings (see :class:`runner.paths.OutputPaths`);
            empty in a plan. :attr:`artifact_dir` is ``paths["artifact_dir"]``.

    :attr:`threads` and :attr:`interop_threads`, the worker's thread budget, come from its
    environment: decided once, by the orchestrator (:func:`runner.resources.thread_counts`),
    and given by the task to TensorFlow, BLAS and its own thread pools (the simulation's).
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
    training_base: Mapping[str, Any]
    timeout_s: float = 3600.0
    attempt: int = 1
    attempt_id: str = ""
    paths: Mapping[str, str] = dataclasses.field(default_factory=lambda: _NO_PATHS)

    @property
    def artifact_dir(self) -> Path | None:
        """Directory for the task's files (created before the task runs); None in a plan."""
        path = self.paths.get("artifact_dir")
        return None if path is None else Path(path)

    @property
    def threads(self) -> int | None:
        """This worker's intra-op thread budget (``PTYCHO_SWEEP_THREADS``), or None."""
        return _env_int("PTYCHO_SWEEP_THREADS")

    @property
    def interop_threads(self) -> int | None:
        """This worker's inter-op threads (``PTYCHO_SWEEP_INTEROP_THREADS``), or None."""
        return _env_int("PTYCHO_SWEEP_INTEROP_THREADS")

    @property
    def training(self) -> dict[str, Any]:
        """The full :class:`TrainingConfig` dict with this unit's ``nphotons``; seed and
        loss weights are the defaults -- use :meth:`training_config` for an arm."""
        return {**self.training_base, "nphotons": self.nphotons}

    def for_attempt(self, paths: OutputPaths, arms: Iterable[Arm] | None = None,
                    attempt: int = 1, attempt_id: str = "") -> Unit:
        """This unit as one attempt runs it: ``arms`` (default: all) under ``paths``."""
        return dataclasses.replace(
            self, arms=tuple(self.arms if arms is None else arms), attempt=attempt,
            attempt_id=attempt_id, paths=paths.unit_paths(self.unit_id))

    def arm_columns(self, arm: Arm | str | Mapping[str, Any]) -> dict[str, Any]:
        """The identity columns (:data:`runner.schema.IDENTITY`) of an arm's record, and the
        training settings the arm sets itself (``arm.settings``)."""
        arm = self.arm(arm)
        return {"sweep": self.sweep, "arm_id": arm.arm_id, "unit_id": self.unit_id,
                "N": self.N, "gridsize": self.gridsize, "nphotons": self.nphotons,
                "loss": arm.loss, "seed": arm.seed, **dict(arm.settings)}

    # -- configs -----------------------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        """The validated :class:`ModelConfig` of the unit."""
        return ModelConfig.from_dict(self.model)

    def simulation_config(self) -> SimulationConfig:
        """The validated :class:`SimulationConfig` of the unit."""
        return SimulationConfig.from_dict(self.simulation)

    def training_config(self, arm: Arm | str | Mapping[str, Any]) -> TrainingConfig:
        """The :class:`TrainingConfig` of ``arm`` (an Arm, its arm_id or a dict): the unit's
        training settings with ``nphotons``, the arm's ``seed``, its own settings and its loss
        preset applied."""
        arm = self.arm(arm)
        base = TrainingConfig.from_dict(self.training)
        return base.replace(nphotons=float(self.nphotons), seed=arm.seed,
                            **dict(arm.settings)).with_loss(arm.loss)

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
        if self.artifact_dir is None:
            raise ValueError(f"unit {self.unit_id} is a plan, not an attempt: it has no "
                             f"artifact_dir (see Unit.for_attempt)")
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
            "training": self.training,
            "artifact_dir": None if self.artifact_dir is None else str(self.artifact_dir),
            "timeout_s": self.timeout_s,
            "attempt": self.attempt,
            "attempt_id": self.attempt_id,
            "paths": dict(self.paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unit:
        """Inverse of :meth:`to_dict` (an ``artifact_dir`` outside ``paths`` joins them)."""
        paths = dict(data.get("paths") or {})
        if data.get("artifact_dir") is not None:
            paths.setdefault("artifact_dir", str(data["artifact_dir"]))
        return cls(
            sweep=data["sweep"],
            unit_id=data["unit_id"],
            task=data["task"],
            N=int(data["N"]),
            gridsize=int(data["gridsize"]),
            nphotons=float(data["nphotons"]),
            arms=tuple(Arm.from_dict(a) for a in data["arms"]),
            model=dict(data["model"]),
            simulation=dict(data["simulation"]),
            training_base=dict(data["training"]),
            timeout_s=float(data["timeout_s"]),
            attempt=int(data.get("attempt", 1)),
            attempt_id=str(data.get("attempt_id", "")),
            paths=paths,
        )
