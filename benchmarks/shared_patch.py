"""Gridsize 1 at low dose: is the spot every tile shows the one patch that best explains the
*average* diffraction pattern?

A diagnostic of docs/quality.md (round 19). At ``N = 64`` gridsize 1 and 1e4 photons the
no-prior arm outputs (nearly) the same patch for every pattern: flat, with a spot near the
probe's centre; the prior arms keep a fainter spot in each tile. Hypothesis: when a pattern
says too little to place the lines, the likelihood is best served by one patch for all
patterns, and the best single patch is the one whose (coherent) diffraction pattern matches the
scan's *mean* pattern. That mean is the probe's central peak plus the diffuse halo the lines
scatter into at all positions; a flat object has no halo, and a coherent patch makes one only
with a compact scatterer where the probe is brightest. Refuted if the best shared patch is flat
(no gain over the flat patch) or its centre does not resemble the arm's tile.

For one unit of a sweep file (default: the faint sample, ``N = 64`` gridsize 1, 1e4) it
simulates the training scan as the default task does, then fits one complex patch ``O``
(Adam on amplitude and phase, starting flat) to maximise the Poisson likelihood of all
patterns' counts under the shared expected counts ``s^2 |F(P O)|^2``: once for the noiseless
expected counts (the infinite-data limit: what one patch *can* explain) and once for the
measured counts (which it can also fit by their noise). It prints the negative
log-likelihood gains over the flat patch (nats, summed over patterns) of the fitted patch and
of the true patches, the fitted patches' central ``N/4`` window and, given ``--npz`` (an arm's
saved reconstruction), its mean correlation with the arm's stitched ``N/4`` tiles.
``--save PNG`` renders them. Seconds on 2 cores.

    python benchmarks/shared_patch.py [SWEEP] [KEY=VALUE ...] [--npz ARM.npz] [--save PNG]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _args import load_or_exit, sweep_parser  # noqa: E402

from ptycho.scores import pearson_r  # noqa: E402

DEFAULT_OVERRIDES = ("grid.N=[64]", "grid.gridsize=[1]", "grid.nphotons=[1e4]",
                     'arms.loss=["nll_huber"]', "arms.seed=[0]")


def poisson_nll(lam: np.ndarray, y: np.ndarray) -> float:
    """``sum(lam - y log lam)`` in nats (the count-only ``log y!`` term dropped), float64."""
    lam = np.maximum(np.asarray(lam, np.float64), 1e-300)
    return float(np.sum(lam - np.asarray(y, np.float64) * np.log(lam)))


def fit_shared_patch(counts: np.ndarray, probe: np.ndarray, scale: float, start: np.ndarray,
                     steps: int = 1500, lr: float = 0.01) -> np.ndarray:
    """The one complex patch ``(N, N)`` whose expected counts ``scale^2 |F(probe O)|^2`` best
    explain every pattern of ``counts`` ``(B, N, N)`` (DC at ``(N//2, N//2)``, unitary FFT as
    :func:`ptycho.diffsim.diffract`, in TensorFlow :func:`ptycho.tf_helper.diffract`); Adam on
    log-amplitude and phase from ``start``."""
    import tensorflow as tf

    from ptycho.tf_helper import diffract

    y_mean = tf.constant(counts.mean(axis=0), tf.float32)  # the NLL is linear in y
    p = tf.constant(probe, tf.complex64)
    log_amp = tf.Variable(np.log(np.abs(start)).astype(np.float32))
    phase = tf.Variable(np.angle(start).astype(np.float32))
    opt = tf.keras.optimizers.Adam(lr)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            obj = tf.complex(tf.exp(log_amp), 0.0) * tf.exp(tf.complex(0.0, phase))
            amp = diffract((p * obj)[None, :, :, None])[0, :, :, 0]
            lam = scale**2 * amp**2 + 1e-12
            loss = tf.reduce_sum(lam - y_mean * tf.math.log(lam))
        grads = tape.gradient(loss, [log_amp, phase])
        opt.apply_gradients(zip(grads, [log_amp, phase], strict=True))
        return loss

    for _ in range(steps):
        step()
    return (np.exp(log_amp.numpy()) * np.exp(1j * phase.numpy())).astype(np.complex64)


def expected_counts(patches: np.ndarray, probe: np.ndarray, scale: float) -> np.ndarray:
    from ptycho.diffsim import diffract

    return (scale * diffract(probe * patches).astype(np.float64)) ** 2


def tile_r(window: np.ndarray, stitched: np.ndarray) -> float:
    """Mean over the ``n x n`` tiles of ``stitched`` of their correlation with ``window``."""
    n = window.shape[0]
    rs = []
    for i in range(0, stitched.shape[0] - n + 1, n):
        for j in range(0, stitched.shape[1] - n + 1, n):
            rs.append(pearson_r(window, stitched[i:i + n, j:j + n]))
    return float(np.mean(rs))


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/dose_response_weak_holdout.toml",
                      "grid.nphotons=[1e5]")
    ap.add_argument("--npz", type=Path, help="an arm's saved reconstruction to compare with")
    ap.add_argument("--save", type=Path, help="render the patches to this PNG")
    args = ap.parse_intermixed_args()
    sweep = load_or_exit(args, "shared_patch.py", before=DEFAULT_OVERRIDES, check_task=False)
    from ptycho.simulation import simulate_unit

    unit = sweep.plan()[0]
    if unit.gridsize != 1:
        print(f"shared_patch.py: error: grid.gridsize: gridsize 1 only (one pattern per "
              f"sample); got {unit.gridsize}", file=sys.stderr)
        sys.exit(2)
    train, _ = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
    counts = np.square(train.X[..., 0].astype(np.float64))
    truth = train.patches[..., 0]
    n, s, probe = unit.N, train.intensity_scale, train.probe
    expected = expected_counts(truth, probe, s)
    flat = np.full((n, n), np.abs(truth).mean(), np.complex64)
    print(f"N {n}, gridsize 1, {unit.nphotons:g} photons, {len(counts)} patterns: Poisson NLL "
          f"(nats, all patterns) relative to the flat patch, of the noiseless expected counts "
          f"(what a patch can explain) and of the measured counts (what training sees)")
    shared = {}
    for name, data in (("expected", expected), ("measured", counts)):
        fitted = fit_shared_patch(data, probe, s, flat)
        shared[name] = fitted
        for label, patch in (("flat patch (true mean amplitude)", flat),
                             (f"one patch fitted to the {name} counts", fitted),
                             ("the true patches", truth)):
            lam = np.broadcast_to(expected_counts(patch, probe, s), data.shape)
            gain = poisson_nll(lam, data) - poisson_nll(
                np.broadcast_to(expected_counts(flat, probe, s), data.shape), data)
            print(f"  {name:8s} {label:42s} {gain:10.1f}")
    c, q = n // 2, n // 8
    for name, patch in shared.items():
        window = patch[c - q:c + q, c - q:c + q]
        line = (f"patch fitted to the {name} counts, centre {2 * q} px: amplitude "
                f"{np.abs(window).min():.4f} to {np.abs(window).max():.4f}, phase ptp "
                f"{np.ptp(np.angle(window)):.3f} rad")
        if args.npz:
            with np.load(args.npz) as d:
                line += (f"; mean r with {args.npz.name}'s tiles: amplitude "
                         f"{tile_r(np.abs(window), d['amplitude']):.2f}, phase "
                         f"{tile_r(np.angle(window), d['phase']):.2f}")
        print(line)
    if args.save:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [(f"{name}: |O|", np.abs(patch)) for name, patch in shared.items()]
        panels += [(f"{name}: arg O", np.angle(patch)) for name, patch in shared.items()]
        panels.append(("probe |P|", np.abs(probe)))
        if args.npz:
            with np.load(args.npz) as d:
                panels += [(f"{args.npz.stem}: amplitude", d["amplitude"]),
                           (f"{args.npz.stem}: phase", d["phase"])]
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
        for ax, (title, img) in zip(axes, panels, strict=True):
            ax.imshow(img, cmap="gray")
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(args.save, dpi=80)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
