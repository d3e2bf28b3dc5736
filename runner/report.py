"""Reports of a sweep's results: status tables, aggregate pivot tables and plots.

* :func:`summary_text` / :func:`status_report`: arms by status, per-unit status, pending arms.
* :func:`aggregate`: each metric by dose (columns) for each N / gridsize / loss (rows), mean
  over seeds of the ``ok`` arms; :func:`write_aggregate` saves the long form (one row per
  N, gridsize, loss, nphotons and metric with mean, std and number of seeds) to
  ``aggregate.csv``.
* :func:`plot_dose_response` and :func:`plot_reconstructions` (matplotlib, Agg canvas, no
  global backend state).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .paths import OutputPaths
from .store import STATUSES, load_results

__all__ = ["METRICS", "summary_text", "status_report", "aggregate", "write_aggregate",
           "plot_dose_response", "plot_reconstructions"]

log = logging.getLogger(__name__)

#: Metrics aggregated (those present in the results), in this order.
METRICS = ("amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_psnr", "amp_norm_psnr_baseline",
           "amp_frc50_px", "phase_plane_ssim", "phase_plane_ssim_baseline", "phase_plane_psnr",
           "phase_plane_psnr_baseline", "phase_frc50_px",
           "amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "amp_frc50", "phase_frc50",
           "amp_mae", "phase_mae", "amp_mse", "phase_mse", "final_loss", "final_val_loss",
           "train_s")
#: Panels of the dose-response figure: (metric, its constant-image baseline or None, y label).
_PANELS = (
    ("amp_norm_ssim", "amp_norm_ssim_baseline", "amplitude SSIM (mean-normalised)"),
    ("amp_norm_psnr", "amp_norm_psnr_baseline", "amplitude PSNR (dB, mean-normalised)"),
    ("amp_frc50_px", None, "amplitude FRC50 resolution (pixels, lower is better)"),
    ("phase_plane_ssim", "phase_plane_ssim_baseline", "phase SSIM (plane removed)"),
    ("phase_plane_psnr", "phase_plane_psnr_baseline", "phase PSNR (dB, plane removed)"),
    ("final_loss", None, "final training loss"),
)
_LINESTYLES = ("-", "--", ":", "-.")
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
    cols = _ROWS + ["nphotons", "metric", "mean", "std", "n_seeds"]
    if not metrics or not len(ok):
        return pd.DataFrame(columns=cols), {}
    long = ok.melt(id_vars=_ROWS + ["nphotons", "seed"], value_vars=metrics,
                   var_name="metric").dropna(subset=["value"])
    long = (long.groupby(_ROWS + ["nphotons", "metric"], sort=True)["value"]
            .agg(mean="mean", std="std", n_seeds="count").reset_index())
    long["metric"] = pd.Categorical(long["metric"], categories=metrics, ordered=True)
    long = long.sort_values(["metric"] + _ROWS + ["nphotons"]).reset_index(drop=True)
    long["metric"] = long["metric"].astype(str)
    pivots = {m: ok.pivot_table(index=_ROWS, columns="nphotons", values=m, aggfunc="mean")
              for m in metrics}
    return long[cols], pivots


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
    return "\n\n".join(parts)


# -- plots -----------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _loss_axes(ax, losses) -> dict[str, Any]:
    """One y axis per loss (the first two; more share the first), since the values of
    different losses are not comparable: left for ``losses[0]``, right for ``losses[1]``."""
    out = {loss: ax for loss in losses}
    ax.set_ylabel(f"final training loss: {losses[0]} ({_LINESTYLES[0]})", fontsize="small")
    if len(losses) > 1:
        right = ax.twinx()
        right.set_ylabel(f"{losses[1]} ({_LINESTYLES[1]}), own scale", fontsize="small")
        out[losses[1]] = right
    return out


def plot_dose_response(df, path: str | Path) -> Path:
    """Quality against dose (log x) in six panels (:data:`_PANELS`): colour = N / gridsize,
    line style = loss, mean over seeds with std error bars; a dotted line of each colour is
    that N / gridsize's constant-image baseline (it scores its own region). One legend,
    outside."""
    ok, metrics = _ok_numeric(df)
    fig = _figure(15, 8)
    axes = fig.subplots(2, 3)
    configs = sorted({(n, g) for n, g in zip(ok["N"], ok["gridsize"], strict=True)})
    colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    losses = sorted(set(ok["loss"]))
    styles = {loss: _LINESTYLES[i % len(_LINESTYLES)] for i, loss in enumerate(losses)}
    handles = {}
    for ax, (m, base, label) in zip(axes.flat, _PANELS, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("dose (photons per pattern)")
        ax.set_ylabel(label, fontsize="small")
        if m not in metrics:
            ax.text(0.5, 0.5, f"no {m}", ha="center", va="center", transform=ax.transAxes)
            continue
        stats = ok.groupby(_ROWS + ["nphotons"])[m].agg(["mean", "std"]).reset_index()
        ax.set_xlim(stats["nphotons"].min() / 2, stats["nphotons"].max() * 2)
        loss_axes = _loss_axes(ax, losses) if m == "final_loss" else {}
        for (n, g, loss), grp in stats.groupby(_ROWS):
            grp = grp.sort_values("nphotons")
            h = loss_axes.get(loss, ax).errorbar(
                grp["nphotons"], grp["mean"], yerr=grp["std"].fillna(0.0), marker="o",
                capsize=3, color=colours[(n, g)], linestyle=styles[loss])
            handles.setdefault(f"N={n}, gridsize {g}, {loss}", h)
        if base in metrics:  # per N / gridsize: each scores its own region
            for (n, g), grp in ok.groupby(["N", "gridsize"]):
                b = grp.groupby("nphotons")[base].mean().sort_index()
                h = ax.plot(b.index, b.values, color=colours[(n, g)], linestyle=":",
                            linewidth=1.5, alpha=0.8)[0]
                handles.setdefault("constant image (baseline), dotted, per colour", h)
        ax.grid(True, which="both", alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper",
                   fontsize="small")
    names = ", ".join(map(str, df["sweep"].dropna().unique()[:3]))
    fig.suptitle(f"dose response: {names}")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _load_npz(path: Path) -> dict[str, Any] | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: np.asarray(z[k]) for k in ("amplitude", "phase", "true_amplitude",
                                                  "true_phase") if k in z.files}
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable artifact %s: %s", path, exc)
        return None
    if not all(k in out and out[k].ndim == 2 for k in ("amplitude", "phase")):
        log.warning("skipping %s: no 2-D 'amplitude' and 'phase' arrays", path)
        return None
    return out


def _score(row, metric: str) -> str:
    """``"\nSSIM 0.71 (0.26)"``: the arm's score and its constant-image baseline, if known."""
    import math

    value, base = row.get(metric), row.get(f"{metric}_baseline")
    if not isinstance(value, float) or math.isnan(value):
        return ""
    extra = f" ({base:.2f})" if isinstance(base, float) and not math.isnan(base) else ""
    return f"\nSSIM {value:.2f}{extra}"


def _limits(images) -> tuple[float | None, float | None]:
    """Shared colour limits of a row's images (1st and 99th percentiles)."""
    import numpy as np

    vals = [np.asarray(im, dtype=float).ravel() for im in images
            if im is not None and getattr(im, "ndim", 0) == 2]
    if not vals:
        return None, None
    allv = np.concatenate(vals)
    allv = allv[np.isfinite(allv)]
    if not allv.size:
        return None, None
    lo, hi = np.percentile(allv, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def plot_reconstructions(out_dir: str | Path, path: str | Path | None = None,
                         max_rows: int = 12) -> Path | None:
    """Panel of reconstructed amplitude/phase from ``units/*/artifacts/<arm_id>.npz``: one row
    per N / gridsize / loss (lowest seed), ground truth first, then each dose, titled with its
    SSIM and, in brackets, the constant-image SSIM. Returns None
    (and writes nothing) if there is no usable artifact."""
    paths = OutputPaths(out_dir)
    df = load_results(paths.root)
    rows_by_arm = {r["arm_id"]: r for r in df.to_dict("records")}
    found = {}
    for f in paths.artifact_files("*.npz"):
        if f.stem in rows_by_arm:
            data = _load_npz(f)
            if data is not None:
                found[f.stem] = data
    if not found:
        return None
    groups: dict[tuple, dict[float, str]] = {}
    for arm_id in sorted(found, key=lambda a: rows_by_arm[a]["seed"], reverse=True):
        r = rows_by_arm[arm_id]
        groups.setdefault((r["N"], r["gridsize"], r["loss"]), {})[r["nphotons"]] = arm_id
    keys = sorted(groups)[:max_rows]
    doses = sorted({p for k in keys for p in groups[k]})
    ncols = 2 + 2 * len(doses)
    fig = _figure(1.5 * ncols, 1.9 * len(keys) + 0.6)
    axes = fig.subplots(len(keys), ncols, squeeze=False)
    for i, key in enumerate(keys):
        first = found[next(iter(groups[key].values()))]
        cells = [("true amp", first.get("true_amplitude")), ("true phase",
                                                              first.get("true_phase"))]
        for p in doses:
            arm_id = groups[key].get(p, "")
            data = found.get(arm_id, {})
            row = rows_by_arm.get(arm_id, {})
            cells += [(f"amp {p:.0e}{_score(row, 'amp_norm_ssim')}", data.get("amplitude")),
                      (f"phase {p:.0e}{_score(row, 'phase_plane_ssim')}", data.get("phase"))]
        limits = {kind: _limits([img for t, img in cells if kind in t])
                  for kind in ("amp", "phase")}
        for j, (title, img) in enumerate(cells):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None and getattr(img, "ndim", 0) == 2:
                kind = "amp" if "amp" in title else "phase"
                vmin, vmax = limits[kind]
                ax.imshow(img, cmap="gray" if kind == "amp" else "twilight", vmin=vmin,
                          vmax=vmax)
            if i == 0 or "SSIM" in title:
                ax.set_title(title, fontsize=7)
            if j == 0:
                ax.set_ylabel(f"N={key[0]} g={key[1]}\n{key[2]}", fontsize=8)
    path = Path(path) if path is not None else paths.reconstructions_png
    fig.savefig(path, dpi=80)
    return path
