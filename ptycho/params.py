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
           "model_config_from_cfg", "training_config_from_cfg", "reset"]


def _defaults() -> dict[str, Any]:
    m, t, s = ModelConfig(), TrainingConfig(), SimulationConfig()
    return {
        # model
        "N": m.N,
        "gridsize": m.gridsize,
        "offset": m.offset,
        "max_position_jitter": m.max_position_jitter,
        "n_filters_scale": m.n_filters_scale,
        "object.big": m.object_big,
        "probe.big": True,
        "pad_object": m.pad_object,
        "default_probe_scale": m.probe_scale,
        "probe.mask": m.probe_mask,
        "probe.trainable": m.probe_trainable,
        "intensity_scale.trainable": m.intensity_scale_trainable,
        "amp_activation": m.amp_activation,
        "use_xla_translate": m.use_xla,
        # training
        "nphotons": t.nphotons,
        "nepochs": t.nepochs,
        "batch_size": t.batch_size,
        "nll_weight": t.nll_weight,
        "mae_weight": t.mae_weight,
        "realspace_weight": t.realspace_weight,
        "learning_rate": t.learning_rate,
        "npseed": t.seed,
        # simulation
        "data_source": s.object_kind,
        "size": s.object_size,
        "nimgs_train": s.n_train,
        "nimgs_test": s.n_test,
        "sim_jitter_scale": s.jitter,
        "positions.provided": False,
        # misc PtychoPINN keys
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
    c = cfg if source is None else source
    values = dict(
        N=c["N"], gridsize=c["gridsize"], n_filters_scale=c["n_filters_scale"],
        offset=c["offset"], max_position_jitter=c["max_position_jitter"],
        object_big=c["object.big"], pad_object=c["pad_object"],
        probe_scale=c["default_probe_scale"], probe_mask=c["probe.mask"],
        probe_trainable=c["probe.trainable"],
        intensity_scale_trainable=c["intensity_scale.trainable"],
        amp_activation=c["amp_activation"], use_xla=bool(c["use_xla_translate"]),
    )
    values.update(overrides)
    return ModelConfig(**values)


def training_config_from_cfg(source: dict[str, Any] | None = None, **overrides) -> TrainingConfig:
    """Build a validated :class:`TrainingConfig` from a legacy dict (default :data:`cfg`)."""
    c = cfg if source is None else source
    values = dict(
        nphotons=float(c["nphotons"]), nepochs=c["nepochs"], batch_size=c["batch_size"],
        nll_weight=float(c["nll_weight"]), mae_weight=float(c["mae_weight"]),
        realspace_weight=float(c["realspace_weight"]), learning_rate=float(c["learning_rate"]),
        seed=c["npseed"],
    )
    values.update(overrides)
    return TrainingConfig(**values)
