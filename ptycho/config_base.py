"""The machinery shared by the config dataclasses of :mod:`ptycho.config`: the error they
raise, the field checks that raise it, :func:`added_option` (a field whose neutral value keeps
run ids) and the dict round-trip of :class:`_ConfigBase`. Imports no TensorFlow."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

__all__ = ["ConfigError", "added_option"]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed.

    The parts are also data: ``owner`` (the class name, e.g. ``"ModelConfig"``), ``field``,
    ``value`` and ``allowed`` (what would be accepted); None when not about one field."""

    def __init__(self, message: str, *, owner: str | None = None, field: str | None = None,
                 value: Any = None, allowed: str | None = None):
        super().__init__(message)
        self.owner, self.field, self.value, self.allowed = owner, field, value, allowed


def _fail(owner: str, name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{owner}.{name} = {value!r} is invalid: {allowed}", owner=owner,
                      field=name, value=value, allowed=allowed)


def _check_int(owner, name, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(owner, name, value, "must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        _fail(owner, name, value, f"must be an integer {rng}")


def _check_float(owner, name, value, lo=None, hi=None, lo_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(owner, name, value, "must be a number")
    if not math.isfinite(value):
        _fail(owner, name, value, "must be finite")
    if lo is not None and (value <= lo if lo_open else value < lo):
        _fail(owner, name, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        _fail(owner, name, value, f"must be <= {hi}")


def _check_bool(owner, name, value):
    if not isinstance(value, bool):
        _fail(owner, name, value, "must be true or false")


def _check_choice(owner, name, value, choices):
    if value not in choices:
        _fail(owner, name, value, f"must be one of {', '.join(map(repr, choices))}")


_NEUTRAL = object()


def added_option(neutral: Any, default: Any = _NEUTRAL):
    """A field added after results were recorded, whose value ``neutral`` reproduces what the
    code computed before it existed (its default unless ``default`` is given). At that value
    :meth:`_ConfigBase.identity_dict` leaves it out, so run ids (``runner.plan``) stay what they
    were and a study recorded before the option was added still resumes; any other value is
    part of the id. With a ``default`` other than ``neutral``, a config that does not set the
    field computes something new and gets new ids; a study recorded before keeps its ids by
    setting ``neutral`` explicitly."""
    return dataclasses.field(default=neutral if default is _NEUTRAL else default,
                             metadata={"neutral": neutral})


class _ConfigBase:
    """Shared dict round-trip for the config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def neutral_values(cls) -> dict[str, Any]:
        """``{field: neutral value}`` of the :func:`added_option` fields."""
        return {f.name: f.metadata["neutral"] for f in fields(cls) if "neutral" in f.metadata}

    def identity_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :func:`added_option` fields at their neutral value:
        what run ids hash. :meth:`from_saved_dict` of it gives the same config."""
        neutral = self.neutral_values()
        return {k: v for k, v in self.to_dict().items()
                if not (k in neutral and v == neutral[k])}

    @classmethod
    def from_saved_dict(cls, data: Mapping[str, Any]):
        """:meth:`from_dict` of a dict written earlier (a saved model's config, an
        :meth:`identity_dict`): a field it lacks was added after it was written, or left out at
        its neutral value, so it takes the neutral value, not today's default."""
        return cls.from_dict({**cls.neutral_values(), **data})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed keys are {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
