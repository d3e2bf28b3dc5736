"""What held-out photons cost per epoch: training with ``training.holdout`` against without.

Simulates the first unit of a sweep file as the default task does, builds its model once, and
trains it (the task's path: ``train_pinn.train`` with the test scan as validation data) for
``--epochs`` epochs with ``holdout = 0`` and with ``--holdout``, in alternating rounds so both
see the same machine. Prints each round's seconds per epoch and the median ratio. The extra
work is one forward pass over the training groups per epoch (their held-out NLL) and a copy of
the weights at each new minimum.

    python benchmarks/holdout_overhead.py [SWEEP] [KEY=VALUE ...] [--epochs 30] [--repeats 3]

(default sweep: ``experiments/dose_response_weak_holdout.toml`` at 1e4 photons, seed 0).
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _args import add_threads, limit_threads, load_or_exit, sweep_parser  # noqa: E402

DEFAULT_OVERRIDES = ("grid.nphotons=[1e4]", "arms.seed=[0]", 'arms.loss=["nll_huber"]')


def main(argv=None) -> int:
    ap = sweep_parser(__doc__, "experiments/dose_response_weak_holdout.toml",
                      "training.batch_size=32")
    ap.add_argument("--epochs", type=int, default=30, help="epochs per timed round (30)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of each (3)")
    ap.add_argument("--holdout", type=float, default=0.1, help="fraction held out (0.1)")
    add_threads(ap, 2)
    args = ap.parse_args(argv)
    sweep = load_or_exit(args, "holdout_overhead.py", before=DEFAULT_OVERRIDES)
    limit_threads(args.threads)

    from ptycho import model as model_lib
    from ptycho import train_pinn
    from ptycho.simulation import simulate_unit

    unit = sweep.plan()[0]
    arm = unit.arms[0]
    model_cfg = unit.model_config()
    train, test = simulate_unit(model_cfg, unit.nphotons, unit.simulation_config())
    models = model_lib.build_models(model_cfg, probe=train.probe,
                                    intensity_scale=train.intensity_scale)
    base = unit.training_config(arm).replace(nepochs=args.epochs, patience=0)
    variants = {"without": base.replace(holdout=0.0), "with": base.replace(holdout=args.holdout)}

    def per_epoch(training) -> float:
        model_lib.reset_weights(models.autoencoder, training.seed)
        result = train_pinn.train(train, model_instance=models.autoencoder, training=training,
                                  validation_data=test)
        return result.train_s / len(result.history["loss"])

    for training in variants.values():  # trace and warm up both paths
        per_epoch(training.replace(nepochs=2))
    print(f"N={unit.N} gridsize={unit.gridsize} nphotons={unit.nphotons:g} "
          f"{train.B} training groups, batch {base.batch_size}, {args.epochs} epochs per round, "
          f"{args.threads} threads, holdout {args.holdout}")
    rounds = []
    for r in range(args.repeats):
        s = {name: per_epoch(t) for name, t in variants.items()}
        rounds.append(s)
        print(f"round {r + 1}: without {s['without']:.3f} s/epoch, with {s['with']:.3f} "
              f"s/epoch, ratio {s['with'] / s['without']:.3f}")
    ratio = statistics.median(s["with"] / s["without"] for s in rounds)
    print(f"median ratio with/without holdout: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
