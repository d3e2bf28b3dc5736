"""Command-line overrides of a sweep file: ``section.key=value`` with TOML values.

``ptycho-sweep run FILE training.nepochs=5 grid.N=[32]`` applies them to the file's content
before :func:`runner.sweep.load_sweep` validates it, so they are checked exactly like the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .sweep import Problem, SweepError, parse_toml

__all__ = ["apply_overrides"]

_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str],
                    source: str = "command line") -> dict[str, Any]:
    """``raw`` with ``section.key=value`` overrides applied (a new dict; ``raw`` is untouched).

    ``value`` is a TOML value (``5``, ``1e-3``, ``[32, 64]``, ``"mae"``, ``true``); a bare word
    (``constant``, ``experiments.dose_response:run_unit``) is taken as a string. Raises
    :class:`SweepError` for a malformed override (the sections and keys themselves are checked
    by :func:`load_sweep` like those of the file)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name or "." in name:
            problems.append(Problem(key, f"override {item!r} is invalid: must be "
                                         f"section.key=value, e.g. training.nepochs=5"))
            continue
        try:
            parsed = parse_toml(f"v = {value}", source)["v"]
        except SweepError:
            if not _BARE_WORD.match(value.strip()):
                problems.append(Problem(key, f"override {item!r} is invalid: {value!r} is not "
                                             f"a TOML value (quote strings: {key}=\"...\")"))
                continue
            parsed = value.strip()
        target = out.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append(Problem(key, f"override {item!r} is invalid: [{section}] is not a "
                                         f"table"))
            continue
        target[name] = parsed
    if problems:
        raise SweepError(source, problems)
    return out



