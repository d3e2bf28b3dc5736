"""``ptycho-sweep`` (also ``python -m runner``): run sweeps and report on their results.

Commands::

    ptycho-sweep run SWEEP.toml [--out DIR] [--n-jobs K] [--backend NAME]
                     [--scheduler ADDRESS] [--gpus-per-unit K|auto] [--shared-dir]
                     [--force] [--dry-run] [--no-progress]
    ptycho-sweep status DIR       arms by status (and pending arms), per-unit status
    ptycho-sweep aggregate DIR    pivot tables of the metrics by dose; saves DIR/aggregate.csv
    ptycho-sweep plot DIR         DIR/dose_response.png, reconstructions.png, training_curves.png
    ptycho-sweep merge SRC... --into DEST   one directory from sweeps run in parts
    ptycho-sweep --version

-v/-q go before or after the command.

Exit status: 0 when every arm is ok, 1 when any arm failed, timed out, crashed or is still
pending, 2 for bad input (invalid sweep file, missing directory, unknown or unavailable
backend, unreachable Dask scheduler),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_NOT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

_EXIT_CODES = """exit status:
  0    every arm of the sweep is ok
  1    some arm failed, timed out, crashed or is still pending
  2    bad input: invalid sweep file or override, missing directory, unknown or
       unavailable backend, unreachable scheduler (nothing is started or written)
  130  interrupted (Ctrl-C or SIGTERM); finished arms are kept, re-run to resume"""

_MAIN_EPILOG = f"""typical session:
  ptycho-sweep run experiments/smoke.toml          # writes results/smoke/
  ptycho-sweep status results/smoke                # arms by status, failures with errors
  ptycho-sweep aggregate results/smoke             # metric tables by dose
  ptycho-sweep plot results/smoke                  # the figures

'ptycho-sweep COMMAND --help' describes each command; -v/-q also work after it.

{_EXIT_CODES}"""

_RUN_DESCRIPTION = """\
Run a sweep file: one fresh worker process per (N, gridsize, nphotons) unit, which runs
the unit's arms (loss x seed x the settings listed in [arms]). Every arm is recorded in
OUT/records/ the moment it ends, and OUT/metrics.parquet (and .csv) gather them into one
table.

Running again into the same directory resumes: arms already ok are skipped, the others
are retried (--force reruns everything). Progress: a bar on a terminal, otherwise one log
line per finished unit (status, elapsed time, ETA). At the end: the output directory,
arms per status and what to run next."""

_RUN_EXAMPLES = """\
  ptycho-sweep run experiments/smoke.toml
  ptycho-sweep run experiments/dose_response.toml --n-jobs 4 --out results/dose
  ptycho-sweep run experiments/dose_response.toml training.nepochs=5 grid.N=[32]
  ptycho-sweep run experiments/smoke.toml --dry-run        # the plan, nothing run
  ptycho-sweep run experiments/smoke.toml -q               # log warnings/errors only
  ptycho-sweep run SWEEP.toml --backend dask --scheduler tcp://HOST:8786"""

_MERGE_DESCRIPTION = """\
Merge sweep output directories into one, as if one sweep had run there: records,
artifacts and unit logs are copied (sources are only read), DEST/sweep.toml becomes the
union of the sweeps, and its tables are rebuilt. The sweeps may differ only where a study
may grow in place (the grid and the [arms] lists), as for run --out into a used directory,
and in the training settings [arms] may list: parts that each fixed another
realspace_weight join on it as an [arms] list. An arm DEST already holds ok stays;
otherwise the first source holding it ok wins. Nothing is written unless all checks pass."""

_MERGE_EXAMPLES = """\
  ptycho-sweep merge results/weak_tv_0.3 results/weak_tv_1.0 --into results/weak_tv
  ptycho-sweep merge machine_a/results/study machine_b/results/study --into results/study"""

#: The commands reading a sweep output directory: name -> (summary, description, examples).
_DIR_COMMANDS = {
    "status": (
        "arms of a sweep output by status",
        "Count the arms of a sweep output directory by status (ok, failed, timeout,\n"
        "crashed, and pending: planned in DIR/sweep.toml but not recorded), list the units\n"
        "and the error of every arm that is not ok. Exit status 0 only if all are ok.",
        "  ptycho-sweep status results/smoke\n"
        "  ptycho-sweep status results/smoke || less results/smoke/units/*/worker.log"),
    "aggregate": (
        "metric tables by dose; writes DIR/aggregate.csv",
        "Print each metric as a table, one row per N / gridsize / loss and one column per\n"
        "dose (mean over the seeds of the ok arms), and write the long form (mean, std and\n"
        "number of seeds) to DIR/aggregate.csv.",
        "  ptycho-sweep aggregate results/smoke\n"
        "  ptycho-sweep aggregate results/smoke > tables.txt"),
    "plot": (
        "figures: dose response, reconstructions, training curves",
        "Write the figures of a sweep output directory:\n"
        "  DIR/dose_response.png    SSIM, PSNR and FRC50 against dose, failures marked\n"
        "  DIR/reconstructions.png  ground truth and reconstructions, with their scores\n"
        "  DIR/training_curves.png  training and validation loss per epoch",
        "  ptycho-sweep plot results/smoke\n"
        "  ptycho-sweep plot docs/results/dose_response_cpu"),
}



def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ptycho-sweep``."""
    p = argparse.ArgumentParser(
        prog="ptycho-sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Process-isolated dose-response sweeps of the ptycho model: every\n"
                    "(N, gridsize, nphotons) unit runs in its own fresh Python process.",
        epilog=_MAIN_EPILOG)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_verbosity(p, False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verbosity = argparse.ArgumentParser(add_help=False)  # -v/-q after the command too
    _add_verbosity(verbosity, argparse.SUPPRESS)

    def command(name: str, summary: str, description: str, examples: str):
        return sub.add_parser(name, help=summary, parents=[verbosity],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description=description,
                              epilog=f"examples:\n{examples}\n\n{_EXIT_CODES}")

    run = command("run", "run (or resume) a sweep", _RUN_DESCRIPTION, _RUN_EXAMPLES)
    run.add_argument("sweep", help="sweep file (TOML)")
    run.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE",
                     help="settings over the file's, TOML values: training.nepochs=5 "
                          "grid.N=[32,64] arms.loss='[\"mae\"]' (validated like the file, "
                          "recorded in the copied sweep.toml)")
    run.add_argument("--out", default=None, help="output directory (default results/<name>)")
    run.add_argument("--n-jobs", type=int, default=None,
                     help="units run concurrently, each in its own process (-1: one per core; "
                          "default 1, with --backend dask the size of the cluster)")
    run.add_argument("--backend", default="local",
                     help="executor: local (default), inprocess (debugging, not isolated), "
                          "dask (pip install 'ptycho-sweep[dask]')")
    run.add_argument("--scheduler", default=None,
                     help="Dask scheduler address, e.g. tcp://host:8786 (default with "
                          "--backend dask: a local cluster of --n-jobs worker processes)")
    run.add_argument("--gpus-per-unit", default=None, metavar="K|auto",
                     help="dask: Dask 'GPU' resources each unit asks for (default auto: 1 if "
                          "a worker advertises GPU, else 0)")
    run.add_argument("--cluster", default=None, choices=("local", "slurm"),
                     help="dask without --scheduler: the cluster started for the run, local "
                          "(default) or slurm (dask-jobqueue; ~/.config/dask/jobqueue.yaml)")
    run.add_argument("--cluster-option", action="append", default=None, metavar="KEY=VALUE",
                     help="dask --cluster slurm: a SLURMCluster setting over jobqueue.yaml, "
                          "repeatable (walltime=02:00:00, queue=gpu, cores=8...)")
    run.add_argument("--shared-dir", action="store_true",
                     help="dask: the output directory is mounted at the same path on the "
                          "workers; units write into it instead of shipping results back")
    run.add_argument("--force", action="store_true", help="rerun arms that are already ok")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print the plan; start and write nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    for name, (summary, description, examples) in _DIR_COMMANDS.items():
        sp = command(name, summary, description, examples)
        sp.add_argument("dir", help="sweep output directory (the --out of run)")
        if name == "plot":
            sp.add_argument("--max-rows", type=_positive_int, default=12, metavar="K",
                            help="reconstructions.png shows the first K rows (N / gridsize / "
                                 "series; default 12) and says how many it left out")

    merge = sub.add_parser(
        "merge", help="one output directory from sweeps run in parts", parents=[verbosity],
        formatter_class=argparse.RawDescriptionHelpFormatter, description=_MERGE_DESCRIPTION,
        epilog=f"examples:\n{_MERGE_EXAMPLES}\n\nexit status:\n  0    merged\n"
               f"  2    bad input: not a sweep directory, sweeps that cannot share a "
               f"directory,\n       or records at one grid point under two ids (nothing "
               f"written)")
    merge.add_argument("sources", nargs="+", metavar="SRC", help="sweep output directories")
    merge.add_argument("--into", required=True, metavar="DEST",
                       help="the directory to merge into (created if missing; may hold a "
                            "sweep already)")
    return p


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    # the copies after the command default to SUPPRESS: unset, they keep the main parser's value
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="log warnings and errors only (results and the final summary "
                             "are still printed)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ptycho-sweep")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


@contextlib.contextmanager
def _logging(verbose: bool, quiet: bool) -> Iterator[None]:
    logger = logging.getLogger("runner")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%H:%M:%S"))
    old = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _error(msg: str) -> int:
    print(f"ptycho-sweep: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _cmd_run(args: argparse.Namespace) -> int:
    from .executors import BackendError
    from .orchestrator import OutputError, plan_run, resolve_out, run_sweep
    from .progress import run_summary
    from .resources import usable_cores
    from .sweep import SweepError, load_sweep

    n_jobs = usable_cores() if args.n_jobs == -1 else args.n_jobs
    if n_jobs is not None and n_jobs < 1:
        return _error(f"--n-jobs {args.n_jobs} is invalid: must be >= 1 (or -1)")
    options: dict = {}  # only what was given: a backend rejects options it does not take
    if args.scheduler is not None:
        options["scheduler"] = args.scheduler
    if args.gpus_per_unit is not None:
        options["gpus_per_unit"] = args.gpus_per_unit
    if args.shared_dir:
        options["shared_dir"] = True
    if args.cluster is not None:
        options["cluster"] = args.cluster
    if args.cluster_option:
        options["cluster_options"] = args.cluster_option
    try:
        if args.dry_run:
            from .executors import get_executor

            plan = plan_run(args.sweep, args.out, args.force, overrides=args.overrides)
            get_executor(args.backend, n_jobs=n_jobs, **options).close()  # validate backend
            print(plan.describe())
            print("dry run: nothing started, nothing written")
            return EXIT_OK
        sweep = load_sweep(args.sweep, overrides=args.overrides)
        df = run_sweep(sweep, args.out, n_jobs=n_jobs, backend=args.backend,
                       force=args.force, progress=not args.no_progress, **options)
    except SweepError as exc:
        for line in str(exc).splitlines():  # one line per problem: file, key, what is allowed
            print(f"ptycho-sweep: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BackendError as exc:
        return _error(str(exc))
    except OutputError as exc:
        print(f"ptycho-sweep: error: {exc}", file=sys.stderr)
        return EXIT_NOT_OK
    # this sweep's arms (the directory may hold more: a study grown in place)
    mine = {a.arm_id for u in sweep.plan() for a in u.arms}
    status = df.loc[df["arm_id"].isin(mine), "status"]
    all_ok = len(status) == len(mine) and bool((status == "ok").all())
    print(f"\nsweep {sweep.name} finished: " + ("all arms ok" if all_ok else "NOT all ok"))
    print(run_summary(df, resolve_out(sweep, args.out), mine))
    return EXIT_OK if all_ok else EXIT_NOT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from .report import status_report

    text, all_ok = status_report(args.dir)
    print(text)
    return EXIT_OK if all_ok else EXIT_NOT_OK


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from .paths import OutputPaths
    from .report import write_aggregate

    print(write_aggregate(args.dir))
    print(f"\nsaved {OutputPaths(args.dir).aggregate_csv}")
    return EXIT_OK


def _cmd_plot(args: argparse.Namespace) -> int:
    from .paths import OutputPaths
    from .report import plot_dose_response, plot_reconstructions, plot_training_curves
    from .store import load_results

    paths = OutputPaths(args.dir)
    df = load_results(paths.root)
    print(f"saved {plot_dose_response(df, paths.dose_response_png, paths.sweep_toml)}")
    recon = plot_reconstructions(paths.root, max_rows=args.max_rows)
    print(f"saved {recon}" if recon else "no reconstruction artifacts (units/*/artifacts/"
                                         "<arm_id>.npz); reconstructions.png skipped")
    curves = plot_training_curves(paths.root)
    print(f"saved {curves}" if curves else "no per-epoch history (history.parquet); "
                                           "training_curves.png skipped")
    return EXIT_OK


def _cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge_dirs
    from .sweep import SweepError

    try:
        summary = merge_dirs(args.sources, args.into)
    except SweepError as exc:
        for line in str(exc).splitlines():
            print(f"ptycho-sweep: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary.describe())
    print(f"next:\n  ptycho-sweep status {summary.dest}\n  ptycho-sweep plot {summary.dest}")
    return EXIT_OK


_COMMANDS = {"run": _cmd_run, "status": _cmd_status, "aggregate": _cmd_aggregate,
             "plot": _cmd_plot, "merge": _cmd_merge}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``run``'s overrides may come before, between or after options.

    argparse alone stops filling a ``nargs="*"`` positional at the first option, so
    ``run sweep.toml --n-jobs 1 grid.N=[64]`` would fail with "unrecognized arguments". The
    words it leaves over are ``run``'s overrides in command-line order (later ones win); any
    leftover option, or leftovers of another command, are the usual usage error (exit 2).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "run" and not any(w.startswith("-") for w in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ptycho-sweep``; returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: bad usage -> 2, --help -> 0
        return int(exc.code or 0)
    with _logging(args.verbose, args.quiet):
        try:
            return _COMMANDS[args.command](args)
        except FileNotFoundError as exc:
            return _error(str(exc))
        except BrokenPipeError:  # e.g. piped into head
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
            return EXIT_NOT_OK
        except KeyboardInterrupt:
            print("ptycho-sweep: interrupted; finished arms are kept, re-run to resume",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
