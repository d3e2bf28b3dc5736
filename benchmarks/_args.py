"""Command-line handling shared by the benchmark scripts: ``script [SWEEP] [KEY=VALUE ...]``,
validated before anything heavy loads, as ``ptycho-sweep run`` does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep_parser(doc: str, default: str, example: str) -> argparse.ArgumentParser:
    """A parser with the positional ``sweep`` (``default``, relative to the repository) and
    ``overrides`` (``example`` shows one); the caller adds its options."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("sweep", nargs="?", help=f"sweep file (default: {default})")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help=f"override the sweep file, e.g. '{example}'")
    ap.set_defaults(default_sweep=ROOT / default)
    return ap


def sweep_and_overrides(sweep: str | None, overrides: list[str],
                        default: Path) -> tuple[Path, list[str]]:
    """The sweep file and the overrides: a first argument that is an override, not a file,
    leaves the sweep at ``default``."""
    if sweep is None:
        return default, list(overrides)
    if "=" in sweep and not Path(sweep).exists():
        return default, [sweep, *overrides]
    return Path(sweep), list(overrides)


def load_or_exit(args: argparse.Namespace, prog: str, before=(), check_task: bool = True):
    """The validated sweep of ``args`` (``before`` overrides applied first); on bad input one
    line per problem naming the file and key, and exit 2."""
    from runner.sweep import SweepError, load_sweep

    path, overrides = sweep_and_overrides(args.sweep, args.overrides, args.default_sweep)
    try:
        return load_sweep(path, overrides=[*before, *overrides], check_task=check_task)
    except SweepError as exc:
        for line in str(exc).splitlines():
            print(f"{prog}: error: {line}", file=sys.stderr)
        sys.exit(2)


def add_threads(ap: argparse.ArgumentParser, default: int) -> None:
    """The ``--threads`` option: TensorFlow's intra-op threads (:func:`limit_threads`)."""
    ap.add_argument("--threads", type=int, default=default,
                    help=f"TensorFlow intra-op threads (default {default}; one inter-op)")


def limit_threads(threads: int) -> None:
    """TensorFlow on ``threads`` intra-op threads and one inter-op thread, set before any op
    runs, the way a sweep worker sets its budget (the task's own function does it)."""
    from experiments.dose_response import limit_threads as set_budget

    set_budget(threads, 1)
