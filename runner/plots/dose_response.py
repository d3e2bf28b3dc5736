"""The dose-response figure: SSIM, PSNR (dB), FRC50 (pixels) and the correlation with the truth
of amplitude and phase against the dose, and the final training loss per loss function (see
:mod:`runner.plots`). One line per N / gridsize (colour) and series (line style: the loss and
the values of the settings varied between arms, :mod:`runner.series`); where settings vary and
the arms held photons out, one more line per loss joins the arms those photons choose at each
dose."""

from __future__ import annotations

from pathlib import Path

from ..series import CHOSEN, choose_by_holdout, with_series
from .common import _caption, _figure, _has, _legend, _log_y, _names, _numeric

__all__ = ["plot_dose_response", "dose_response_figure"]

#: Rows of the dose-response figure: (metric, its constant-image baseline: the column holding
#: it, a fixed value, or None; panel title, y label).
_PANELS = (
    (("amp_norm_ssim", "amp_norm_ssim_baseline", "amplitude SSIM (amplitude / its mean)",
      "SSIM (1 = perfect)"),
     ("amp_norm_psnr", "amp_norm_psnr_baseline", "amplitude PSNR (amplitude / its mean)",
      "PSNR (dB)"),
     ("amp_frc50_px", None, "amplitude resolution: FRC = 0.5",
      "FRC50 (pixels, log; lower is better)"),
     ("amp_norm_r", 0.0, "amplitude: correlation with the truth",
      "Pearson r (constant image: 0)")),
    (("phase_plane_ssim", "phase_plane_ssim_baseline", "phase SSIM (best-fit plane removed)",
      "SSIM (1 = perfect)"),
     ("phase_plane_psnr", "phase_plane_psnr_baseline", "phase PSNR (best-fit plane removed)",
      "PSNR (dB)"),
     ("phase_frc50_px", None, "phase resolution: FRC = 0.5",
      "FRC50 (pixels, log; lower is better)"),
     ("phase_plane_r", 0.0, "phase: correlation with the truth",
      "Pearson r (constant image: 0)")),
)
_COLS = len(_PANELS[0])
_STYLES = (("-", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1, 1, 1, 1, 1)), "D"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_BASELINE_STYLE = "--"
_DOSE_LABEL = "dose (photons per pattern)"
_KEY = ["N", "gridsize", "series"]
_CHOSEN_STYLE = dict(linewidth=6, alpha=0.3, marker="o", markersize=13)


def _point_stats(df, metric: str):
    """Per N / gridsize / series / dose: mean and std over the ok arms' values, number of them,
    and whether an arm of the point is not ok. Every point with an arm is a row (mean NaN
    when none is ok: a gap in the line)."""
    import pandas as pd

    values = pd.to_numeric(df[metric], errors="coerce") if metric in df else float("nan")
    d = df.assign(_value=values, _bad=df["status"] != "ok")
    d["_value"] = d["_value"].where(df["status"] == "ok")
    return (d.groupby(_KEY + ["nphotons"])
            .agg(mean=("_value", "mean"), std=("_value", "std"), n=("_value", "count"),
                 bad=("_bad", "any"))
            .reset_index().sort_values(_KEY + ["nphotons"]))


def _series_styles(df, losses: list, varied: list) -> dict:
    """(line style, marker) per series: one pair per loss when no setting varies; else the
    line style tells the loss and the marker the values of the varied settings."""
    if not varied:
        return {loss: _STYLES[i % len(_STYLES)] for i, loss in enumerate(losses)}
    rows = df[["series", "loss", *varied]].dropna(subset=["series"]).drop_duplicates("series")
    values = sorted({tuple(r) for r in rows[varied].itertuples(index=False)})
    return {r.series: (_STYLES[losses.index(r.loss) % len(_STYLES)][0],
                       _MARKERS[values.index(tuple(getattr(r, k) for k in varied))
                                % len(_MARKERS)])
            for r in rows.itertuples(index=False)}


def _draw_metric(ax, df, metric: str, colours: dict, styles: dict, series=None) -> bool:
    """Lines of ``metric`` (``series``: only these); returns whether a point failed."""
    stats = _point_stats(df, metric)
    doses = sorted(stats["nphotons"].unique())
    failed = False
    for (n, g, name), grp in stats.groupby(_KEY):
        if series is not None and name not in series:
            continue
        colour = colours[(n, g)]
        # a dose the sweep has but this line has not run (yet): a gap, not a straight line
        line = grp.set_index("nphotons")["mean"].reindex(doses)
        if name.endswith(CHOSEN):  # a broad band under the lines of the arms it picks
            ax.plot(line.index, line.values, color=colour, **_CHOSEN_STYLE)
            continue
        ls, marker = styles[name]
        ax.plot(line.index, line.values, color=colour, linestyle=ls, marker=marker,
                markersize=5)
        multi = grp[grp["n"] > 1]
        if len(multi):
            ax.errorbar(multi["nphotons"], multi["mean"], yerr=multi["std"], fmt="none",
                        ecolor=colour, capsize=3, elinewidth=1)
        bad = grp[grp["bad"]]
        if len(bad):  # on the bottom edge, at the dose: x in data, y in axes coordinates
            failed = True
            ax.plot(bad["nphotons"], [0.03] * len(bad), linestyle="none", marker="x",
                    markersize=9, markeredgewidth=2, color=colour,
                    transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)
    return failed


def plot_dose_response(df, path: str | Path, sweep_toml: str | Path | None = None) -> Path:
    """Write the dose-response figure of the results table ``df`` to ``path`` (see the module
    docstring); ``sweep_toml`` (default: ``sweep.toml`` beside ``path``) fills the footnote
    where the table has no training-settings columns."""
    path = Path(path)
    sweep_toml = Path(sweep_toml) if sweep_toml is not None else path.with_name("sweep.toml")
    dose_response_figure(df, sweep_toml).savefig(path, dpi=100)
    return path


def dose_response_figure(df, sweep_toml: str | Path | None = None):
    """The figure of :func:`plot_dose_response` (a matplotlib ``Figure``)."""
    import pandas as pd
    from matplotlib.lines import Line2D

    df = df[df["status"].notna()] if "status" in df else df
    losses = sorted({str(v) for v in df["loss"].dropna()})
    df, varied = with_series(df)
    names = sorted({str(v) for v in df["series"].dropna()})
    loss_of = dict(zip(df["series"], df["loss"], strict=True))
    styles = _series_styles(df, losses, varied)
    partial = _partial_columns(df)
    df = pd.concat([df, choose_by_holdout(df)], ignore_index=True)
    chosen = sorted({str(v) for v in df["series"].dropna()} - set(names))
    configs = sorted({(int(n), int(g)) for n, g in zip(df["N"], df["gridsize"], strict=True)})
    colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    n_loss_panels = min(max(len(losses), 1), _COLS - 1)  # and the legend
    fig = _figure(19, 12.5)
    axes = fig.subplots(3, _COLS)
    doses = sorted(df["nphotons"].dropna().unique()) if len(df) else [1.0]
    failed = False
    panels = [(ax, *spec, None) for row, specs in zip(axes, _PANELS, strict=False)
              for ax, spec in zip(row, specs, strict=True)]
    panels += [(axes[2, i], "final_loss", None, f"final training loss: {loss}",
                f"{loss} loss (its own units)", loss)
               for i, loss in enumerate(losses[:n_loss_panels])]
    for ax, metric, base, title, ylabel, loss in panels:
        ax.set_xscale("log")
        ax.set_xlim(doses[0] / 2, doses[-1] * 2)
        ax.set_xlabel(_DOSE_LABEL)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        ax.grid(True, which="major", alpha=0.3)
        only = [n for n in names if loss_of[n] == loss] if loss is not None else None
        if not _has(df, metric):  # still mark the failures
            ax.text(0.5, 0.5, f"no value of {metric}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        elif metric.endswith("_frc50_px"):  # from 2 px to "never reached" (hundreds)
            _log_y(ax)
        failed |= _draw_metric(ax, df, metric, colours, styles, only)
        if metric in partial:  # e.g. a column added after some arms were recorded
            ax.text(0.02, 0.98, partial[metric], transform=ax.transAxes, va="top",
                    fontsize="small", color="0.35")
        if isinstance(base, float):  # the same for every N / gridsize
            ax.axhline(base, color="0.4", linestyle=_BASELINE_STYLE, linewidth=1.0)
        elif base is not None and _has(df, base):  # per N / gridsize: each scores its region
            ok = _numeric(df[df["status"] == "ok"], [base])
            for (n, g), grp in ok.groupby(["N", "gridsize"]):
                b = grp.groupby("nphotons")[base].mean().sort_index()
                # one dose: a line of one point draws nothing, so mark it with a dash
                ax.plot(b.index, b.values, color=colours[(int(n), int(g))],
                        linestyle=_BASELINE_STYLE, linewidth=1.2, alpha=0.7,
                        marker="_" if len(b) == 1 else "", markersize=16, markeredgewidth=1.5)
    for ax in axes[2, n_loss_panels:]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[c], linewidth=3) for c in configs]
    labels = [f"N={n}, gridsize {g}" for n, g in configs]
    for name in names:
        ls, marker = styles[name]
        handles.append(Line2D([], [], color="0.2", linestyle=ls, marker=marker))
        labels.append(f"loss: {name}")
    for name in chosen:
        handles.append(Line2D([], [], color="0.2", **_CHOSEN_STYLE))
        labels.append(f"loss: {name}\n(the arm of least held-out NLL\nat each dose)")
    handles.append(Line2D([], [], color="0.4", linestyle=_BASELINE_STYLE))
    labels.append("constant image (baseline),\nin the colour of its N / gridsize")
    if failed:
        handles.append(Line2D([], [], color="0.2", linestyle="none", marker="x", markersize=9,
                              markeredgewidth=2))
        labels.append("an arm failed / timed out /\ncrashed at this dose (the line\n"
                      "breaks where no arm is ok)")
    spare = axes[2, n_loss_panels]  # the legend's place
    spare.set_visible(True)
    _legend(fig, handles, labels, spare)
    fig.suptitle(f"Reconstruction quality against dose: {_names(df)}")
    _caption(fig, df, sweep_toml, _points_note(df))
    return fig


def _partial_columns(df) -> dict[str, str]:
    """Per panel metric that only some ok arms have (arms recorded before the column
    existed): a note saying how many, since those points average fewer seeds than the others'
    panels."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    notes = {}
    for metric in (spec[0] for row in _PANELS for spec in row):
        if metric in ok and len(ok):
            have = int(ok[metric].notna().sum())
            if 0 < have < len(ok):
                notes[metric] = (f"from {have} of {len(ok)} ok arms\n(the others were recorded "
                                 f"without {metric})")
    return notes


def _points_note(df) -> str:
    """What a point is: the mean over how many seeds (which may differ between points, in a
    study grown with more seeds at some doses)."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if "seed" not in ok or not len(ok):
        return "points: one seed each (no error bars)"
    per_point = ok.groupby(_KEY + ["nphotons"])["seed"].nunique()
    lo, hi = int(per_point.min()), int(per_point.max())
    if hi <= 1:
        return "points: one seed each (no error bars)"
    if lo == hi:
        return f"points: mean over {hi} seeds, error bars: std over seeds"
    return (f"points: mean over {lo}-{hi} seeds (it differs between points), error bars: std "
            f"over seeds where there are several")
