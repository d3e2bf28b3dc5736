"""A validated sweep and its expansion into units and arms, with stable ids.

Build a :class:`Sweep` with :func:`runner.sweep.load_sweep` (which validates everything);
:meth:`Sweep.plan` expands it into :class:`~runner.unit.Unit` s, one per ``(N, gridsize,
nphotons)``, each with its arms (loss x seed x the settings ``[arms]`` lists): the type a task
receives, so every fact about a unit is spelled once.

Ids: an arm's id is the first 12 hex digits of the SHA-256 of the canonical JSON of its fully
resolved configuration (task, N, gridsize, nphotons, loss, seed and the full model, simulation
and per-arm training dicts); a unit's id is a readable slug plus 8 hex digits of the hash of the
configuration its arms share, without the fields each arm sets itself (loss, seed, the
settings ``[arms]`` lists), e.g.
``N64_g2_p1e+04_3f2a9c1b``. The same file always gives the same ids; changing any setting that
reaches the task changes them. An option added to a config after studies were run
(``ptycho.config_base.added_option``) is left out at its neutral value, so adding an option does
not orphan the results recorded before it (``ModelConfig.identity_dict``). A value that
depends on ``N`` (``simulation.feature_scale = "auto"``) is resolved per ``N`` first
(``SimulationConfig.for_N``), so the id names what the unit computes.

Expansion is linear in the number of arms and shares every dict that units have in common
(one model dict per ``(N, gridsize)``, one simulation dict per ``N``, one training dict per
sweep), so a 10^6-unit plan fits in a few hundred MB (``benchmarks/dry_run_scale.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig

from .unit import Arm, Unit

__all__ = ["Sweep", "canonical_json", "short_hash", "dumps_toml",
           "SET_ELSEWHERE"]

#: Config fields a sweep sets from its grid/arms (not from the config sections), and from where.
SET_ELSEWHERE = {
    "model": {"N": "grid.N", "gridsize": "grid.gridsize"},
    "training": {"nphotons": "grid.nphotons", "seed": "arms.seed", "loss": "arms.loss",
                 "nll_weight": "arms.loss", "mae_weight": "arms.loss"},
    "simulation": {},
}


def canonical_json(obj: Any) -> str:
    """Canonical JSON used for ids: sorted keys, no spaces, finite numbers only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def short_hash(obj: Any, n: int = 12) -> str:
    """First ``n`` hex digits of the SHA-256 of ``canonical_json(obj)``."""
    return _hex(canonical_json(obj), n)


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def dumps_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of a sweep dict (tables of scalars and lists), through ``tomli_w``."""
    return tomli_w.dumps({k: dict(v) for k, v in data.items()})


class _Template:
    """The canonical JSON of a dict with a few variable leaves, rendered by substitution.

    Build the dict with :meth:`slot` placeholders where values vary; :meth:`render` gives
    exactly ``canonical_json`` of the dict with those values (the placeholders are unique
    strings, replaced by each value's JSON), at a fraction of the cost."""

    _salt = uuid.uuid4().hex

    @classmethod
    def slot(cls, name: str) -> str:
        return f"@{cls._salt}:{name}@"

    def __init__(self, obj: Any):
        self.text = canonical_json(obj)

    def render(self, **values: Any) -> str:
        text = self.text
        for name, v in values.items():
            text = text.replace(json.dumps(self.slot(name)), json.dumps(v, allow_nan=False))
        return text


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. Build it with :func:`runner.sweep.load_sweep`.

    ``model``, ``simulation`` and ``training`` hold the settings given in the file (ints given
    for float fields converted); :meth:`plan` resolves them with the dataclass defaults.
    """

    name: str
    task: str
    timeout_s: float
    retries: int
    N: tuple[int, ...]
    gridsize: tuple[int, ...]
    nphotons: tuple[float, ...]
    loss: tuple[str, ...]
    seed: tuple[int, ...]
    model: Mapping[str, Any]
    simulation: Mapping[str, Any]
    training: Mapping[str, Any]
    source: str = "<dict>"
    text: str | None = dataclasses.field(default=None, compare=False, repr=False)
    arm_timeout_s: float | None = None
    memory_limit_mb: float | None = None
    #: training settings varied between the arms of a unit: ``((key, values), ...)``, keys of
    #: :data:`runner.schema.ARM_SETTINGS` (``[arms]`` beside loss and seed)
    arm_settings: tuple[tuple[str, tuple], ...] = ()

    @property
    def n_units(self) -> int:
        return len(self.N) * len(self.gridsize) * len(self.nphotons)

    @property
    def n_arms(self) -> int:
        return self.n_units * self.arms_per_unit

    @property
    def arms_per_unit(self) -> int:
        return math.prod([len(self.loss), len(self.seed),
                          *(len(values) for _, values in self.arm_settings)])

    def arm_axes(self) -> dict[str, list]:
        """The ``[arms]`` lists: loss, seed and the varied settings, in the file's order."""
        return {"loss": list(self.loss), "seed": list(self.seed),
                **{k: list(v) for k, v in self.arm_settings}}

    def to_dict(self) -> dict[str, Any]:
        """The sweep as a sweep-file dict (loadable again by ``load_sweep``)."""
        out: dict[str, Any] = {
            "sweep": {"name": self.name, "task": self.task, "timeout_s": self.timeout_s,
                      "retries": self.retries,
                      **{k: getattr(self, k) for k in ("arm_timeout_s", "memory_limit_mb")
                         if getattr(self, k) is not None}},
            "grid": {"N": list(self.N), "gridsize": list(self.gridsize),
                     "nphotons": list(self.nphotons)},
            "arms": self.arm_axes(),
        }
        for section in ("model", "simulation", "training"):
            if getattr(self, section):
                out[section] = dict(getattr(self, section))
        return out

    def to_toml(self) -> str:
        """The sweep-file text: the original text if loaded from a file, else generated."""
        return self.text if self.text is not None else dumps_toml(self.to_dict())

    def settings(self) -> dict[str, Any]:
        """What every unit of the sweep shares (fully resolved): name, task, model,
        simulation and training settings. Two sweeps with the same settings may differ in
        their grid and arms and still share an output directory (extending a study)."""
        return {
            "name": self.name, "task": self.task,
            "model": {k: v for k, v in ModelConfig(**self.model).to_dict().items()
                      if k not in SET_ELSEWHERE["model"]},
            "simulation": SimulationConfig(**self.simulation).to_dict(),
            "training": {k: v for k, v in TrainingConfig(**self.training).to_dict().items()
                         if k not in SET_ELSEWHERE["training"]
                         and k not in dict(self.arm_settings)},
        }

    def with_arm_axes(self, keys) -> Sweep:
        """The same arms with each of ``keys`` (of :data:`runner.schema.ARM_SETTINGS`) an arm
        axis: a ``[training]`` value, or the default, becomes a one-value ``[arms]`` list.
        Arm ids do not change (unit ids may); ``self`` when nothing moves."""
        have = dict(self.arm_settings)
        missing = [k for k in keys if k not in have]
        if not missing:
            return self
        resolved = TrainingConfig(**self.training)
        training = {k: v for k, v in self.training.items() if k not in missing}
        axes = self.arm_settings + tuple((k, (getattr(resolved, k),)) for k in missing)
        return dataclasses.replace(self, training=training, arm_settings=axes, text=None)

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same: :meth:`settings` plus the grid and arms (not the
        execution policy: ``timeout_s``, ``retries``, ``arm_timeout_s``, ``memory_limit_mb``)."""
        return {**self.settings(),
                "grid": {"N": sorted(self.N), "gridsize": sorted(self.gridsize),
                         "nphotons": sorted(self.nphotons)},
                "arms": {k: sorted(v) for k, v in self.arm_axes().items()}}

    def plan(self) -> list[Unit]:
        """Expand into units (grid order as given) with their arms (loss x seed x the varied
        settings); each is a :class:`Unit` with its attempt fields unset (see
        :meth:`Unit.for_attempt`). An arm's settings enter its id as the same settings in
        ``[training]`` would: an arm of ``realspace_weight = [0, 0.3]`` has the id of the arm
        of a sweep with ``training.realspace_weight`` at that value (the unit's id differs)."""
        slot = _Template.slot
        sim_cfg = SimulationConfig(**self.simulation)
        base = TrainingConfig(**self.training)
        unit_training = base.identity_dict()  # default seed and loss: shared by the unit's arms
        # The unit's id hashes what its arms share, not the defaults of what each arm sets
        # itself (loss, its weights, seed): changing a default loss keeps the units' ids.
        arm_set = {k for k, where in SET_ELSEWHERE["training"].items() if where.startswith("arms.")}
        arm_set |= {k for k, _ in self.arm_settings}
        unit_key = {k: v for k, v in unit_training.items() if k not in arm_set}
        keys = [k for k, _ in self.arm_settings]
        combos = [tuple(zip(keys, c, strict=True))
                  for c in itertools.product(*(v for _, v in self.arm_settings))]
        arm_training = {(loss, c): base.replace(**dict(c)).with_loss(loss).identity_dict()
                        for loss in self.loss for c in combos}
        units = []
        for n in self.N:
            # N-dependent values resolved: "auto" keeps the pre-option ids where it is 1
            # (N <= 32) and has an explicit 2.0's at N = 64.
            sim = sim_cfg.for_N(n).identity_dict()
            for g in self.gridsize:
                model = ModelConfig(**self.model, N=n, gridsize=g).identity_dict()
                shared = {"task": self.task, "N": n, "gridsize": g, "nphotons": slot("p"),
                          "model": model, "simulation": sim}
                unit_tpl = _Template({**shared, "training": {**unit_key, "nphotons": slot("p")}})
                arm_tpls = [(loss, seed, c, _Template({
                    **shared, "loss": loss, "seed": seed,
                    "training": {**arm_training[loss, c], "nphotons": slot("p"), "seed": seed}}))
                    for loss in self.loss for seed in self.seed for c in combos]
                for p in self.nphotons:
                    arms = tuple(Arm(_hex(t.render(p=p), 12), loss, seed, c)
                                 for loss, seed, c, t in arm_tpls)
                    uid = f"N{n}_g{g}_p{p:.3g}_" + _hex(unit_tpl.render(p=p), 8)
                    units.append(Unit(self.name, uid, self.task, n, g, p, arms, model, sim,
                                      unit_training, self.timeout_s))
        return units
