"""One benchmark figure at two git revisions, measured in interleaved rounds in one run.

A figure measured once per revision cannot tell a 15 % change from this machine's run-to-run
spread; rounds that alternate the revisions (A B A B ...) expose both to the same load and
let the spread show. Each revision is checked out into a temporary ``git worktree``; the
benchmark is that revision's own copy of the script, run in a fresh process with the
worktree first on ``PYTHONPATH``. ``--figure`` is a regular expression whose first group is
the number to compare, read from the command's standard output (every match, in order;
``--match`` picks one, default the last). Do not run it while another heavy job runs.

    python benchmarks/revisions.py 6ea668e HEAD --rounds 3 \\
        --figure '^\\s+\\S+\\s+2\\s+False\\s+([0-9.]+)' \\
        -- benchmarks/train_throughput.py --gridsizes 2 --xla off --repeats 2

prints every round's figure per revision, then per revision the median and range, and the
median over rounds of the ratio B / A. The same revision twice (``HEAD HEAD``) measures the
spread itself: the ratios an A/A run gives are what "no change" looks like.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev_a", help="first revision (e.g. a commit, a tag, HEAD~3)")
    ap.add_argument("rev_b", help="second revision")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of A then B (default 3)")
    ap.add_argument("--figure", required=True,
                    help="regular expression; its first group is the figure (a number)")
    ap.add_argument("--repo", type=Path, default=ROOT,
                    help="the git repository (default: the one this script is in)")
    ap.add_argument("--match", type=int, default=-1,
                    help="which match of --figure to take, 0-based (default -1, the last)")
    ap.usage = "%(prog)s REV_A REV_B --figure REGEX [options] -- SCRIPT [ARG ...]"
    ap.epilog = ("after '--': the benchmark script (relative to the repository) and its "
                 "arguments")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        ap.error("no benchmark command (give it after '--')")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    try:
        args.pattern = re.compile(args.figure, re.MULTILINE)
    except re.error as exc:
        ap.error(f"--figure is not a regular expression: {exc}")
    if args.pattern.groups < 1:
        ap.error("--figure needs a group, e.g. 'physics/s ([0-9.]+)'")
    args.command = command
    return args


def fail(message: str, code: int) -> None:
    """One line on standard error and exit ``code`` (2: bad input, 1: the benchmark failed)."""
    print(f"revisions.py: error: {message}", file=sys.stderr)
    sys.exit(code)


def commit_of(repo: Path, rev: str) -> str:
    """The full hash of ``rev`` in ``repo``; exit 2 with one line if git does not know it."""
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                          f"{rev}^{{commit}}"], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{rev!r} is not a revision of {repo}", 2)
    return out.stdout.strip()


def figure_of(stdout: str, pattern: re.Pattern, match: int) -> float:
    """The number in group 1 of the ``match``-th match of ``pattern`` in ``stdout``."""
    found = pattern.findall(stdout)
    if not found:
        raise ValueError(f"--figure {pattern.pattern!r} matched nothing in:\n{stdout}")
    value = found[match]
    return float(value[0] if isinstance(value, tuple) else value)


def run_once(tree: Path, command: list[str], pattern: re.Pattern, match: int) -> float:
    """Run ``command`` (its script resolved in ``tree``) in a fresh interpreter and read the
    figure."""
    script = tree / command[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, str(script), *command[1:]], cwd=tree, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} at {tree} exited {out.returncode}:\n"
                           f"{out.stderr[-2000:]}")
    return figure_of(out.stdout, pattern, match)


def summary(names: list[str], figures: list[list[float]]) -> list[str]:
    """Lines: per revision (A, B) the median and range; the median of per-round ratios B / A."""
    lines = []
    for label, name, vals in zip("AB", names, figures, strict=True):
        lines.append(f"{label} {name:>12}  median {statistics.median(vals):.4g}  "
                     f"range {min(vals):.4g} to {max(vals):.4g}  ({len(vals)} rounds)")
    ratios = [b / a for a, b in zip(*figures, strict=True)]
    lines.append(f"ratio B / A: median {statistics.median(ratios):.3f}, "
                 f"per round {', '.join(f'{r:.3f}' for r in ratios)}")
    return lines


def main(argv=None) -> None:
    args = parse(argv)
    names = [args.rev_a, args.rev_b]
    shas = [commit_of(args.repo, name) for name in names]
    figures: list[list[float]] = [[], []]
    with tempfile.TemporaryDirectory(prefix="revisions-") as tmp:
        trees: list[Path] = []
        try:
            for label, sha in zip("AB", shas, strict=True):
                trees.append(Path(tmp) / label)
                subprocess.run(["git", "-C", str(args.repo), "worktree", "add", "--detach",
                                "--quiet", str(trees[-1]), sha], check=True)
            for name, tree in zip(names, trees, strict=True):
                if not (tree / args.command[0]).is_file():
                    fail(f"{args.command[0]} does not exist at {name}", 2)
            print(f"{' '.join(args.command)}; {args.rounds} rounds of "
                  f"A = {names[0]} ({shas[0][:8]}) then B = {names[1]} ({shas[1][:8]})",
                  flush=True)
            for k in range(args.rounds):
                for label, name, tree, vals in zip("AB", names, trees, figures, strict=True):
                    try:
                        vals.append(run_once(tree, args.command, args.pattern, args.match))
                    except (RuntimeError, ValueError) as exc:
                        fail(f"round {k + 1}, {name}: {exc}", 1)
                    print(f"round {k + 1}  {label} {name:>12}  {vals[-1]:.4g}", flush=True)
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(args.repo), "worktree", "remove", "--force",
                                str(tree)], capture_output=True)
    print("\n".join(summary(names, figures)))


if __name__ == "__main__":
    main()
