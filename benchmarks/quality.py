"""Reconstruction quality of the default task for a fixed training budget.

For every unit and arm of a sweep file (default ``experiments/quality.toml``) it simulates the
data, trains the model exactly as the default task does (``experiments.dose_response``), and
every ``--every`` epochs scores the reconstruction of both scans, the training scan (in situ,
``reconstruct = "same"``) and the test scan of another object (``"new"``). It prints, per arm
and mode, amplitude/phase SSIM, PSNR and FRC50 beside the constant-image baseline, and the
minutes of training (scoring excluded) until the mean-normalised amplitude SSIM first reached
``--target`` (default 0.7; ``-`` if never). One process, sequential; do not time it while
another heavy job runs.

    python benchmarks/quality.py [experiments/quality.toml] [KEY=VALUE ...] [--every 5]
        [--target 0.7] [--threads 2] [--csv out.csv] [--save DIR]

``--save DIR`` writes each arm's final reconstruction of both scans, ``<arm>_<mode>.npz`` (the
arrays of an arm's artifact: ``amplitude``, ``phase``, ``true_amplitude``, ``true_phase``) and
``<arm>_<mode>.png`` (truth and reconstruction, amplitude and phase), to look at.

``KEY=VALUE`` overrides the sweep file as on ``ptycho-sweep run`` (``'arms.loss=["mae"]'``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from _args import add_threads, limit_threads, load_or_exit, sweep_parser  # noqa: E402

from runner.plan import Sweep  # noqa: E402

COLUMNS = ["amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_psnr", "amp_norm_psnr_baseline",
           "amp_frc50_px", "phase_plane_ssim", "phase_plane_ssim_baseline", "amp_ssim"]


def score_every(every: int, scans: dict, nepochs: int):
    """A Keras callback that scores both ``scans`` every ``every`` epochs (and after the last);
    it keeps ``rows`` of (training minutes, epoch, mode, metrics) and the last ``arrays`` per
    mode; the scoring time is not counted as training time. (Keras is imported here, not at
    the top, so ``--help`` and bad arguments answer before TensorFlow loads.)"""
    import keras

    from experiments.dose_response import score

    class ScoreEvery(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows, self.train_s, self._t = [], 0.0, None
            self.arrays = {}  # mode -> the arrays of the last scoring

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.train_s += time.perf_counter() - self._t
            done = epoch + 1
            if done % every and done != nepochs:
                return
            for mode, data in scans.items():
                metrics, self.arrays[mode] = score(self.model, data)
                self.rows.append({"epoch": done, "train_min": self.train_s / 60, "mode": mode,
                                  **metrics})

    return ScoreEvery()


def save(out: Path, stem: str, mode: str, metrics: dict, arrays: dict) -> None:
    """``<stem>_<mode>.npz`` and a 2 x 2 PNG: truth and reconstruction, amplitude and phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{stem}_{mode}.npz", **arrays)
    fig, axes = plt.subplots(2, 2, figsize=(7, 7), layout="constrained")
    for ax, key, title in zip(axes.flat, ("true_amplitude", "amplitude", "true_phase", "phase"),
                              ("truth, amplitude", f"amplitude, SSIM "
                               f"{metrics['amp_norm_ssim']:.2f} (constant "
                               f"{metrics['amp_norm_ssim_baseline']:.2f})", "truth, phase (rad)",
                               f"phase, SSIM {metrics['phase_plane_ssim']:.2f}"), strict=True):
        fig.colorbar(ax.imshow(arrays[key], cmap="gray"), ax=ax, shrink=0.8)
        ax.set_title(title, fontsize="small")
        ax.axis("off")
    fig.suptitle(f"{stem}, {'in situ (training scan)' if mode == 'same' else 'a new object'}",
                 fontsize="medium")
    fig.savefig(out / f"{stem}_{mode}.png", dpi=80)
    plt.close(fig)


def run(sweep: Sweep, every: int, threads: int, save_dir: Path | None = None) -> pd.DataFrame:
    limit_threads(threads)
    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.simulation import simulate_unit

    rows = []
    for unit in sweep.plan():
        train, test = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
        models = model_lib.build_models(unit.model_config(), probe=train.probe,
                                        intensity_scale=train.intensity_scale)
        for arm in unit.arms:
            training = unit.training_config(arm)
            model_lib.reset_weights(models.autoencoder, training.seed)
            cb = score_every(every, {"same": train, "new": test}, training.nepochs)
            train_pinn.train(train, model_instance=models.autoencoder, training=training,
                             callbacks=[cb])
            for r in cb.rows:
                rows.append({"N": unit.N, "gridsize": unit.gridsize, "nphotons": unit.nphotons,
                             "loss": arm.loss, "seed": arm.seed, **r})
            last = rows[-1]
            if save_dir is not None:
                stem = (f"N{unit.N}_g{unit.gridsize}_p{unit.nphotons:.0e}_{arm.loss}_"
                        f"s{arm.seed}")
                for mode, arrays in cb.arrays.items():
                    metrics = next(r for r in reversed(cb.rows) if r["mode"] == mode)
                    save(save_dir, stem, mode, metrics, arrays)
            print(f"  done N={unit.N} gs={unit.gridsize} {unit.nphotons:.0e} {arm.loss}: "
                  f"{last['train_min']:.1f} min", flush=True)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, target: float) -> pd.DataFrame:
    keys = ["N", "gridsize", "nphotons", "loss", "seed", "mode"]
    out = []
    for key, grp in df.groupby(keys, sort=True):
        grp = grp.sort_values("epoch")
        last = grp.iloc[-1]
        hit = grp[grp["amp_norm_ssim"] >= target]
        out.append({**dict(zip(keys, key, strict=True)), "epochs": int(last["epoch"]),
                    "train_min": round(last["train_min"], 1),
                    **{c: round(float(last[c]), 3) for c in COLUMNS},
                    f"min_to_{target}": round(float(hit["train_min"].iloc[0]), 1)
                    if len(hit) else "-"})
    table = pd.DataFrame(out)
    if len(table):
        table["nphotons"] = [f"{p:.0e}" for p in table["nphotons"]]
    return table


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/quality.toml", "grid.gridsize=[2]")
    ap.add_argument("--every", type=int, default=5, help="score every K epochs")
    ap.add_argument("--target", type=float, default=0.7, help="amp SSIM to time")
    add_threads(ap, 2)
    ap.add_argument("--csv", help="also write every scoring (per epoch) to this CSV")
    ap.add_argument("--save", type=Path, metavar="DIR",
                    help="write each arm's final reconstructions (.npz and .png) here")
    args = ap.parse_intermixed_args()  # overrides before or after the options
    sweep = load_or_exit(args, "quality.py")  # before TensorFlow loads, as ptycho-sweep
    if sweep.training.get("holdout"):  # it scores the full scans every few epochs
        print(f"quality.py: error: {sweep.source}: training.holdout = "
              f"{sweep.training['holdout']} is not supported here (scores are of the full "
              f"scans, every --every epochs); run the sweep with ptycho-sweep instead",
              file=sys.stderr)
        sys.exit(2)
    df = run(sweep, args.every, args.threads, args.save)
    if args.csv:
        df.to_csv(args.csv, index=False)
    table = summary(df, args.target)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
