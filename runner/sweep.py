"""Sweep files: load, validate everything up front, and expand into units and arms.

A sweep file (TOML, or the equivalent dict) has the sections::

    [sweep]       name (required), task = "module:function", timeout_s > 0, retries >= 0
    [grid]        N, gridsize, nphotons: non-empty lists, one worker unit per combination
    [arms]        loss (keys of ptycho.config.LOSS_PRESETS), seed (ints >= 0): arms of a unit
    [model]       ModelConfig fields except N, gridsize        (optional)
    [simulation]  SimulationConfig fields                      (optional)
    [training]    TrainingConfig fields except nphotons, seed, nll_weight, mae_weight (optional)

:func:`load_sweep` validates all of it before anything runs -- unknown sections and keys, types,
duplicates, every (N, gridsize, nphotons, loss, seed) combination through the ``ptycho.config``
dataclasses and ``SimulationConfig.check_compatible``, and the task reference (statically, see
:mod:`runner.taskref`) -- and raises one :class:`SweepError` listing every problem found.

Ids: an arm's id is the first 12 hex digits of the SHA-256 of the canonical JSON of its fully
resolved configuration (task, N, gridsize, nphotons, loss, seed and the full model, simulation
and per-arm training dicts); a unit's id is a readable slug plus 8 hex digits of the hash of the
configuration its arms share, e.g. ``N64_g2_p1e+04_3f2a9c1b``. The same file always gives the
same ids; changing any setting that reaches the task changes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ptycho.config import (
    LOSS_PRESETS,
    ConfigError,
    ModelConfig,
    SimulationConfig,
    TrainingConfig,
)

from .paths import OutputPaths
from .taskref import check_task, parse_task
from .unit import Arm, Unit

__all__ = ["SweepError", "Sweep", "UnitPlan", "load_sweep", "check_output_dir",
           "DEFAULT_TASK", "canonical_json", "short_hash"]

DEFAULT_TASK = "experiments.dose_response:run_unit"
SECTIONS = ("sweep", "grid", "arms", "model", "simulation", "training")
_SWEEP_KEYS = ("name", "task", "timeout_s", "retries")
_GRID_KEYS = ("N", "gridsize", "nphotons")
_ARM_KEYS = ("loss", "seed")
#: Keys the grid/arms set, with where they are set from.
_SET_ELSEWHERE = {
    "model": {"N": "grid.N", "gridsize": "grid.gridsize"},
    "training": {"nphotons": "grid.nphotons", "seed": "arms.seed",
                 "nll_weight": "arms.loss", "mae_weight": "arms.loss"},
    "simulation": {},
}
_CONFIG_CLASSES = {"model": ModelConfig, "simulation": SimulationConfig,
                   "training": TrainingConfig}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepError(ValueError):
    """An invalid sweep (or output directory). ``errors`` lists every problem; the message
    names the source, the key (e.g. ``grid.N``) and what is allowed."""

    def __init__(self, source: str, errors: Sequence[str]):
        self.source = source
        self.errors = list(dict.fromkeys(errors))  # de-duplicated, order kept
        lines = [f"{source}: {e}" for e in self.errors]
        super().__init__("\n".join(lines) if len(lines) != 1 else lines[0])


# -- helpers ---------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """Canonical JSON used for ids: sorted keys, no spaces, finite numbers only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def short_hash(obj: Any, n: int = 12) -> str:
    """First ``n`` hex digits of the SHA-256 of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _float_fields(cls) -> set[str]:
    return {f.name for f in fields(cls) if f.type in ("float", float)}


def _normalise(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    """Ints given for float fields become floats (so 1 and 1.0 give the same ids)."""
    floats = _float_fields(cls)
    return {k: float(v) if k in floats and _is_int(v) else v for k, v in values.items()}


_CFG_MSG = re.compile(r"^(ModelConfig|TrainingConfig|SimulationConfig)\.(\w+)")
_CFG_SECTION = {"ModelConfig": "model", "TrainingConfig": "training",
                "SimulationConfig": "simulation"}


def _sweep_key(msg: str) -> str:
    """Rewrite a ConfigError message to name the sweep-file key (``grid.N``, ``model.offset``)."""
    m = _CFG_MSG.match(msg)
    if not m:
        return msg
    section = _CFG_SECTION[m.group(1)]
    key = _SET_ELSEWHERE[section].get(m.group(2)) or f"{section}.{m.group(2)}"
    return key + msg[m.end():]


# -- the validated sweep ---------------------------------------------------------------------
@dataclass(frozen=True)
class UnitPlan:
    """One unit of the expanded sweep: a (N, gridsize, nphotons) combination and its arms."""

    unit_id: str
    N: int
    gridsize: int
    nphotons: float
    arms: tuple[Arm, ...]
    model: Mapping[str, Any]
    simulation: Mapping[str, Any]
    training: Mapping[str, Any]

    def to_unit(self, sweep: Sweep, paths: OutputPaths, arms: Sequence[Arm] | None = None,
                attempt: int = 1, attempt_id: str = "") -> Unit:
        """The :class:`Unit` handed to the worker (``arms`` default: all of them)."""
        return Unit(
            sweep=sweep.name, unit_id=self.unit_id, task=sweep.task, N=self.N,
            gridsize=self.gridsize, nphotons=self.nphotons,
            arms=tuple(self.arms if arms is None else arms),
            model=dict(self.model), simulation=dict(self.simulation),
            training=dict(self.training), artifact_dir=paths.artifact_dir(self.unit_id),
            timeout_s=sweep.timeout_s, attempt=attempt, attempt_id=attempt_id,
            paths=paths.unit_paths(self.unit_id),
        )

    def arm_columns(self, sweep: Sweep, arm: Arm) -> dict[str, Any]:
        """The identity columns of an arm's record."""
        return {"sweep": sweep.name, "arm_id": arm.arm_id, "unit_id": self.unit_id,
                "N": self.N, "gridsize": self.gridsize, "nphotons": self.nphotons,
                "loss": arm.loss, "seed": arm.seed}


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. Build it with :func:`load_sweep`.

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

    @property
    def n_units(self) -> int:
        return len(self.N) * len(self.gridsize) * len(self.nphotons)

    @property
    def n_arms(self) -> int:
        return self.n_units * len(self.loss) * len(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The sweep as a sweep-file dict (loadable again by :func:`load_sweep`)."""
        out: dict[str, Any] = {
            "sweep": {"name": self.name, "task": self.task, "timeout_s": self.timeout_s,
                      "retries": self.retries},
            "grid": {"N": list(self.N), "gridsize": list(self.gridsize),
                     "nphotons": list(self.nphotons)},
            "arms": {"loss": list(self.loss), "seed": list(self.seed)},
        }
        for section in ("model", "simulation", "training"):
            if getattr(self, section):
                out[section] = dict(getattr(self, section))
        return out

    def to_toml(self) -> str:
        """The sweep-file text: the original text if loaded from a file, else generated."""
        return self.text if self.text is not None else dumps_toml(self.to_dict())

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same: everything that reaches a task (fully resolved),
        not the execution policy (``timeout_s``, ``retries``)."""
        return {
            "name": self.name, "task": self.task,
            "grid": {"N": sorted(self.N), "gridsize": sorted(self.gridsize),
                     "nphotons": sorted(self.nphotons)},
            "arms": {"loss": sorted(self.loss), "seed": sorted(self.seed)},
            "model": {k: v for k, v in ModelConfig(**self.model).to_dict().items()
                      if k not in ("N", "gridsize")},
            "simulation": SimulationConfig(**self.simulation).to_dict(),
            "training": {k: v for k, v in TrainingConfig(**self.training).to_dict().items()
                         if k not in _SET_ELSEWHERE["training"]},
        }

    def plan(self) -> list[UnitPlan]:
        """Expand into units (grid order as given) with their arms (loss x seed)."""
        sim = SimulationConfig(**self.simulation).to_dict()
        units = []
        for n in self.N:
            for g in self.gridsize:
                model = ModelConfig(**self.model, N=n, gridsize=g).to_dict()
                for p in self.nphotons:
                    base = TrainingConfig(**self.training, nphotons=p)
                    shared = {"task": self.task, "N": n, "gridsize": g, "nphotons": p,
                              "model": model, "simulation": sim}
                    arms = []
                    for loss in self.loss:
                        for seed in self.seed:
                            tr = base.replace(seed=seed).with_loss(loss).to_dict()
                            arm_id = short_hash({**shared, "loss": loss, "seed": seed,
                                                 "training": tr})
                            arms.append(Arm(arm_id, loss, seed))
                    uid = f"N{n}_g{g}_p{p:.3g}_" + short_hash(
                        {**shared, "training": base.to_dict()}, 8)
                    units.append(UnitPlan(uid, n, g, p, tuple(arms), model, sim,
                                          base.to_dict()))
        return units


# -- validation ------------------------------------------------------------------------------
def _check_list(errors, key, value, ok, what) -> list:
    """Validate a non-empty list of unique values; returns the valid elements."""
    if not isinstance(value, (list, tuple)):
        errors.append(f"{key} = {value!r} is invalid: must be a list of {what}")
        return []
    if not value:
        errors.append(f"{key} is empty: must be a non-empty list of {what}")
        return []
    good = []
    for v in value:
        if not ok(v):
            errors.append(f"{key}: element {v!r} is invalid: must be {what}")
        elif v in good:
            errors.append(f"{key}: duplicate value {v!r}; each value may appear once")
        else:
            good.append(v)
    return good


def _check_section_keys(errors, section, data, allowed, required=()):
    for k in data:
        if k in _SET_ELSEWHERE.get(section, {}):
            errors.append(f"{section}.{k} is not allowed here: it is set by "
                          f"{_SET_ELSEWHERE[section][k]}")
        elif k not in allowed:
            errors.append(f"{section}.{k} is an unknown key; allowed keys in [{section}]: "
                          f"{', '.join(allowed)}")
    for k in required:
        if k not in data:
            errors.append(f"{section}.{k} is required but missing")


def _validate(raw: Any, source: str, check_task_ref: bool = True,
              text: str | None = None) -> Sweep:
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise SweepError(source, [f"must be a table of sections, got {type(raw).__name__}"])
    for s in raw:
        if s not in SECTIONS:
            errors.append(f"[{s}] is an unknown section; allowed sections: "
                          f"{', '.join(SECTIONS)}")
    sec: dict[str, dict] = {}
    for s in SECTIONS:
        v = raw.get(s, {})
        if not isinstance(v, Mapping):
            errors.append(f"[{s}] must be a table (section), got {v!r}")
            v = {}
        sec[s] = dict(v)
    if "sweep" not in raw:
        errors.append("[sweep] section is required (with at least name = \"...\")")
    if "grid" not in raw:
        errors.append("[grid] section is required (with N, gridsize and nphotons lists)")

    # [sweep]
    sw = sec["sweep"]
    _check_section_keys(errors, "sweep", sw, _SWEEP_KEYS, ("name",) if "sweep" in raw else ())
    name = sw.get("name", "")
    if "name" in sw and (not isinstance(name, str) or not _NAME_RE.match(name)):
        errors.append(f"sweep.name = {name!r} is invalid: must be a non-empty string of "
                      f"letters, digits, '.', '_' or '-' (it names the output directory)")
    task = sw.get("task", DEFAULT_TASK)
    if check_task_ref:
        problem = check_task(task)
    else:
        try:
            parse_task(task)
            problem = None
        except ValueError as exc:
            problem = str(exc)
    if problem:
        errors.append(f"sweep.task = {task!r} is invalid: {problem}")
    timeout_s = sw.get("timeout_s", 900.0)
    if not _is_number(timeout_s) or timeout_s <= 0:
        errors.append(f"sweep.timeout_s = {timeout_s!r} is invalid: must be a number of "
                      f"seconds > 0")
    retries = sw.get("retries", 1)
    if not _is_int(retries) or retries < 0:
        errors.append(f"sweep.retries = {retries!r} is invalid: must be an integer >= 0")

    # [grid] and [arms]
    grid = sec["grid"]
    _check_section_keys(errors, "grid", grid, _GRID_KEYS, _GRID_KEYS if "grid" in raw else ())
    def grid_list(key, ok, what):
        return _check_list(errors, f"grid.{key}", grid[key], ok, what) if key in grid else []

    Ns = grid_list("N", _is_int, "integers")
    gs = grid_list("gridsize", _is_int, "integers")
    ps = [float(p) for p in grid_list("nphotons", _is_number, "numbers (photons per pattern)")]
    if len(set(ps)) != len(ps):
        errors.append("grid.nphotons: duplicate values (e.g. 10000 and 1e4)")
        ps = list(dict.fromkeys(ps))
    arms = sec["arms"]
    _check_section_keys(errors, "arms", arms, _ARM_KEYS)
    losses = _check_list(errors, "arms.loss", arms.get("loss", ["nll"]),
                         lambda v: isinstance(v, str),
                         f"loss names ({', '.join(map(repr, LOSS_PRESETS))})")
    for loss in list(losses):
        if loss not in LOSS_PRESETS:
            errors.append(f"arms.loss: {loss!r} is not allowed: must be one of "
                          f"{', '.join(map(repr, LOSS_PRESETS))}")
            losses.remove(loss)
    seeds = _check_list(errors, "arms.seed", arms.get("seed", [0]),
                        lambda v: _is_int(v) and v >= 0, "integers >= 0")

    # [model], [simulation], [training]
    overrides: dict[str, dict] = {}
    for s, cls in _CONFIG_CLASSES.items():
        allowed = [f.name for f in fields(cls) if f.name not in _SET_ELSEWHERE[s]]
        _check_section_keys(errors, s, sec[s], allowed)
        overrides[s] = _normalise(cls, {k: v for k, v in sec[s].items() if k in allowed})

    # every combination through the config dataclasses
    sim = None
    try:
        sim = SimulationConfig(**overrides["simulation"])
    except ConfigError as exc:
        errors.append(_sweep_key(str(exc)))
    for n in Ns or [ModelConfig.N]:
        for g in gs or [ModelConfig.gridsize]:
            try:
                model = ModelConfig(**overrides["model"], N=n, gridsize=g)
            except ConfigError as exc:
                errors.append(_sweep_key(str(exc)))
                continue
            if sim is not None:
                try:
                    sim.check_compatible(model)
                except ConfigError as exc:
                    errors.append(_sweep_key(str(exc)))
    for p in ps or [TrainingConfig.nphotons]:
        for loss in losses or ["nll"]:
            for seed in seeds or [0]:
                try:
                    TrainingConfig(**overrides["training"], nphotons=p, seed=seed).with_loss(loss)
                except ConfigError as exc:
                    errors.append(_sweep_key(str(exc)))
    if errors:
        raise SweepError(source, errors)
    return Sweep(name=name, task=task, timeout_s=float(timeout_s), retries=int(retries),
                 N=tuple(Ns), gridsize=tuple(gs), nphotons=tuple(ps), loss=tuple(losses),
                 seed=tuple(seeds), model=overrides["model"],
                 simulation=overrides["simulation"], training=overrides["training"],
                 source=source, text=text)


def load_sweep(sweep: str | Path | Mapping[str, Any] | Sweep, *,
               check_task: bool = True) -> Sweep:
    """Load and validate a sweep from a TOML path, a dict, or return a :class:`Sweep` as is.

    Raises :class:`SweepError` listing every problem (file, key and what is allowed).
    ``check_task=False`` skips the static check of the task reference.
    """
    if isinstance(sweep, Sweep):
        return sweep
    if isinstance(sweep, Mapping):
        return _validate(sweep, "<dict>", check_task)
    path = Path(sweep)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(str(path), [f"cannot read the sweep file: {exc.strerror or exc}"]) \
            from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(str(path), [f"not valid TOML: {exc}"]) from None
    return _validate(raw, str(path), check_task, text=text)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_output_dir(sweep: Sweep, out_dir: str | Path) -> None:
    """Raise :class:`SweepError` if ``out_dir`` holds anything but this sweep's output.

    A directory is fine if it does not exist, is empty, or has a ``sweep.toml`` whose
    :meth:`Sweep.identity` equals this sweep's (timeout and retries may differ)."""
    paths = OutputPaths(out_dir)
    root = paths.root
    if not root.exists():
        return
    if not root.is_dir():
        raise SweepError(sweep.source, [f"output {root} exists and is not a directory; pick "
                                        f"another --out"])
    if not paths.sweep_toml.is_file():
        if any(p.name != paths.lock.name for p in root.iterdir()):
            raise SweepError(sweep.source, [
                f"output directory {root} is not empty and holds no sweep.toml; pick another "
                f"--out (or an empty directory)"])
        return
    try:
        other = load_sweep(paths.sweep_toml, check_task=False)
    except SweepError as exc:
        raise SweepError(sweep.source, [
            f"output directory {root} holds an invalid sweep.toml ({exc.errors[0]}); pick "
            f"another --out"]) from None
    mine, theirs = _flatten(sweep.identity()), _flatten(other.identity())
    diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if diff:
        details = "; ".join(f"{k} = {mine.get(k)!r} here but {theirs.get(k)!r} there"
                            for k in diff[:5])
        raise SweepError(sweep.source, [
            f"output directory {root} already holds a different sweep (its sweep.toml differs: "
            f"{details}); pick another --out or give the sweep a new sweep.name"])


# -- a minimal TOML writer for sweep dicts ---------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dumps_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of a sweep dict (sections of scalars and lists only)."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
