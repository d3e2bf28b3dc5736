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
arrays of an arm's artifact: ``amplitude``, ``phase``, their illumination-weighted stitching
``amplitude_illum``, ``phase_illum``, and ``true_amplitude``, ``true_phase``) and
``<arm>_<mode>.png`` (truth and reconstruction, amplitude and phase), to look at.

``KEY=VALUE`` overrides the sweep file as on ``ptycho-sweep run`` (``'arms.loss=["mae"]'``).

With ``training.holdout`` (photons held out of the fit, :mod:`ptycho.holdout`) both scans are
scored as the default task sees them (the kept part of their counts), each scoring row also
has the epoch's held-out NLL, and the summary adds what the stopping rule picks against what
the truth would: ``held_epoch`` and ``held_ssim`` (the epoch of least held-out NLL, whose
weights the task scores), ``max_ssim`` and ``max_epoch`` (the best of the scorings every
``--every`` epochs). Is the held-out minimum the best image?
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
from runner.schema import ARM_SETTINGS  # noqa: E402

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
            held = (logs or {}).get("holdout_loss")  # logged by the stopper, which runs first
            for mode, data in scans.items():
                metrics, self.arrays[mode] = score(self.model, data)
                self.rows.append({"epoch": done, "train_min": self.train_s / 60, "mode": mode,
                                  **metrics, **({"holdout_loss": held} if held else {})})

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
    from experiments.dose_response import score
    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.holdout import split_counts
    from ptycho.simulation import simulate_unit

    rows = []
    for unit in sweep.plan():
        train, test = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
        models = model_lib.build_models(unit.model_config(), probe=train.probe,
                                        intensity_scale=train.intensity_scale)
        for arm in unit.arms:
            training = unit.training_config(arm)
            model_lib.reset_weights(models.autoencoder, training.seed)
            scans = {"same": train, "new": test}
            if training.holdout:  # as train() fits and the default task scores them
                scans = {"same": split_counts(train, training.holdout, training.seed)[0],
                         "new": train_pinn.seen_as_fitted(test, training)}
            cb = score_every(every, scans, training.nepochs)
            result = train_pinn.train(train, model_instance=models.autoencoder,
                                      training=training, callbacks=[cb])
            ident = {"N": unit.N, "gridsize": unit.gridsize, "nphotons": unit.nphotons,
                     "loss": arm.loss, "seed": arm.seed, **dict(arm.settings)}
            rows += [{**ident, **r} for r in cb.rows]
            if result.best_epoch is not None:  # the weights restored: the task's score
                for mode, data in scans.items():
                    rows.append({**ident, "epoch": result.best_epoch, "mode": mode,
                                 "held_choice": True, **score(models.autoencoder, data)[0]})
            last = [r for r in rows if not r.get("held_choice")][-1]
            if save_dir is not None:
                stem = (f"N{unit.N}_g{unit.gridsize}_p{unit.nphotons:.0e}_{arm.loss}_"
                        f"s{arm.seed}" + "".join(f"_{k}{v:g}" for k, v in arm.settings))
                for mode, arrays in cb.arrays.items():
                    metrics = next(r for r in reversed(cb.rows) if r["mode"] == mode)
                    save(save_dir, stem, mode, metrics, arrays)
            print(f"  done N={unit.N} gs={unit.gridsize} {unit.nphotons:.0e} {arm.loss}: "
                  f"{last['train_min']:.1f} min", flush=True)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, target: float) -> pd.DataFrame:
    keys = ["N", "gridsize", "nphotons", "loss", "seed",
            *(k for k in ARM_SETTINGS if k in df), "mode"]  # [arms] lists of settings
    out = []
    if "held_choice" not in df:
        df = df.assign(held_choice=False)
    for key, grp in df.groupby(keys, sort=True):
        held = grp[grp["held_choice"].fillna(False).astype(bool)]
        grp = grp[~grp.index.isin(held.index)].sort_values("epoch")
        last = grp.iloc[-1]
        hit = grp[grp["amp_norm_ssim"] >= target]
        row = {**dict(zip(keys, key, strict=True)), "epochs": int(last["epoch"]),
               "train_min": round(last["train_min"], 1),
               **{c: round(float(last[c]), 3) for c in COLUMNS},
               f"min_to_{target}": round(float(hit["train_min"].iloc[0]), 1)
               if len(hit) else "-"}
        if len(held):
            best = grp.loc[grp["amp_norm_ssim"].idxmax()]
            row |= {"held_epoch": int(held["epoch"].iloc[0]),
                    "held_ssim": round(float(held["amp_norm_ssim"].iloc[0]), 3),
                    "max_ssim": round(float(best["amp_norm_ssim"]), 3),
                    "max_epoch": int(best["epoch"])}
        out.append(row)
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
    df = run(sweep, args.every, args.threads, args.save)
    if args.csv:
        df.to_csv(args.csv, index=False)
    table = summary(df, args.target)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
