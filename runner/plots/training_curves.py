"""The training-curve figure: training and validation loss against epoch, one panel per loss
and N / gridsize, colour by dose (see :mod:`runner.plots`); :func:`load_history` reads the
per-epoch history of a sweep output."""

from __future__ import annotations

from pathlib import Path

from ..paths import OutputPaths
from ..series import with_series
from .common import _caption, _figure, _has, _legend, _log_y, _names, _numeric

__all__ = ["load_history", "plot_training_curves", "training_curves_figure"]


#: Line styles of the held-out row, one per series; never "--", the validation loss's.
_HELD_STYLES = ("-", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2, 1, 2)))


def load_history(out_dir: str | Path):
    """The per-epoch history of a sweep output: built from its records (the source of truth,
    completed like :func:`runner.store.load_results`) when they hold one, else
    ``history.parquet``, else ``history.csv`` (None if there is none)."""
    import pandas as pd

    from ..store import complete_records, history_frame, read_records

    paths = OutputPaths(out_dir)
    if paths.records_dir.is_dir():
        df = history_frame(complete_records(paths, read_records(paths)).values())
        if len(df):
            return df
    if paths.history_parquet.is_file():
        return pd.read_parquet(paths.history_parquet)
    if paths.history_csv.is_file():
        return pd.read_csv(paths.history_csv)
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
    seed drawn. With held-out photons (``training.holdout``: a ``holdout_loss`` column), a last
    row shows their Poisson NLL for every loss (one unit: comparable across losses, one line
    style per series: loss and varied settings) with a dot at each arm's minimum, the epoch it
    was scored at. None without a history."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    paths = OutputPaths(out_dir)
    hist = load_history(paths.root)
    if hist is None or not len(hist) or "train_loss" not in hist:
        return None
    hist = _numeric(hist, ["train_loss", "val_loss", "holdout_loss", "epoch", "nphotons"])
    hist, _ = with_series(hist)
    losses = sorted({str(v) for v in hist["loss"].dropna()})
    names = sorted({str(v) for v in hist["series"].dropna()})
    configs = sorted({(int(n), int(g)) for n, g in zip(hist["N"], hist["gridsize"],
                                                       strict=True)})
    doses = sorted(hist["nphotons"].dropna().unique())
    cmap = mpl.colormaps["viridis"]
    colours = {p: cmap(0.9 * i / max(1, len(doses) - 1)) for i, p in enumerate(doses)}
    has_held = _has(hist, "holdout_loss")
    rows = len(losses) + has_held
    fig = _figure(3.6 * len(configs) + 2.4, 3.0 * rows + 0.9)
    axes = fig.subplots(rows, len(configs), squeeze=False, sharex=True)
    has_val = _has(hist, "val_loss")
    for i, loss in enumerate(losses):
        for j, (n, g) in enumerate(configs):
            ax = axes[i, j]
            sel = hist[(hist["loss"] == loss) & (hist["N"] == n) & (hist["gridsize"] == g)]
            for (p, _series, _seed), arm in sel.groupby(["nphotons", "series", "seed"]):
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
            if i == rows - 1:
                ax.set_xlabel("epoch")
            if not len(sel):
                ax.text(0.5, 0.5, "no history", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
    styles = {name: _HELD_STYLES[k % len(_HELD_STYLES)]
              for k, name in enumerate(names)}
    if has_held:
        for j, (n, g) in enumerate(configs):
            _held_out_panel(axes[-1, j], hist[(hist["N"] == n) & (hist["gridsize"] == g)],
                            colours, styles, first=j == 0)
    handles = [Line2D([], [], color=colours[p], linewidth=3) for p in doses]
    labels = [f"{p:.0e} photons per pattern" for p in doses]
    handles.append(Line2D([], [], color="0.2"))
    labels.append("training loss")
    if has_val:
        handles.append(Line2D([], [], color="0.2", linestyle="--"))
        labels.append("validation loss\n(the test scan)")
    if has_held:
        for name in names:
            handles.append(Line2D([], [], color="0.2", linestyle=styles[name]))
            labels.append(f"held-out photons, {name}")
        handles.append(Line2D([], [], color="0.2", marker="o", linestyle=""))
        labels.append("epoch scored (minimum)")
    _legend(fig, handles, labels)
    fig.suptitle(f"Training curves: {_names(hist)}")
    _caption(fig, hist, paths.sweep_toml, "one line per arm (every seed); losses of different "
             "types are not comparable")
    return fig


def _held_out_panel(ax, sel, colours, styles, first: bool) -> None:
    """Held-out Poisson NLL against epoch for the arms of one N / gridsize: colour by dose,
    line style by series (loss and varied settings), a dot at each arm's minimum (the weights
    it was scored with)."""
    sel = sel[sel["holdout_loss"].notna()]
    for (p, name, _seed), arm in sel.groupby(["nphotons", "series", "seed"]):
        arm = arm.sort_values("epoch")
        ax.plot(arm["epoch"], arm["holdout_loss"], color=colours[p], linewidth=1.1,
                linestyle=styles[name])
        best = arm.loc[arm["holdout_loss"].idxmin()]
        ax.plot([best["epoch"]], [best["holdout_loss"]], "o", color=colours[p], markersize=4)
    if len(sel) and (sel["holdout_loss"] > 0).all():
        _log_y(ax)
    ax.set_title("held-out photons (Poisson NLL)", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    if first:
        ax.set_ylabel("nll per held-out count (log)")
    ax.set_xlabel("epoch")
    if not len(sel):
        ax.text(0.5, 0.5, "no held-out photons", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
