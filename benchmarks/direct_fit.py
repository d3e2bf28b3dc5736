"""No network: each group's object fitted directly to its diffraction patterns (a per-group
maximum-likelihood reconstruction), as a reference for what the data hold at each dose.

A diagnostic of docs/quality.md (round 12). For each unit and loss of a sweep file it simulates
the unit's data as the default task does, then optimises the object itself with Adam: the
amplitude and phase of every pixel of each group's canvas (gridsize > 1: the canvas its
``C`` patterns are cut from; gridsize 1: the patch), through the model's own forward path
(extract, probe, diffract, intensity scale) and the arm's data loss. It starts from a flat
object whose amplitude the counts give (``sqrt(counts / (scale**2 sum |probe|**2))``) and no
phase, and reconstructs the scan the task scores (``simulation.reconstruct``). Printed per
row: the loss gap closed (0 = the flat start, 1 = the true object's loss) and the task's scores
of the result, at a few step counts. It needs no training of the network: about a minute per
unit at ``N = 64`` on one core.

    python benchmarks/direct_fit.py [SWEEP] [KEY=VALUE ...] [--steps 400] [--lr 0.01]

(default sweep: ``experiments/dose_response_weak.toml``, its gridsize-2 units).
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

DEFAULT_OVERRIDES = ("grid.gridsize=[2]",)
REPORT_AT = (25, 50, 100, 200, 400, 800, 1600, 3200)


def _centre(N: int) -> np.ndarray:
    """``(1, N, N, 1)`` float32: 1 on the central ``N/2`` region of a patch, which the decoder
    predicts (``pad_object``) and the fit fits, 0 elsewhere."""
    centre = np.zeros((1, N, N, 1), np.float32)
    centre[:, N // 4:N - N // 4, N // 4:N - N // 4] = 1.0
    return centre


def direct_fit(model, data, loss_fn, target: str, steps: int, lr: float):
    """Fit the object of every sample of ``data`` directly; yields ``(step, loss, obj)`` at the
    steps of :data:`REPORT_AT` up to ``steps`` and at ``steps``. ``obj`` is ``(B, N, N, 1)
    complex64``, what ``train_pinn.eval`` returns for a model; ``target`` is the loss's output
    (``"intensity"``: counts, ``"amplitude"``: their square root)."""
    import tensorflow as tf

    layer_names = {layer.name for layer in model.layers}
    big = "reassemble" in layer_names
    N = int(data.X.shape[1])
    pos = tf.constant(np.asarray(data.coords_relative, np.float32))
    centre = _centre(N)
    ones = np.broadcast_to(centre, data.X.shape).astype(np.complex64)
    support = (tf.abs(model.get_layer("reassemble")([tf.constant(ones), pos])) > 0 if big
               else tf.constant(np.broadcast_to(centre, data.X.shape[:3] + (1,)) > 0))
    support = tf.cast(support, tf.float32)
    probe = np.asarray(data.probe)
    counts = np.square(np.asarray(data.X, np.float64)).sum(axis=(1, 2)).mean()
    a0 = float(np.sqrt(counts / (float(data.intensity_scale) ** 2 * np.sum(np.abs(probe) ** 2))))
    amp = tf.Variable(tf.ones_like(support) * a0)
    phase = tf.Variable(tf.zeros_like(support))
    y = np.asarray(data.X, np.float32)
    y = tf.constant(np.square(y) if target == "intensity" else y)
    layers = [model.get_layer(n) for n in ("probe_illumination", "diffract", "intensity_scaler")]

    def obj_of():
        return tf.complex(amp * support, 0.0) * tf.exp(tf.complex(0.0, phase * support))

    def predicted(o):
        patches = model.get_layer("extract_patches")([o, pos]) if big else o
        a = layers[2](layers[1](layers[0](patches)))
        return tf.square(a) if target == "intensity" else a

    opt = tf.keras.optimizers.Adam(lr)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, predicted(obj_of()))
        grads = tape.gradient(loss, [amp, phase])
        opt.apply_gradients(zip(grads, [amp, phase], strict=True))
        return loss

    def out(o):
        return (model.get_layer("trim_object")(o) if big else o).numpy().astype(np.complex64)

    flat = obj_of()
    yield 0, float(loss_fn(y, predicted(flat))), out(flat)
    for i in range(1, steps + 1):
        loss = float(step())
        if i in REPORT_AT or i == steps:
            yield i, loss, out(obj_of())


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/dose_response_weak.toml", "grid.nphotons=[1e4]")
    ap.add_argument("--steps", type=int, default=400, help="Adam steps (full batch)")
    ap.add_argument("--lr", type=float, default=0.01, help="Adam step size")
    add_threads(ap, 1)
    args = ap.parse_intermixed_args()
    sweep = load_or_exit(args, "direct_fit.py", before=DEFAULT_OVERRIDES)

    from experiments.dose_response import score_patches
    from ptycho import model as model_lib
    from ptycho.losses import get_loss
    from ptycho.simulation import simulate_unit

    limit_threads(args.threads)
    print(f"{'N':>3s} {'gs':>2s} {'nphotons':>8s} {'loss':>9s} {'step':>5s} {'gap':>6s} "
          f"{'amp_ssim':>8s} {'const':>6s} {'frc50':>6s} {'ph_ssim':>7s} {'s':>5s}", flush=True)
    for unit in sweep.plan():
        sim = unit.simulation_config()
        train, test = simulate_unit(unit.model_config(), unit.nphotons, sim)
        data = train if sim.reconstruct == "same" else test
        model = model_lib.build_models(unit.model_config(), probe=data.probe,
                                       intensity_scale=data.intensity_scale).autoencoder
        for loss_name in dict.fromkeys(arm.loss for arm in unit.arms):
            training = unit.training_config(next(a for a in unit.arms if a.loss == loss_name))
            entry = get_loss(loss_name)
            fn = entry.make(unit.nphotons / unit.N**2, training)
            start = time.perf_counter()
            truth_loss = None
            for step_i, loss, obj in direct_fit(model, data, fn, entry.output, args.steps,
                                                args.lr):
                if truth_loss is None:
                    flat_loss = loss
                    truth_loss = _truth_loss(model, data, fn, entry.output)
                m, _ = score_patches(obj, data)
                gap = (flat_loss - loss) / (flat_loss - truth_loss)
                print(f"{unit.N:3d} {unit.gridsize:2d} {unit.nphotons:8.0e} {loss_name:>9s} "
                      f"{step_i:5d} {gap:6.3f} {m['amp_norm_ssim']:8.3f} "
                      f"{m['amp_norm_ssim_baseline']:6.3f} {m['amp_frc50_px']:6.1f} "
                      f"{m['phase_plane_ssim']:7.3f} {time.perf_counter() - start:5.0f}",
                      flush=True)


def _truth_loss(model, data, fn, target: str) -> float:
    """The loss of the true object patches through the same forward path."""
    import tensorflow as tf

    big = "reassemble" in {layer.name for layer in model.layers}
    pos = tf.constant(np.asarray(data.coords_relative, np.float32))
    centre = _centre(int(data.X.shape[1]))
    patches = tf.constant((np.asarray(data.patches) * centre).astype(np.complex64))
    if big:
        patches = model.get_layer("extract_patches")([model.get_layer("reassemble")(
            [patches, pos]), pos])
    a = model.get_layer("intensity_scaler")(model.get_layer("diffract")(
        model.get_layer("probe_illumination")(patches)))
    y = np.asarray(data.X, np.float32)
    if target == "intensity":
        return float(fn(tf.constant(np.square(y)), tf.square(a)))
    return float(fn(tf.constant(y), a))


if __name__ == "__main__":
    main()
