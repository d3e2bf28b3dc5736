"""Figures of a sweep's results (matplotlib on an Agg canvas: no global backend state).

* :func:`plot_dose_response`: SSIM, PSNR (dB) and FRC50 (pixels) of amplitude and phase against
  the dose (photons per pattern, log), and the final training loss per loss function. Colour:
  N / gridsize; line style and marker: loss; dashed: the constant-image baseline of that colour;
  ``x`` on the bottom edge: an arm failed, timed out or crashed at that dose (the line has a
  gap there when no arm of the point is ok); error bars: std over seeds when there are several.
* :func:`plot_reconstructions`: ground truth and reconstructed amplitude/phase of every
  N / gridsize / loss (lowest seed) and dose, each titled with its scores, with colour bars.
* :func:`plot_training_curves`: training and validation loss against epoch, one panel per
  loss and N / gridsize, colour by dose.

Each figure has one legend, outside the data, and a footnote naming the sweep, its epochs,
training size and seeds (from the table's columns, else ``sweep.toml``, else the defaults).
"""

from __future__ import annotations

import logging
import math
import tomllib
from pathlib import Path
from typing import Any

from .paths import OutputPaths

__all__ = ["plot_dose_response", "plot_reconstructions", "plot_training_curves",
           "dose_response_figure", "reconstructions_figure", "training_curves_figure",
           "load_history"]

log = logging.getLogger(__name__)

#: Rows of the dose-response figure: (metric, its constant-image baseline, panel title, y label).
_PANELS = (
    (("amp_norm_ssim", "amp_norm_ssim_baseline", "amplitude SSIM (amplitude / its mean)",
      "SSIM (1 = perfect)"),
     ("amp_norm_psnr", "amp_norm_psnr_baseline", "amplitude PSNR (amplitude / its mean)",
      "PSNR (dB)"),
     ("amp_frc50_px", None, "amplitude resolution: FRC = 0.5",
      "FRC50 (pixels, log; lower is better)")),
    (("phase_plane_ssim", "phase_plane_ssim_baseline", "phase SSIM (best-fit plane removed)",
      "SSIM (1 = perfect)"),
     ("phase_plane_psnr", "phase_plane_psnr_baseline", "phase PSNR (best-fit plane removed)",
      "PSNR (dB)"),
     ("phase_frc50_px", None, "phase resolution: FRC = 0.5",
      "FRC50 (pixels, log; lower is better)")),
)
_STYLES = (("-", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1, 1, 1, 1, 1)), "D"))
_BASELINE_STYLE = "--"
_DOSE_LABEL = "dose (photons per pattern)"
_KEY = ["N", "gridsize", "loss"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _numeric(df, columns):
    import pandas as pd

    df = df.copy()
    for c in columns:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _has(df, column: str) -> bool:
    return column in df.columns and df[column].notna().any()


# -- footnote --------------------------------------------------------------------------------
def _settings(df, sweep_toml: Path | None) -> dict[str, str]:
    """Epochs, training size, batch size, scored scan: the values in the table's columns, else
    in ``sweep_toml``, else the defaults of ``ptycho.config`` (marked "default")."""
    raw: dict[str, Any] = {}
    if sweep_toml is not None and Path(sweep_toml).is_file():
        try:
            raw = tomllib.loads(Path(sweep_toml).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            log.warning("cannot read %s: %s", sweep_toml, exc)
    out = {}
    for key, section, config in (("nepochs", "training", "TrainingConfig"),
                                 ("n_train", "simulation", "SimulationConfig"),
                                 ("batch_size", "training", "TrainingConfig"),
                                 ("reconstruct", "simulation", "SimulationConfig")):
        if key in df.columns and df[key].notna().any():
            values = sorted({str(v) for v in df[key].dropna()})
            out[key] = "/".join(values)
        elif key in raw.get(section, {}):
            out[key] = str(raw[section][key])
        else:
            out[key] = _default(config, key)
    return out


def _default(config_name: str, key: str) -> str:
    try:
        from ptycho import config

        return f"{getattr(getattr(config, config_name), key)} (default)"
    except Exception:  # noqa: BLE001 - a footnote is never worth a failure
        return "?"


def _footnote(df, sweep_toml: Path | None, extra: str = "") -> str:
    s = _settings(df, sweep_toml)
    names = ", ".join(map(str, df["sweep"].dropna().unique()[:3])) if "sweep" in df else "?"
    seeds = sorted({int(v) for v in df["seed"].dropna()}) if "seed" in df else []
    seeds_text = (f"seed {seeds[0]}" if len(seeds) == 1
                  else f"{len(seeds)} seeds ({', '.join(map(str, seeds))})")
    scan = {"same": "the training scan (in situ)", "new": "a new object's scan"}.get(
        s["reconstruct"], s["reconstruct"])
    text = (f"sweep {names}  |  {s['nepochs']} epochs, n_train {s['n_train']} groups, batch "
            f"{s['batch_size']}  |  {seeds_text}  |  scored on {scan}")
    return text + (f"\n{extra}" if extra else "")


# -- dose response ---------------------------------------------------------------------------
def _legend(fig, handles: list, labels: list, spare=None) -> None:
    """The figure's one legend: in the ``spare`` (empty) axes if any, else outside right."""
    if spare is not None:
        spare.axis("off")
        spare.legend(handles, labels, loc="center", fontsize="small", frameon=False)
    else:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")


def _point_stats(df, metric: str):
    """Per N / gridsize / loss / dose: mean and std over the ok arms' values, number of them,
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


def _draw_metric(ax, df, metric: str, colours: dict, styles: dict, losses=None) -> bool:
    """Lines of ``metric`` (``losses``: only these); returns whether a point failed."""
    stats = _point_stats(df, metric)
    failed = False
    for (n, g, loss), grp in stats.groupby(_KEY):
        if losses is not None and loss not in losses:
            continue
        ls, marker = styles[loss]
        colour = colours[(n, g)]
        ax.plot(grp["nphotons"], grp["mean"], color=colour, linestyle=ls, marker=marker,
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
    from matplotlib.lines import Line2D

    df = df[df["status"].notna()] if "status" in df else df
    losses = sorted({str(v) for v in df["loss"].dropna()})
    configs = sorted({(int(n), int(g)) for n, g in zip(df["N"], df["gridsize"], strict=True)})
    colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    styles = {loss: _STYLES[i % len(_STYLES)] for i, loss in enumerate(losses)}
    n_loss_panels = min(max(len(losses), 1), 3)
    fig = _figure(15, 12.5)
    axes = fig.subplots(3, 3)
    doses = sorted(df["nphotons"].dropna().unique()) if len(df) else [1.0]
    failed = False
    panels = [(ax, *spec) for row, specs in zip(axes, _PANELS, strict=False)
              for ax, spec in zip(row, specs, strict=True)]
    panels += [(axes[2, i], "final_loss", None, f"final training loss: {loss}",
                f"{loss} loss (its own units)") for i, loss in enumerate(losses[:3])]
    for i, (ax, metric, base, title, ylabel) in enumerate(panels):
        ax.set_xscale("log")
        ax.set_xlim(doses[0] / 2, doses[-1] * 2)
        ax.set_xlabel(_DOSE_LABEL)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        ax.grid(True, which="major", alpha=0.3)
        only = [losses[i - 6]] if metric == "final_loss" else None
        if not _has(df, metric):  # still mark the failures
            ax.text(0.5, 0.5, f"no value of {metric}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        elif metric.endswith("_frc50_px"):  # from 2 px to "never reached" (hundreds)
            _log_y(ax)
        failed |= _draw_metric(ax, df, metric, colours, styles, only)
        if base is not None and _has(df, base):  # per N / gridsize: each scores its region
            ok = _numeric(df[df["status"] == "ok"], [base])
            for (n, g), grp in ok.groupby(["N", "gridsize"]):
                b = grp.groupby("nphotons")[base].mean().sort_index()
                ax.plot(b.index, b.values, color=colours[(int(n), int(g))],
                        linestyle=_BASELINE_STYLE, linewidth=1.2, alpha=0.7)
    for ax in axes[2, n_loss_panels:]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[c], linewidth=3) for c in configs]
    labels = [f"N={n}, gridsize {g}" for n, g in configs]
    for loss in losses:
        ls, marker = styles[loss]
        handles.append(Line2D([], [], color="0.2", linestyle=ls, marker=marker))
        labels.append(f"loss: {loss}")
    handles.append(Line2D([], [], color="0.4", linestyle=_BASELINE_STYLE))
    labels.append("constant image (baseline),\nin the colour of its N / gridsize")
    if failed:
        handles.append(Line2D([], [], color="0.2", linestyle="none", marker="x", markersize=9,
                              markeredgewidth=2))
        labels.append("an arm failed / timed out /\ncrashed at this dose (the line\n"
                      "breaks where no arm is ok)")
    spare = axes[2, n_loss_panels] if n_loss_panels < 3 else None
    if spare is not None:
        spare.set_visible(True)
    _legend(fig, handles, labels, spare)
    seeds = df["seed"].nunique() if "seed" in df else 1
    points = (f"points: mean over {seeds} seeds, error bars: std over seeds" if seeds > 1
              else "points: one seed each (no error bars)")
    fig.suptitle(f"Reconstruction quality against dose: {_names(df)}")
    fig.supxlabel(_footnote(df, sweep_toml, points), fontsize="small", x=0.01, ha="left")
    return fig


def _log_y(ax) -> None:
    """Log scale, ticks as plain numbers (0.06, not 6 x 10^-2)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.3g}"

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 1)))


def _names(df) -> str:
    return ", ".join(map(str, df["sweep"].dropna().unique()[:3])) if "sweep" in df else ""


# -- reconstructions -------------------------------------------------------------------------
_ARRAYS = ("amplitude", "phase", "true_amplitude", "true_phase")


def _load_npz(path: Path) -> dict[str, Any] | None:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: np.asarray(z[k]) for k in _ARRAYS if k in z.files}
    except (OSError, ValueError) as exc:
        log.warning("skipping unreadable artifact %s: %s", path, exc)
        return None
    if not all(k in out and out[k].ndim == 2 for k in ("amplitude", "phase")):
        log.warning("skipping %s: no 2-D 'amplitude' and 'phase' arrays", path)
        return None
    return out


def _limits(images) -> tuple[float, float] | tuple[None, None]:
    """Shared colour limits of a row's images (1st and 99th percentiles)."""
    import numpy as np

    vals = [np.asarray(im, dtype=float).ravel() for im in images if im is not None]
    allv = np.concatenate(vals) if vals else np.empty(0)
    allv = allv[np.isfinite(allv)]
    if not allv.size:
        return None, None
    lo, hi = np.percentile(allv, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def _fmt(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "?"
    return "?" if math.isnan(value) else format(value, spec)


def plot_reconstructions(out_dir: str | Path, path: str | Path | None = None,
                         max_rows: int = 12) -> Path | None:
    """Write :func:`reconstructions_figure` to ``path`` (default ``reconstructions.png`` in
    ``out_dir``); None (nothing written) without usable artifacts."""
    fig = reconstructions_figure(out_dir, max_rows)
    if fig is None:
        return None
    path = Path(path) if path is not None else OutputPaths(out_dir).reconstructions_png
    fig.savefig(path, dpi=80)
    return path


def reconstructions_figure(out_dir: str | Path, max_rows: int = 12):
    """Panel of ``units/*/artifacts/<arm_id>.npz``: one row per N / gridsize / loss (lowest
    seed), the ground truth first, then amplitude and phase at each dose titled with SSIM,
    PSNR (dB) and FRC50 (px); a failed arm's cells name its status. One colour bar per row
    for amplitude and one for phase. None without usable artifacts."""
    from .store import load_results

    paths = OutputPaths(out_dir)
    df = load_results(paths.root)
    found = {f.stem: d for f in paths.artifact_files("*.npz")
             if f.stem in set(df["arm_id"]) and (d := _load_npz(f)) is not None}
    if not found:
        return None
    rows = df.sort_values("seed", ascending=False).to_dict("records")
    groups: dict[tuple, dict[float, dict]] = {}
    for r in rows:  # lowest seed last: it wins
        groups.setdefault((int(r["N"]), int(r["gridsize"]), r["loss"]), {})[r["nphotons"]] = r
    keys = sorted(k for k in groups if any(r["arm_id"] in found for r in groups[k].values()))
    keys = keys[:max_rows]
    doses = sorted({p for k in keys for p in groups[k]})
    ncols = 2 + 2 * len(doses)
    fig = _figure(1.55 * ncols + 1.6, 2.05 * len(keys) + 1.0)
    axes = fig.subplots(len(keys), ncols, squeeze=False)
    for i, key in enumerate(keys):
        truth = next(found[r["arm_id"]] for r in groups[key].values() if r["arm_id"] in found)
        cells = [("amp", "ground truth\namplitude", truth.get("true_amplitude"), None),
                 ("phase", "ground truth\nphase", truth.get("true_phase"), None)]
        for p in doses:
            r = groups[key].get(p, {})
            data = found.get(r.get("arm_id"), {})
            for kind, name, prefix in (("amp", "amplitude", "amp_norm"),
                                       ("phase", "phase", "phase_plane")):
                title = (f"{name}, {p:.0e} ph\nSSIM {_fmt(r, prefix + '_ssim', '.2f')}, "
                         f"{_fmt(r, prefix + '_psnr', '.1f')} dB\n"
                         f"FRC50 {_fmt(r, kind + '_frc50_px', '.1f')} px")
                status = r.get("status") if r and r.get("status") != "ok" else None
                cells.append((kind, title, data.get(name), status or ("no artifact" if r else
                                                                      "not run")))
        limits = {kind: _limits([img for k, _, img, _ in cells if k == kind])
                  for kind in ("amp", "phase")}
        images = {}
        for j, (kind, title, img, missing) in enumerate(cells):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
            if img is not None and getattr(img, "ndim", 0) == 2:
                vmin, vmax = limits[kind]
                images[kind] = ax.imshow(img, cmap="gray" if kind == "amp" else "twilight",
                                         vmin=vmin, vmax=vmax)
            else:
                ax.text(0.5, 0.5, missing or "no image", ha="center", va="center",
                        transform=ax.transAxes, color="tab:red", fontsize=9)
            if j == 0:
                base = groups[key][min(groups[key])]
                ax.set_ylabel(f"N={key[0]}, gridsize {key[1]}\nloss {key[2]}\nconstant image:"
                              f"\nSSIM {_fmt(base, 'amp_norm_ssim_baseline', '.2f')} amp, "
                              f"{_fmt(base, 'phase_plane_ssim_baseline', '.2f')} phase",
                              fontsize=7)
        for kind, label in (("amp", "amplitude"), ("phase", "phase (rad)")):
            if kind in images:
                cb = fig.colorbar(images[kind], ax=axes[i, :], location="right", aspect=12,
                                  pad=0.005, fraction=0.02)
                cb.set_label(label, fontsize=7)
                cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"Reconstructions (lowest seed) beside the ground truth: {_names(df)}")
    fig.supxlabel(_footnote(df, paths.sweep_toml, "titles: dose (photons per pattern), SSIM "
                            "and PSNR of the amplitude divided by its mean / of the phase with "
                            "its best-fit plane removed, FRC50 resolution in pixels (lower is "
                            "better); one colour scale per row and kind (1st-99th percentile)"),
                  fontsize=8, x=0.01, ha="left")
    return fig


# -- training curves -------------------------------------------------------------------------
def load_history(out_dir: str | Path):
    """The per-epoch history of a sweep output: ``history.parquet``, else ``history.csv``, else
    rebuilt from the records (None if there is none)."""
    import pandas as pd

    from .store import history_frame, read_records

    paths = OutputPaths(out_dir)
    if paths.history_parquet.is_file():
        return pd.read_parquet(paths.history_parquet)
    if paths.history_csv.is_file():
        return pd.read_csv(paths.history_csv)
    if paths.records_dir.is_dir():
        df = history_frame(read_records(paths).values())
        return df if len(df) else None
    return None


def plot_training_curves(out_dir: str | Path, path: str | Path | None = None) -> Path | None:
    """Write :func:`training_curves_figure` to ``path`` (default ``training_curves.png`` in
    ``out_dir``); None (nothing written) without a per-epoch history."""
    fig = training_curves_figure(out_dir)
    if fig is None:
        return None
    path = Path(path) if path is not None else OutputPaths(out_dir).training_curves_png
    fig.savefig(path, dpi=90)
    return path


def training_curves_figure(out_dir: str | Path):
    """Training (solid) and validation (dashed, the test scan) loss against epoch, log y: one
    panel per loss (rows: its units differ) and N / gridsize (columns), colour by dose, every
    seed drawn. None without a history."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    paths = OutputPaths(out_dir)
    hist = load_history(paths.root)
    if hist is None or not len(hist) or "train_loss" not in hist:
        return None
    hist = _numeric(hist, ["train_loss", "val_loss", "epoch", "nphotons"])
    losses = sorted({str(v) for v in hist["loss"].dropna()})
    configs = sorted({(int(n), int(g)) for n, g in zip(hist["N"], hist["gridsize"],
                                                       strict=True)})
    doses = sorted(hist["nphotons"].dropna().unique())
    cmap = mpl.colormaps["viridis"]
    colours = {p: cmap(0.9 * i / max(1, len(doses) - 1)) for i, p in enumerate(doses)}
    fig = _figure(3.6 * len(configs) + 2.4, 3.0 * len(losses) + 0.9)
    axes = fig.subplots(len(losses), len(configs), squeeze=False, sharex=True)
    has_val = _has(hist, "val_loss")
    for i, loss in enumerate(losses):
        for j, (n, g) in enumerate(configs):
            ax = axes[i, j]
            sel = hist[(hist["loss"] == loss) & (hist["N"] == n) & (hist["gridsize"] == g)]
            for (p, _seed), arm in sel.groupby(["nphotons", "seed"]):
                arm = arm.sort_values("epoch")
                ax.plot(arm["epoch"], arm["train_loss"], color=colours[p], linewidth=1.3)
                if has_val:
                    ax.plot(arm["epoch"], arm["val_loss"], color=colours[p], linewidth=1.1,
                            linestyle="--")
            if len(sel) and (sel["train_loss"] > 0).all():
                _log_y(ax)
            ax.set_title(f"N={n}, gridsize {g}, loss {loss}", fontsize="medium")
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{loss} loss (its own units, log)")
            if i == len(losses) - 1:
                ax.set_xlabel("epoch")
            if not len(sel):
                ax.text(0.5, 0.5, "no history", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
    handles = [Line2D([], [], color=colours[p], linewidth=3) for p in doses]
    labels = [f"{p:.0e} photons per pattern" for p in doses]
    handles.append(Line2D([], [], color="0.2"))
    labels.append("training loss")
    if has_val:
        handles.append(Line2D([], [], color="0.2", linestyle="--"))
        labels.append("validation loss\n(the test scan)")
    _legend(fig, handles, labels)
    fig.suptitle(f"Training curves: {_names(hist)}")
    fig.supxlabel(_footnote(hist, paths.sweep_toml, "one line per arm (every seed); losses "
                            "of different types are not comparable"),
                  fontsize="small", x=0.01, ha="left")
    return fig
