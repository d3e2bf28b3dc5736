"""Dead units: per hidden layer of the U-Net, how many channels still fire, at initialisation and
after a few epochs of training.

A diagnostic of docs/quality.md (round 11). It takes the first unit and arm of a sweep file,
simulates its data and trains the model as the default task does (the arm's loss, learning-rate
schedule and seed) for ``--epochs`` epochs of its schedule, then feeds ``--samples`` training
samples through the network and prints, per hidden convolution, the fraction of activations
above zero and the channels that fire for at least one of them. A ReLU channel that fires for
no input passes no gradient: it is dead for good. One process, about a minute at ``N = 64``.

    python benchmarks/dead_units.py [SWEEP] [KEY=VALUE ...] [--epochs 15] [--samples 32]

e.g. ``'simulation.amp_contrast=0.1' 'model.activation="leaky_relu"'`` (default sweep:
``experiments/dose_response_weak.toml``, its gridsize-2 unit at 1e9 photons).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _args import add_threads, limit_threads, load_or_exit, sweep_parser  # noqa: E402

DEFAULT_OVERRIDES = ("grid.gridsize=[2]", "grid.nphotons=[1e9]")


def firing(model, X, positions) -> dict[str, tuple[float, int, int]]:
    """``{layer: (fraction of activations > 0, channels firing for some input, channels)}`` of
    every hidden convolution (the heads excluded)."""
    import keras

    names = [layer.name for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D) and not layer.name.endswith("_head")]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe([X, positions])
    result = {}
    for name, out in zip(names, outs, strict=True):
        on = np.asarray(out) > 0
        per_channel = on.reshape(-1, on.shape[-1]).any(axis=0)
        result[name] = (float(on.mean()), int(per_channel.sum()), int(on.shape[-1]))
    return result


def main() -> None:
    ap = sweep_parser(__doc__, "experiments/dose_response_weak.toml",
                      "simulation.amp_contrast=0.1")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the arm's schedule")
    ap.add_argument("--samples", type=int, default=32, help="training samples to probe with")
    add_threads(ap, 2)
    args = ap.parse_intermixed_args()
    sweep = load_or_exit(args, "dead_units.py", before=DEFAULT_OVERRIDES)
    import keras

    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.simulation import simulate_unit

    limit_threads(args.threads)
    unit = sweep.plan()[0]
    arm = unit.arms[0]
    training = unit.training_config(arm)
    train, _ = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
    ae = model_lib.build_models(unit.model_config(), probe=train.probe,
                                intensity_scale=train.intensity_scale).autoencoder
    model_lib.reset_weights(ae, training.seed)
    X = train.X[:args.samples]
    pos = train.coords_relative[:args.samples]
    before = firing(ae, X, pos)

    class StopAfter(keras.callbacks.Callback):  # keep the schedule of the full run
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= args.epochs:
                self.model.stop_training = True

    result = train_pinn.train(train, model_instance=ae, training=training,
                              callbacks=[StopAfter()])
    after = firing(ae, X, pos)
    sim = unit.simulation_config()
    print(f"N={unit.N} gridsize={unit.gridsize} {unit.nphotons:.0e} photons, {arm.loss}, "
          f"activation {unit.model_config().activation}, amp_contrast {sim.amp_contrast}: "
          f"loss {result.history['loss'][-1]:.5g} after {args.epochs} epochs")
    print(f"{'layer':14s} {'>0 init':>8s} {'>0 now':>8s} {'firing channels init -> now':>30s}")
    for name, (f0, c0, n) in before.items():
        f1, c1, _ = after[name]
        print(f"{name:14s} {f0:8.3f} {f1:8.3f} {f'{c0} -> {c1} of {n}':>30s}")


if __name__ == "__main__":
    main()
