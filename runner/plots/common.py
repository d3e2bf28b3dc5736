"""Shared pieces of the sweep figures: the Agg figure, numeric columns, the legend, the log-y
axis and the footnote naming the sweep, its epochs, training size and seeds (from the table's
columns, else ``sweep.toml``, else the defaults of ``ptycho.config``)."""

from __future__ import annotations

import logging
import textwrap
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


#: Point size of every figure's caption.
CAPTION_PT = 8


def _caption(fig, df, sweep_toml: Path | None, extra: str = "") -> None:
    """Put :func:`_footnote` under ``fig``, left-aligned, each line wrapped to the figure's
    width (a narrow figure, one dose, must not cut its caption off)."""
    chars = max(40, int(fig.get_figwidth() * 72 / (0.55 * CAPTION_PT)))  # ~average glyph width
    text = "\n".join(textwrap.fill(line, chars)
                     for line in _footnote(df, sweep_toml, extra).split("\n"))
    fig.supxlabel(text, fontsize=CAPTION_PT, x=0.01, ha="left")


# -- axes and legend -------------------------------------------------------------------------
def _legend(fig, handles: list, labels: list, spare=None) -> None:
    """The figure's one legend: in the ``spare`` (empty) axes if any, else outside right,
    centred (at the top it would reach into the title's band of a one-column figure)."""
    if spare is not None:
        spare.axis("off")
        spare.legend(handles, labels, loc="center", fontsize="small", frameon=False)
    else:
        fig.legend(handles, labels, loc="outside right center", fontsize="small")


def _log_y(ax) -> None:
    """Log scale, ticks as plain numbers (0.06, not 6 x 10^-2), with the significant digits
    the axis' span needs to tell neighbouring ticks apart (0.1015 and 0.1020 on a narrow one)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            ratio = vmax / vmin if vmin > 0 and vmax > vmin else 10.0
            digits = 3 if ratio >= 2 else 4 if ratio >= 1.1 else 5
            return f"{x:.{digits}g}"

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 1)))


def _names(df) -> str:
    return ", ".join(map(str, df["sweep"].dropna().unique()[:3])) if "sweep" in df else ""
