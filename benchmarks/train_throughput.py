"""Training throughput of the physics model against a bare U-Net of the same convolutions.

Prints samples per second for N=64 (default) at gridsize 1 and 2, batch 16, with and without
XLA, timed in alternating rounds in one run, and the ratio physics / bare U-Net (goal >= 0.75).
``--stems none patchify`` measures each U-Net stem (``ModelConfig.stem``) in the same run.

    python benchmarks/train_throughput.py [--N 64] [--samples 512] [--epochs 2] [--repeats 2]
    python benchmarks/train_throughput.py --N 128 --gridsizes 2 --xla off --samples 128 \
        --filters 1 --stems none patchify
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ptycho import model as model_lib  # noqa: E402
from ptycho.config import STEMS, ModelConfig, TrainingConfig  # noqa: E402


def bare_unet(cfg: ModelConfig, jit_compile: bool) -> keras.Model:
    """The same encoder/decoder and heads as the physics model, trained directly on targets."""
    x_in = keras.Input((cfg.N, cfg.N, cfg.C))
    amp, phase = model_lib._unet(x_in, cfg)
    model = keras.Model(x_in, [amp, phase])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=["mae", "mae"],
                  jit_compile=jit_compile)
    return model


def _timed(fit, samples, epochs):
    start = time.perf_counter()
    fit(epochs)
    return samples * epochs / (time.perf_counter() - start)


def measure(N, gridsize, use_xla, samples, epochs, repeats, batch, filters, stem="auto"):
    """Best samples/s of the physics model and of the bare U-Net, timed in alternating rounds
    (the machine is shared: alternation exposes both to the same load), plus the median of the
    per-round ratios."""
    cfg = ModelConfig(N=N, gridsize=gridsize, n_filters_scale=filters, use_xla=use_xla,
                      stem=stem)
    C = cfg.C
    rng = np.random.default_rng(0)
    X = (rng.random((samples, N, N, C)) * 100).astype(np.float32)
    pos = rng.uniform(-3, 3, (samples, 1, 2, C)).astype(np.float32)
    models = model_lib.build_models(cfg, intensity_scale=100.0)
    model_lib.compile_model(models.autoencoder, TrainingConfig(nepochs=1, batch_size=batch),
                            steps_per_epoch=-(-samples // batch))
    y = [np.zeros((samples, 1), np.float32), X, X**2]
    bare = bare_unet(cfg, use_xla)
    half = N // 2 if cfg.pad_object else N
    targets = [np.zeros((samples, half, half, C), np.float32)] * 2

    def physics_fit(e):
        models.autoencoder.fit([X, pos], y, batch_size=batch, epochs=e, verbose=0)

    def bare_fit(e):
        bare.fit(X / 100.0, targets, batch_size=batch, epochs=e, verbose=0)

    physics_fit(1)  # trace / compile and warm up
    bare_fit(1)
    rounds = []
    for _ in range(repeats):
        rounds.append((_timed(physics_fit, samples, epochs), _timed(bare_fit, samples, epochs)))
    physics = max(r[0] for r in rounds)
    bare_rate = max(r[1] for r in rounds)
    ratio = float(np.median([p / b for p, b in rounds]))
    return physics, bare_rate, ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--gridsizes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--filters", type=int, default=2, help="n_filters_scale (PtychoPINN: 2)")
    ap.add_argument("--xla", choices=["both", "on", "off"], default="both")
    ap.add_argument("--stems", nargs="+", default=["auto"], choices=STEMS,
                    help="ModelConfig.stem values to measure (default: auto)")
    args = ap.parse_args(argv)
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    print(f"training throughput, N={args.N}, batch {args.batch}, n_filters_scale "
          f"{args.filters}, {args.samples} samples x {args.epochs} epochs, best of "
          f"{args.repeats}")
    print("physics/s and bare/s: best of the rounds; ratio: median of per-round ratios")
    print(f"{'stem':>8} {'gridsize':>8} {'xla':>5} {'physics/s':>10} {'bare/s':>10} "
          f"{'ratio':>6}")
    for stem in args.stems:
        resolved = ModelConfig(N=args.N, stem=stem).resolved_stem
        for g in args.gridsizes:
            for xla in modes:
                physics, bare, ratio = measure(args.N, g, xla, args.samples, args.epochs,
                                               args.repeats, args.batch, args.filters, stem)
                print(f"{resolved:>8} {g:>8} {str(xla):>5} {physics:>10.1f} {bare:>10.1f} "
                      f"{ratio:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
