"""Gridsize 1, tile by tile: is each pattern's reconstruction the object, its twin, or neither?

A diagnostic of docs/quality.md (round 6). It trains one gridsize-1 arm of a sweep file (default
the ``N = 64`` study's unit at 1e9 photons) as the default task does, then, per training
pattern, correlates the reconstructed patch's amplitude with the true patch's and with its
twin's (the true patch rotated by 180 degrees: with a probe whose modulus is centro-symmetric
the twin ``conj(P O)(-r) / P`` gives the same counts and has that amplitude). It prints the
mean correlations, their histograms and how many tiles are closer to the twin, and re-scores the
stitched object after replacing those tiles by their own twin (the "oracle" flip: the gain a
perfect twin resolution could bring). One process, sequential, about 8 minutes at ``N = 64``
for 200 epochs on 2 cores.

    python benchmarks/gridsize1_tiles.py [SWEEP] [KEY=VALUE ...] [--threads 2]

e.g. ``'arms.loss=["mae"]' 'training.nepochs=200'``; the first unit and arm of the sweep run.
The default sweep pins ``simulation.feature_scale = 1.0`` (objects fixed in pixels, round 6);
add ``'simulation.feature_scale="auto"'`` for the default object (round 7).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _args import add_threads, limit_threads, load_or_exit, sweep_parser  # noqa: E402

from ptycho.probe import rotate_180  # noqa: E402

DEFAULT_OVERRIDES = ("grid.gridsize=[1]", "grid.nphotons=[1e9]")
BINS = [-1.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Signed Pearson correlation of ``(B, N, N)`` real patches over ``mask``, per patch."""
    a, b = a[..., mask], b[..., mask]
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def twin_of(patches: np.ndarray, probe: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The twin object patch ``conj(P p)(-r) / P`` of ``(B, N, N)`` patches on ``mask``."""
    out = np.zeros_like(patches)
    w = np.conj(rotate_180(probe * patches))
    out[..., mask] = w[..., mask] / probe[mask]
    return out


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/dose_response_n64_cpu.toml", "arms.loss=[\"mae\"]")
    add_threads(ap, 2)
    args = ap.parse_intermixed_args()  # overrides before or after the options
    sweep = load_or_exit(args, "gridsize1_tiles.py", before=DEFAULT_OVERRIDES)
    unit = sweep.plan()[0]
    arm = unit.arms[0]

    limit_threads(args.threads)
    from experiments.dose_response import score_patches
    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.simulation import simulate_unit

    train, _ = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
    models = model_lib.build_models(unit.model_config(), probe=train.probe,
                                    intensity_scale=train.intensity_scale)
    model_lib.reset_weights(models.autoencoder, arm.seed)
    training = unit.training_config(arm)
    start = time.perf_counter()
    train_pinn.train(train, model_instance=models.autoencoder, training=training)
    print(f"N={unit.N} gridsize={unit.gridsize} {unit.nphotons:.0e} {arm.loss} seed {arm.seed}: "
          f"{training.nepochs} epochs in {(time.perf_counter() - start) / 60:.1f} min")

    N = unit.N
    probe = np.asarray(train.probe, np.complex64)
    pred = train_pinn.eval(train, models.autoencoder)[..., 0]  # (B, N, N)
    true = np.asarray(train.patches)[..., 0]
    q = N // 4  # the decoder's central N/2 x N/2 region, within the probe's support
    box = np.zeros((N, N), bool)
    box[q:N - q, q:N - q] = True
    mask = box & (np.abs(probe) > 0.05 * np.abs(probe).max())
    c_true = pearson(np.abs(pred), np.abs(true), mask)
    c_twin = pearson(np.abs(pred), rotate_180(np.abs(true)), mask)
    closer = c_twin > c_true
    print(f"amplitude correlation with the true patch: mean {c_true.mean():.3f}; with its twin: "
          f"{c_twin.mean():.3f}; tiles closer to the twin: {closer.sum()} of {len(pred)}")
    print(f"  histogram over {BINS}: true {np.histogram(c_true, BINS)[0].tolist()}, "
          f"twin {np.histogram(c_twin, BINS)[0].tolist()}")

    for name, patches in (("as trained", pred),
                          ("oracle flips", np.where(closer[:, None, None],
                                                    twin_of(pred, probe, mask), pred))):
        m, _ = score_patches(patches[..., None], train)
        print(f"{name}: amp SSIM {m['amp_norm_ssim']:.3f} (constant image "
              f"{m['amp_norm_ssim_baseline']:.3f}), FRC50 {m['amp_frc50_px']:.1f} px, phase SSIM "
              f"{m['phase_plane_ssim']:.3f}")


if __name__ == "__main__":
    main()
