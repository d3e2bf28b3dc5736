"""Reports of a sweep's results: status tables, aggregate pivot tables and plots.

* :func:`summary_text` / :func:`status_report`: arms by status, per-unit status, pending arms.
* :func:`aggregate`: each metric by dose (columns) for each N / gridsize / loss and value of the
  settings varied between arms (rows, :mod:`runner.series`), mean over seeds of the ``ok``
  arms; :func:`write_aggregate` saves the long form (one row per N, gridsize, loss, varied
  settings, nphotons and metric with mean, std and number of seeds) to ``aggregate.csv``.
* :func:`chosen_text`: which value of the varied settings the held-out photons choose per
  dose, and the chosen arms' scores.
* :func:`plot_dose_response`, :func:`plot_reconstructions`, :func:`plot_training_curves`:
  the figures, defined in :mod:`runner.plots` and re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .paths import OutputPaths
from .plots import plot_dose_response, plot_reconstructions, plot_training_curves
from .schema import METRICS as SCHEMA_METRICS
from .series import choose_by_holdout, varied_settings, with_series
from .store import STATUSES, load_results

__all__ = ["METRICS", "summary_text", "status_report", "aggregate", "write_aggregate",
           "chosen_text", "plot_dose_response", "plot_reconstructions", "plot_training_curves"]

log = logging.getLogger(__name__)

#: Metrics aggregated (those present in the results), in this order: the declared metrics of
#: :mod:`runner.schema`, then the training time.
METRICS = (*SCHEMA_METRICS, "train_s")
_ROWS = ["N", "gridsize", "loss"]
_MAX_UNIT_ROWS = 60


# -- status ----------------------------------------------------------------------------------
def summary_text(df, pending: int = 0) -> str:
    """Counts of arms by status and a per-unit status table."""
    import pandas as pd

    if df is None or not len(df):
        return "no arm recorded" + (f"; {pending} pending" if pending else "")
    counts = df["status"].value_counts()
    statuses = list(STATUSES) + sorted(set(counts.index) - set(STATUSES))
    lines = ["arms by status:"]
    lines += [f"  {s:<8} {int(counts.get(s, 0)):>6}" for s in statuses if counts.get(s, 0)]
    if pending:
        lines.append(f"  {'pending':<8} {pending:>6}")
    lines.append(f"  {'total':<8} {len(df) + pending:>6}")
    table = pd.crosstab(df["unit_id"], df["status"]).reindex(columns=statuses, fill_value=0)
    table = table.loc[:, (table != 0).any(axis=0)]
    ident = df.groupby("unit_id")[["N", "gridsize", "nphotons"]].first()
    table = ident.join(table)
    bad = table.drop(columns=["N", "gridsize", "nphotons", "ok"], errors="ignore").sum(axis=1)
    table = table.assign(_bad=bad).sort_values(["_bad", "N", "gridsize", "nphotons"],
                                               ascending=[False, True, True, True])
    shown = table.drop(columns="_bad").head(_MAX_UNIT_ROWS)
    shown = shown.assign(nphotons=[f"{p:.3g}" for p in shown["nphotons"]])
    lines += ["", "per unit:", shown.to_string()]
    if len(table) > _MAX_UNIT_ROWS:
        lines.append(f"... {len(table) - _MAX_UNIT_ROWS} more unit(s) (all ok)"
                     if not table["_bad"].iloc[_MAX_UNIT_ROWS:].any()
                     else f"... {len(table) - _MAX_UNIT_ROWS} more unit(s)")
    failed = df[df["status"] != "ok"]
    if len(failed):
        lines += ["", "not ok:"]
        for _, r in failed.head(20).iterrows():
            lines.append(f"  {r['arm_id']} {r['unit_id']} {r['loss']} seed {r['seed']}: "
                         f"{r['status']}: {r['error']}")
        if len(failed) > 20:
            lines.append(f"  ... {len(failed) - 20} more")
    return "\n".join(lines)


def status_report(out_dir: str | Path) -> tuple[str, bool]:
    """Status text of the sweep in ``out_dir`` (pending arms counted from its sweep.toml) and
    whether every arm is ok. Raises FileNotFoundError if it is not a sweep output."""
    from .sweep import SweepError, load_sweep

    paths = OutputPaths(out_dir)
    df = load_results(paths.root)
    pending = 0
    if paths.sweep_toml.is_file():
        try:
            sweep = load_sweep(paths.sweep_toml, check_task=False)
            planned = {a.arm_id for u in sweep.plan() for a in u.arms}
            pending = len(planned - set(df["arm_id"]))
        except SweepError as exc:
            log.warning("cannot read %s: %s", paths.sweep_toml, exc)
    all_ok = bool(len(df)) and pending == 0 and bool((df["status"] == "ok").all())
    return summary_text(df, pending), all_ok


# -- aggregate -------------------------------------------------------------------------------
def _ok_numeric(df):
    import pandas as pd

    ok = df[df["status"] == "ok"].copy()
    metrics = []
    for m in METRICS:
        if m in ok.columns:
            ok[m] = pd.to_numeric(ok[m], errors="coerce")
            if ok[m].notna().any():
                metrics.append(m)
    return ok, metrics


def aggregate(df) -> tuple[Any, dict[str, Any]]:
    """``(long, pivots)``: the long table (N, gridsize, loss, nphotons, metric, mean, std,
    n_seeds) and, per metric, the pivot of means: rows N/gridsize/loss, columns nphotons."""
    import pandas as pd

    ok, metrics = _ok_numeric(df)
    ok, varied = with_series(ok)
    rows = _ROWS + varied
    cols = rows + ["nphotons", "metric", "mean", "std", "n_seeds"]
    if not metrics or not len(ok):
        return pd.DataFrame(columns=cols), {}
    long = ok.melt(id_vars=rows + ["nphotons", "seed"], value_vars=metrics,
                   var_name="metric").dropna(subset=["value"])
    long = (long.groupby(rows + ["nphotons", "metric"], sort=True)["value"]
            .agg(mean="mean", std="std", n_seeds="count").reset_index())
    long["metric"] = pd.Categorical(long["metric"], categories=metrics, ordered=True)
    long = long.sort_values(["metric"] + rows + ["nphotons"]).reset_index(drop=True)
    long["metric"] = long["metric"].astype(str)
    pivots = {m: ok.pivot_table(index=rows, columns="nphotons", values=m, aggfunc="mean")
              for m in metrics}
    return long[cols], pivots


def chosen_text(df) -> str:
    """The held-out choice (:func:`runner.series.choose_by_holdout`) as text: per N /
    gridsize / loss and dose, the values chosen (one per seed) and the chosen arms' mean
    amplitude SSIM and FRC50; '' when the table varies no setting or has no held-out NLL."""
    chosen = choose_by_holdout(df)
    if not len(chosen):
        return ""
    varied = varied_settings(df)
    chosen = chosen.assign(_values=chosen[varied].astype(float).apply(
        lambda r: ",".join(f"{v:g}" for v in r), axis=1))
    what = "one value" if len(varied) == 1 else f"{len(varied)} values, comma-separated,"
    parts = [f"chosen by held-out NLL ({', '.join(varied)}; {what} per seed, seeds "
             f"separated by '/', columns: nphotons)"]
    values = chosen.pivot_table(index=_ROWS, columns="nphotons", values="_values",
                                aggfunc=lambda v: "/".join(v))
    tables = [("values", values)]
    for m in ("amp_norm_ssim", "amp_frc50_px"):
        if m in chosen and chosen[m].notna().any():
            tables.append((f"{m} of the chosen arms (mean over seeds)",
                           chosen.pivot_table(index=_ROWS, columns="nphotons", values=m,
                                              aggfunc="mean")))
    for name, table in tables:
        table = table.copy()
        table.columns = [f"{c:.3g}" for c in table.columns]
        parts.append(f"{name}\n{table.to_string(float_format=lambda v: f'{v:.4g}')}")
    return "\n".join(parts)


def write_aggregate(out_dir: str | Path) -> str:
    """Write ``aggregate.csv`` and return the pivot tables as text."""
    from .store import atomic_write_text

    paths = OutputPaths(out_dir)
    long, pivots = aggregate(load_results(paths.root))
    atomic_write_text(paths.aggregate_csv, long.to_csv(index=False))
    if not pivots:
        return "no ok arm with metrics to aggregate"
    parts = []
    for m, table in pivots.items():
        table = table.copy()
        table.columns = [f"{c:.3g}" for c in table.columns]
        parts.append(f"{m} (mean over seeds; columns: nphotons)\n"
                     f"{table.to_string(float_format=lambda v: f'{v:.4g}')}")
    chosen = chosen_text(load_results(paths.root))
    return "\n\n".join(parts + ([chosen] if chosen else []))
