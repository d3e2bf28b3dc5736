"""Legacy ``params.cfg``: a PtychoPINN-compatible dictionary view of the defaults.

Kept for callers written against PtychoPINN's global parameter dictionary. New code passes
:class:`ptycho.config.ModelConfig` and friends explicitly; nothing in ``ptycho/`` reads this
dictionary at call time except the documented legacy entry points (the factories' defaults and
the module-level singletons of :mod:`ptycho.model`), which only read it.

Imports no TensorFlow.
"""

from __future__ import annotations

import copy
from typing import Any

from .config import ModelConfig, SimulationConfig, TrainingConfig

__all__ = ["cfg", "get", "set", "params", "get_bigN", "get_padding_size", "get_padded_size",
           "model_config_from_cfg", "training_config_from_cfg", "reset", "legacy_values",
           "MODEL_KEYS", "TRAINING_KEYS", "SIMULATION_KEYS"]


#: Legacy key -> dataclass field, one table per config: the only place the two vocabularies
#: meet (defaults, ``*_config_from_cfg`` and :func:`legacy_values` all read it).
MODEL_KEYS = {
    "N": "N", "gridsize": "gridsize", "offset": "offset",
    "max_position_jitter": "max_position_jitter", "n_filters_scale": "n_filters_scale",
    "object.big": "object_big", "pad_object": "pad_object",
    "default_probe_scale": "probe_scale", "probe.mask": "probe_mask",
    "probe.trainable": "probe_trainable",
    "intensity_scale.trainable": "intensity_scale_trainable",
    "amp_activation": "amp_activation", "use_xla_translate": "use_xla",
}
TRAINING_KEYS = {
    "nphotons": "nphotons", "nepochs": "nepochs", "batch_size": "batch_size",
    "nll_weight": "nll_weight", "mae_weight": "mae_weight",
    "realspace_weight": "realspace_weight", "learning_rate": "learning_rate", "npseed": "seed",
}
SIMULATION_KEYS = {
    "data_source": "object_kind", "size": "object_size", "nimgs_train": "n_train",
    "nimgs_test": "n_test", "sim_jitter_scale": "jitter",
}


def legacy_values(config, keys: dict[str, str]) -> dict[str, Any]:
    """``{legacy key: value}`` of a config dataclass, through one of the key tables."""
    return {legacy: getattr(config, field) for legacy, field in keys.items()}


def _from_legacy(c: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    return {field: c[legacy] for legacy, field in keys.items()}


def _defaults() -> dict[str, Any]:
    return {
        **legacy_values(ModelConfig(), MODEL_KEYS),
        **legacy_values(TrainingConfig(), TRAINING_KEYS),
        **legacy_values(SimulationConfig(), SIMULATION_KEYS),
        # PtychoPINN keys with no counterpart in the config dataclasses
        "probe.big": True,
        "positions.provided": False,
        "output_prefix": "outputs",
        "label": "",
        "probe": None,
        "intensity_scale": None,
        "debug": False,
    }


#: The legacy global view. Mutating it affects only legacy entry points.
cfg: dict[str, Any] = _defaults()


def reset() -> None:
    """Restore every key of :data:`cfg` to its default (keys added by callers are removed)."""
    cfg.clear()
    cfg.update(_defaults())


def get(key: str) -> Any:
    """The value of ``key``; derived keys ``bigN``, ``padded_size``, ``padding_size`` too."""
    if key == "bigN":
        return get_bigN()
    if key == "padded_size":
        return get_padded_size()
    if key == "padding_size":
        return get_padding_size()
    if key not in cfg:
        raise KeyError(f"params.cfg has no key {key!r}; known keys: {', '.join(sorted(cfg))}")
    return cfg[key]


def set(key: str, value: Any) -> None:  # noqa: A001 - PtychoPINN's name
    """Set ``cfg[key] = value`` (legacy API; prefer explicit config objects)."""
    cfg[key] = value


def params() -> dict[str, Any]:
    """A deep copy of :data:`cfg` with the derived sizes added."""
    out = {k: copy.deepcopy(v) for k, v in cfg.items() if k != "probe"}
    out["probe"] = cfg.get("probe")
    out["bigN"] = get_bigN()
    out["padding_size"] = get_padding_size()
    out["padded_size"] = get_padded_size()
    return out


def get_bigN() -> int:
    """Side of the region covered by one group's patches: ``N + (gridsize - 1) * offset``."""
    return int(cfg["N"]) + (int(cfg["gridsize"]) - 1) * int(cfg["offset"])


def get_padding_size() -> int:
    """Margin added around a patch for its group: ``(gridsize - 1) * offset + jitter``."""
    return (int(cfg["gridsize"]) - 1) * int(cfg["offset"]) + int(cfg["max_position_jitter"])


def get_padded_size() -> int:
    """Side of the reassembly canvas: ``bigN + max_position_jitter`` (= ModelConfig.padded_size)."""
    return get_bigN() + int(cfg["max_position_jitter"])


def model_config_from_cfg(source: dict[str, Any] | None = None, **overrides) -> ModelConfig:
    """Build a validated :class:`ModelConfig` from a legacy dict (default :data:`cfg`)."""
    values = _from_legacy(cfg if source is None else source, MODEL_KEYS)
    values["use_xla"] = bool(values["use_xla"])
    values.update(overrides)
    return ModelConfig(**values)


def training_config_from_cfg(source: dict[str, Any] | None = None, **overrides) -> TrainingConfig:
    """Build a validated :class:`TrainingConfig` from a legacy dict (default :data:`cfg`)."""
    values = _from_legacy(cfg if source is None else source, TRAINING_KEYS)
    for name in ("nphotons", "nll_weight", "mae_weight", "realspace_weight", "learning_rate"):
        values[name] = float(values[name])
    # PtychoPINN has weights, not loss names: a pure weight picks that loss (its plain Poisson
    # NLL, not the dataclass default "nll_huber"), a mix "weighted".
    nll, mae = values["nll_weight"], values["mae_weight"]
    values["loss"] = "nll" if not mae else "mae" if not nll else "weighted"
    values.update(overrides)
    return TrainingConfig(**values)
