"""Sweep files: read, apply command-line overrides, and validate everything up front.

A sweep file (TOML, or the equivalent dict) has the sections::

    [sweep]       name (required), task = "module:function", timeout_s > 0, retries >= 0,
                  arm_timeout_s > 0 and memory_limit_mb > 0 (optional limits)
    [grid]        N, gridsize, nphotons: non-empty lists, one worker unit per combination
    [arms]        loss (keys of ptycho.config.LOSS_PRESETS), seed (ints >= 0), and any of the
                  training settings of runner.schema.ARM_SETTINGS (``realspace_weight =
                  [0, 0.3]``): the arms of a unit are every combination of these lists
    [model]       ModelConfig fields except N, gridsize        (optional)
    [simulation]  SimulationConfig fields                      (optional)
    [training]    TrainingConfig fields except nphotons, seed and the loss (optional)

:func:`load_sweep` validates all of it before anything runs -- unknown sections and keys, types,
integers beyond 64 bits, duplicates, every (N, gridsize) through ``ModelConfig`` and
``SimulationConfig.check_compatible``, the training settings with every loss, every dose and
seed, and the task reference (statically, see :mod:`runner.taskref`) -- and raises one
:class:`SweepError` listing every problem found, each a :class:`Problem` (key, value, what is
allowed) as data. Validation is linear in the size of the grid.

Overrides (``ptycho-sweep run FILE training.nepochs=5 grid.N=[32]``) are dotted keys with TOML
values, applied to the file's content before validation; see :mod:`runner.overrides`.

The validated :class:`~runner.plan.Sweep` and its expansion into units and arms live in
:mod:`runner.plan`.
"""

from __future__ import annotations

import dataclasses
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

from .plan import SET_ELSEWHERE, Sweep, canonical_json, dumps_toml, short_hash
from .schema import ARM_SETTINGS
from .taskref import check_task, parse_task
from .unit import Unit

__all__ = ["SweepError", "Problem", "Sweep", "UnitPlan", "load_sweep", "parse_toml",
           "check_output_dir", "DEFAULT_TASK", "canonical_json", "short_hash", "dumps_toml"]

#: The former name of a planned unit: plans and attempts are one type now.
UnitPlan = Unit

DEFAULT_TASK = "experiments.dose_response:run_unit"
SECTIONS = ("sweep", "grid", "arms", "model", "simulation", "training")
_SWEEP_KEYS = ("name", "task", "timeout_s", "retries", "arm_timeout_s", "memory_limit_mb")
_GRID_KEYS = ("N", "gridsize", "nphotons")
_ARM_KEYS = ("loss", "seed", *ARM_SETTINGS)
_CONFIG_CLASSES = {"model": ModelConfig, "simulation": SimulationConfig,
                   "training": TrainingConfig}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_INT64 = 2**63


@dataclass(frozen=True)
class Problem:
    """One problem of a sweep: the key (``grid.N``; ``""`` for the whole file), the full
    sentence shown to users, and when it is about one value, the value and what is allowed."""

    key: str
    text: str
    value: Any = None
    allowed: str | None = None

    @classmethod
    def invalid(cls, key: str, value: Any, allowed: str) -> Problem:
        return cls(key, f"{key} = {value!r} is invalid: {allowed}", value, allowed)

    def __str__(self) -> str:
        return self.text


class SweepError(ValueError):
    """An invalid sweep (or output directory). ``problems`` lists every problem (de-duplicated,
    in order) as :class:`Problem`; ``errors`` as text. The message has one line per problem,
    each naming the source, the key and what is allowed."""

    def __init__(self, source: str, errors: Sequence[str | Problem]):
        self.source = source
        probs = [e if isinstance(e, Problem) else Problem("", str(e)) for e in errors]
        self.problems = list({p.text: p for p in probs}.values())
        self.errors = [p.text for p in self.problems]
        super().__init__("\n".join(f"{source}: {e}" for e in self.errors))


# -- reading ---------------------------------------------------------------------------------
def _read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SweepError(str(path), [f"is not UTF-8 text (byte {exc.start}): save the sweep "
                                     f"file as UTF-8"]) from None
    except OSError as exc:
        raise SweepError(str(path), [f"cannot read the sweep file: {exc.strerror or exc}"]) \
            from None
    return parse_toml(text, str(path)), text


def parse_toml(text: str, source: str) -> dict:
    """``tomllib.loads(text)``; a decoding problem is a :class:`SweepError` of ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(source, [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        raise SweepError(source, ["not a sweep file: its values are nested too deeply"]) \
            from None


def load_sweep(sweep: str | Path | Mapping[str, Any] | Sweep, *, check_task: bool = True,
               overrides: Sequence[str] = ()) -> Sweep:
    """Load and validate a sweep from a TOML path, a dict, or return a :class:`Sweep` as is.

    ``overrides`` (``"training.nepochs=5"``...) are applied before validation; the sweep's
    text (what is copied to the output directory) then records them. Raises
    :class:`SweepError` listing every problem (file, key and what is allowed).
    ``check_task=False`` skips the static check of the task reference.
    """
    if isinstance(sweep, Sweep):
        if overrides:
            return load_sweep(sweep.to_dict(), check_task=check_task, overrides=overrides)
        return sweep
    if isinstance(sweep, Mapping):
        raw, text, source = sweep, None, "<dict>"
    else:
        source = str(sweep)
        raw, text = _read_toml(Path(sweep))
    if overrides:
        from .overrides import apply_overrides

        raw = apply_overrides(raw, overrides)
        text = None
    sw = _validate(raw, source, check_task, text=text)
    if overrides:
        header = (f"# {source} with command-line overrides: {' '.join(overrides)}\n"
                  if source != "<dict>" else "")
        sw = _replace_text(sw, header + dumps_toml(sw.to_dict()))
    return sw


def _replace_text(sw: Sweep, text: str | None) -> Sweep:
    return dataclasses.replace(sw, text=text)


# -- validation ------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _normalise(cls, values: Mapping[str, Any]) -> dict[str, Any]:
    """Ints given for float fields become floats (so 1 and 1.0 give the same ids)."""
    floats = {f.name for f in fields(cls) if f.type in ("float", float)}
    return {k: float(v) if k in floats and _is_int(v) else v for k, v in values.items()}


def _config_problem(exc: ConfigError, section: str) -> Problem:
    """A config dataclass's error as a problem of the sweep-file key that set the field."""
    if exc.field is None:
        return Problem(section, f"[{section}]: {exc}")
    sec = {"ModelConfig": "model", "TrainingConfig": "training",
           "SimulationConfig": "simulation"}.get(exc.owner or "", section)
    key = SET_ELSEWHERE[sec].get(exc.field) or f"{sec}.{exc.field}"
    return Problem.invalid(key, exc.value, exc.allowed or "")


def _huge_ints(raw: Mapping[str, Any]) -> list[Problem]:
    """Integers that do not fit in 64 bits anywhere in the file (iterative walk)."""
    out, stack = [], [(str(k), v) for k, v in raw.items()]
    while stack:
        key, v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend((f"{key}.{k}", x) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((key, x) for x in v)
        elif _is_int(v) and not -_INT64 <= v < _INT64:
            out.append(Problem.invalid(key, v, "integers must fit in 64 bits "
                                              "(|value| < 2^63)"))
    return out


def _check_list(problems, key, value, ok, what) -> list:
    """Validate a non-empty list of unique values; returns the valid elements (linear)."""
    if not isinstance(value, (list, tuple)):
        problems.append(Problem.invalid(key, value, f"must be a list of {what}"))
        return []
    if not value:
        problems.append(Problem(key, f"{key} is empty: must be a non-empty list of {what}"))
        return []
    good, seen = [], set()
    for v in value:
        if not ok(v):
            problems.append(Problem(key, f"{key}: element {v!r} is invalid: must be {what}",
                                    v, what))
        elif v in seen:
            problems.append(Problem(key, f"{key}: duplicate value {v!r}; each value may "
                                         f"appear once", v))
        else:
            seen.add(v)
            good.append(v)
    return good


def _check_section_keys(problems, section, data, allowed, required=()):
    for k in data:
        key = f"{section}.{k}"
        if k in SET_ELSEWHERE.get(section, {}):
            problems.append(Problem(key, f"{key} is not allowed here: it is set by "
                                         f"{SET_ELSEWHERE[section][k]}"))
        elif k not in allowed:
            problems.append(Problem(key, f"{key} is an unknown key; allowed keys in "
                                         f"[{section}]: {', '.join(allowed)}"))
    for k in required:
        if k not in data:
            problems.append(Problem(f"{section}.{k}", f"{section}.{k} is required but missing"))


def _passes(check, v) -> bool:
    try:
        check(v)
        return True
    except ConfigError:
        return False


def _validate(raw: Any, source: str, check_task_ref: bool = True,
              text: str | None = None) -> Sweep:
    P: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise SweepError(source, [f"must be a table of sections, got {type(raw).__name__}"])
    for s in raw:
        if s not in SECTIONS:
            P.append(Problem(str(s), f"[{s}] is an unknown section; allowed sections: "
                                     f"{', '.join(SECTIONS)}"))
    huge = _huge_ints(raw)
    if huge:  # they would overflow the checks below
        raise SweepError(source, P + huge)
    sec: dict[str, dict] = {}
    for s in SECTIONS:
        v = raw.get(s, {})
        if not isinstance(v, Mapping):
            P.append(Problem(s, f"[{s}] must be a table (section), got {v!r}"))
            v = {}
        sec[s] = dict(v)
    if "sweep" not in raw:
        P.append(Problem("sweep", "[sweep] section is required (with at least name = \"...\")"))
    if "grid" not in raw:
        P.append(Problem("grid", "[grid] section is required (with N, gridsize and nphotons "
                                 "lists)"))

    # [sweep]
    sw = sec["sweep"]
    _check_section_keys(P, "sweep", sw, _SWEEP_KEYS, ("name",) if "sweep" in raw else ())
    name = sw.get("name", "")
    if "name" in sw and (not isinstance(name, str) or not _NAME_RE.match(name)):
        P.append(Problem.invalid("sweep.name", name, "must be 1 to 100 letters, digits, '.', "
                                 "'_' or '-', starting with a letter or digit (it names the "
                                 "output directory)"))
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
        P.append(Problem.invalid("sweep.task", task, problem))
    timeout_s = sw.get("timeout_s", 900.0)
    if not _is_number(timeout_s) or timeout_s <= 0:
        P.append(Problem.invalid("sweep.timeout_s", timeout_s, "must be a number of seconds "
                                 "> 0"))
    retries = sw.get("retries", 1)
    if not _is_int(retries) or retries < 0:
        P.append(Problem.invalid("sweep.retries", retries, "must be an integer >= 0"))
    limits = {}
    for key, what in (("arm_timeout_s", "seconds"), ("memory_limit_mb", "MiB")):
        v = sw.get(key)
        if v is not None and (not _is_number(v) or v <= 0):
            P.append(Problem.invalid(f"sweep.{key}", v, f"must be a number of {what} > 0"))
        limits[key] = float(v) if v is not None and _is_number(v) else None

    # [grid] and [arms]
    grid = sec["grid"]
    _check_section_keys(P, "grid", grid, _GRID_KEYS, _GRID_KEYS if "grid" in raw else ())

    def grid_list(key, ok, what):
        return _check_list(P, f"grid.{key}", grid[key], ok, what) if key in grid else []

    Ns = grid_list("N", _is_int, "integers")
    gs = grid_list("gridsize", _is_int, "integers")
    ps = [float(p) for p in grid_list("nphotons", _is_number, "numbers (photons per pattern)")]
    if len(set(ps)) != len(ps):
        P.append(Problem("grid.nphotons", "grid.nphotons: duplicate values (e.g. 10000 and "
                                          "1e4)"))
        ps = list(dict.fromkeys(ps))
    for p in ps:
        try:
            TrainingConfig.check_nphotons(p)
        except ConfigError as exc:
            P.append(_config_problem(exc, "training"))
    arms = sec["arms"]
    _check_section_keys(P, "arms", arms, _ARM_KEYS)
    allowed_losses = ", ".join(map(repr, LOSS_PRESETS))
    losses = _check_list(P, "arms.loss", arms.get("loss", [TrainingConfig.loss]),
                         lambda v: isinstance(v, str), f"loss names ({allowed_losses})")
    for loss in list(losses):
        if loss not in LOSS_PRESETS:
            P.append(Problem("arms.loss", f"arms.loss: {loss!r} is not allowed: must be one "
                                          f"of {allowed_losses}", loss, allowed_losses))
            losses.remove(loss)
    seeds = _check_list(P, "arms.seed", arms.get("seed", [0]),
                        lambda v: _passes(TrainingConfig.check_seed, v), "integers >= 0")

    # [model], [simulation], [training]
    overrides: dict[str, dict] = {}
    for s, cls in _CONFIG_CLASSES.items():
        allowed = [f.name for f in fields(cls) if f.name not in SET_ELSEWHERE[s]]
        _check_section_keys(P, s, sec[s], allowed)
        overrides[s] = _normalise(cls, {k: v for k, v in sec[s].items() if k in allowed})

    # every (N, gridsize) through the config dataclasses; training once per loss
    sim = None
    try:
        sim = SimulationConfig(**overrides["simulation"])
    except ConfigError as exc:
        P.append(_config_problem(exc, "simulation"))
    for n in Ns or [ModelConfig.N]:
        for g in gs or [ModelConfig.gridsize]:
            try:
                model = ModelConfig(**overrides["model"], N=n, gridsize=g)
            except ConfigError as exc:
                P.append(_config_problem(exc, "model"))
                continue
            if sim is not None:
                try:
                    sim.check_compatible(model)
                except ConfigError as exc:
                    P.append(_config_problem(exc, "simulation"))
    try:
        base = TrainingConfig(**overrides["training"])
        for loss in losses:
            base.with_loss(loss)
    except ConfigError as exc:
        P.append(_config_problem(exc, "training"))
        base = None
    arm_settings = _arm_settings(P, arms, overrides["training"], base, losses)
    if P:
        raise SweepError(source, P)
    return Sweep(name=name, task=task, timeout_s=float(timeout_s), retries=int(retries),
                 N=tuple(Ns), gridsize=tuple(gs), nphotons=tuple(ps), loss=tuple(losses),
                 seed=tuple(seeds), arm_settings=arm_settings, model=overrides["model"],
                 simulation=overrides["simulation"], training=overrides["training"],
                 source=source, text=text, **limits)


def _arm_settings(P: list, arms: Mapping[str, Any], training: Mapping[str, Any],
                  base: TrainingConfig | None, losses: list) -> tuple:
    """The ``[arms]`` keys of :data:`runner.schema.ARM_SETTINGS`: ``((key, values), ...)`` in
    the file's order, each value checked with every loss (ints for float fields as floats)."""
    out = []
    for key in (k for k in arms if k in ARM_SETTINGS):
        if key in training:
            P.append(Problem(f"arms.{key}", f"arms.{key}: also set in [training] ({key} = "
                                            f"{training[key]!r}); set it in one place"))
            continue
        values = _check_list(P, f"arms.{key}", arms[key], _is_number, "numbers")
        values = [_normalise(TrainingConfig, {key: v})[key] for v in values]
        for v in values if base is not None else ():
            try:
                for loss in losses:
                    base.replace(**{key: v}).with_loss(loss)
            except ConfigError as exc:
                P.append(Problem.invalid(f"arms.{key}", v, exc.allowed or str(exc)))
        out.append((key, tuple(values)))
    return tuple(out)


def check_output_dir(sweep: Sweep, out_dir: str | Path) -> Sweep:
    """See :func:`runner.outdir.check_output_dir` (kept here for compatibility)."""
    from .outdir import check_output_dir as check

    return check(sweep, out_dir)
