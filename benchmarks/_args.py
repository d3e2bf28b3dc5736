"""Command-line helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def sweep_and_overrides(sweep: str | None, overrides: list[str],
                        default: Path) -> tuple[Path, list[str]]:
    """The sweep file and the ``KEY=VALUE`` overrides of ``script [SWEEP] [KEY=VALUE ...]``: a
    first argument that is an override, not a file, leaves the sweep at ``default``."""
    if sweep is None:
        return default, list(overrides)
    if "=" in sweep and not Path(sweep).exists():
        return default, [sweep, *overrides]
    return Path(sweep), list(overrides)
