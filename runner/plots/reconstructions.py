"""The reconstruction figure: ground truth and reconstructed amplitude / phase of every
N / gridsize / loss (lowest seed) and dose, titled with their scores (see :mod:`runner.plots`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ..paths import OutputPaths
from ..series import with_series
from .common import _caption, _figure, _names

__all__ = ["plot_reconstructions", "reconstructions_figure"]

log = logging.getLogger(__name__)

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
    fig.savefig(path, dpi=80, bbox_inches="tight", pad_inches=0.1)  # keep the row labels
    return path


def reconstructions_figure(out_dir: str | Path, max_rows: int = 12):
    """Panel of ``units/*/artifacts/<arm_id>.npz``: one row per N / gridsize / series (the
    loss and the values of the settings varied between arms; lowest seed), the ground truth
    first, then amplitude and phase at each dose titled with SSIM, PSNR (dB) and FRC50 (px); a
    failed arm's cells name its status. One colour bar per row
    for amplitude and one for phase. None without usable artifacts."""
    from ..store import load_results

    paths = OutputPaths(out_dir)
    df = load_results(paths.root)
    found = {f.stem: d for f in paths.artifact_files("*.npz")
             if f.stem in set(df["arm_id"]) and (d := _load_npz(f)) is not None}
    if not found:
        return None
    df, _ = with_series(df)
    rows = df.sort_values("seed", ascending=False).to_dict("records")
    groups: dict[tuple, dict[float, dict]] = {}
    for r in rows:  # lowest seed last: it wins
        groups.setdefault((int(r["N"]), int(r["gridsize"]), r["series"]), {})[r["nphotons"]] = r
    keys = sorted(k for k in groups if any(r["arm_id"] in found for r in groups[k].values()))
    shown = f"; the first {max_rows} of {len(keys)} rows" if len(keys) > max_rows else ""
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
                title = f"{name}, {p:.0e} ph"
                if r.get("status") == "ok":  # no score line of "?" for what has none
                    title += (f"\nSSIM {_fmt(r, prefix + '_ssim', '.2f')}, "
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
                ax.set_ylabel(f"N={key[0]}, gridsize {key[1]}\nloss "
                              f"{key[2].replace(', ', chr(10))}\nconstant image:"
                              f"\nSSIM {_fmt(base, 'amp_norm_ssim_baseline', '.2f')} amp, "
                              f"{_fmt(base, 'phase_plane_ssim_baseline', '.2f')} phase",
                              fontsize=7)
        # constrained layout puts a later colour bar nearer the axes: phase first, so that
        # the bars read amplitude, phase from left to right like the columns
        for kind, label in (("phase", "phase (rad)"), ("amp", "amplitude")):
            if kind in images:
                cb = fig.colorbar(images[kind], ax=axes[i, :], location="right", aspect=12,
                                  pad=0.005, fraction=0.02)
                cb.set_label(label, fontsize=7)
                cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"Reconstructions (lowest seed) beside the ground truth: {_names(df)}{shown}")
    _caption(fig, df, paths.sweep_toml, "titles: dose (photons per pattern), SSIM and PSNR of "
             "the amplitude divided by its mean / of the phase with its best-fit plane removed, "
             "FRC50 resolution in pixels (lower is better); one colour scale per row and kind "
             "(1st-99th percentile)")
    return fig
