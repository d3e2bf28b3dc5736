"""Score a sweep's saved reconstructions again, from their ``.npz`` files, without training.

Arms recorded before a score existed (e.g. the correlations ``amp_norm_r`` and
``phase_plane_r``, round 19) still have their stitched reconstruction and the truth on the
scored region in ``units/<unit>/artifacts/<arm_id>.npz`` (:func:`experiments.dose_response.
score_patches`). This script recomputes :func:`ptycho.scores.upstream_scores` from those
arrays and prints, per ok arm, the recorded amplitude SSIM beside the recomputed one (they
agree up to float32 rounding: the check that the arrays are what was scored) and the
correlations, for the ``N/4``-window stitching and, where saved, the illumination-weighted
one (``*_illum``). It only reads: records and tables are left as they are.

    python benchmarks/rescore.py DIR [--where "N == 64 and gridsize == 1"]

``--where`` is a :meth:`pandas.DataFrame.query` on the results table. Seconds, no TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ptycho.scores import upstream_scores  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.series import varied_settings  # noqa: E402
from runner.store import load_results  # noqa: E402

SHOWN = ("amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_r", "amp_frc50_px",
         "phase_plane_ssim", "phase_plane_r")


def rescore(npz: Path) -> dict[str, float]:
    """Scores of the arrays saved in ``npz``: the keys of :data:`SHOWN`, and the same with
    ``_illum`` for the illumination-weighted stitching when the file has it."""
    with np.load(npz) as d:
        truth = d["true_amplitude"] * np.exp(1j * d["true_phase"])
        out = {}
        for suffix in ("", "_illum"):
            if f"amplitude{suffix}" not in d:
                continue
            est = d[f"amplitude{suffix}"] * np.exp(1j * d[f"phase{suffix}"])
            scores = upstream_scores(est.astype(np.complex128), truth.astype(np.complex128))
            out.update({f"{k}{suffix}": scores[k] for k in SHOWN})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a sweep's output directory")
    parser.add_argument("--where", default=None, help="pandas query on the results table")
    args = parser.parse_args(argv)
    paths = OutputPaths(args.dir)
    try:
        df = load_results(paths.root)
    except FileNotFoundError as exc:
        print(f"rescore: {exc}", file=sys.stderr)
        return 2
    df = df[df["status"] == "ok"]
    if args.where:
        try:
            df = df.query(args.where)
        except Exception as exc:  # noqa: BLE001 - any query error is the user's input
            print(f"rescore: --where {args.where!r}: {exc}", file=sys.stderr)
            return 2
    rows, varied = [], varied_settings(df)
    for rec in df.to_dict("records"):
        npz = paths.units_dir / rec["unit_id"] / "artifacts" / f"{rec['arm_id']}.npz"
        if not npz.is_file():
            continue
        rows.append({"arm_id": rec["arm_id"], "N": rec["N"], "gridsize": rec["gridsize"],
                     "nphotons": rec["nphotons"], "loss": rec["loss"], "seed": rec["seed"],
                     **{k: rec[k] for k in varied},
                     "recorded_amp_norm_ssim": rec.get("amp_norm_ssim"), **rescore(npz)})
    if not rows:
        print(f"rescore: no ok arm with a saved .npz in {args.dir}", file=sys.stderr)
        return 1
    table = pd.DataFrame(rows).sort_values(["N", "gridsize", "nphotons", "loss", "seed"])
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
