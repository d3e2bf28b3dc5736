"""What the amplitude MAE asks for at low dose: the median of the counts, not their mean.

A diagnostic of docs/quality.md (round 8). The amplitude MAE ``|A - sqrt(y)|`` is minimised,
pixel by pixel, by the median of ``sqrt(y)``, i.e. ``sqrt(median(y))``, and the median of a
Poisson count of mean ``lam`` is 0 whenever ``lam < ln 2``. The Poisson NLL is minimised by
the mean, ``A**2 = lam``, at every dose. For the training scan of one unit of a sweep file
(default: the ``N = 64``, gridsize 2 units of ``experiments/dose_response_n64_auto.toml``) it
takes the noiseless expected counts ``lam`` of every pixel (no training, no noise: the exact
Poisson medians from ``scipy.stats.poisson``) and prints, per dose, the fraction of pixels and of
expected photons where the median is 0, and the energy of the MAE's per-pixel optimum,
``sum(median(y)) / sum(lam)`` (1 = unbiased). A model cannot choose pixels freely: its
amplitudes are those of an object. So it also draws one set of Poisson counts and scans the
truth's amplitudes scaled by ``s`` in [0, 1.5] through every loss of ``ptycho.losses.LOSSES``:
the ``s`` each loss likes best (1.00 = the truth is its best fit in this family, 0.00 = the
all-dark image is), and for the MAE the loss of the all-dark image over that of the truth
(< 1: it prefers no object at all). Last, the loss of the truth low-passed by a
Gaussian of ``BLUR_PX`` pixels over that of the truth, for the MAE and the NLL (< 1: the loss
prefers a blurred object). About a minute.

    python benchmarks/low_dose_median.py [SWEEP] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from scipy.stats import poisson  # noqa: E402

from runner.sweep import load_sweep  # noqa: E402

DOSES = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e9)
SCALES = np.linspace(0.0, 1.5, 151)
BLUR_PX = 2.0  # the low-passed truth: the lines' width at N = 64


def intensities(patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """``(P, N, N)`` far-field intensities of ``(P, N, N)`` patches under ``probe``: the
    simulation's own forward model (``ptycho.diffsim.diffract``), squared."""
    from ptycho.diffsim import diffract

    return diffract(probe * patches).astype(np.float64) ** 2


def blurred(patches: np.ndarray, sigma: float) -> np.ndarray:
    """``(P, N, N)`` complex patches, each low-passed by a Gaussian of ``sigma`` pixels."""
    return (gaussian_filter(patches.real, (0, sigma, sigma))
            + 1j * gaussian_filter(patches.imag, (0, sigma, sigma)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", nargs="?",
                    default=str(ROOT / "experiments" / "dose_response_n64_auto.toml"))
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_intermixed_args()
    sweep = load_sweep(args.sweep, overrides=["grid.nphotons=[1e9]", *args.overrides])
    unit = sweep.plan()[0]

    from ptycho.simulation import simulate_unit

    train, _ = simulate_unit(unit.model_config(), unit.nphotons, unit.simulation_config())
    patches = np.moveaxis(np.asarray(train.patches), 3, 1).reshape(-1, train.N, train.N)
    print(f"N={unit.N} gridsize={unit.gridsize}: {patches.shape[0]} patterns of the training "
          f"scan; per dose, where the median count is 0 (lam < ln 2) and the MAE's optimum")
    from ptycho.config import TrainingConfig
    from ptycho.losses import LOSSES

    names = [n for n in LOSSES if n != "mae_nll"]  # mae_nll starts as the MAE
    print(f"{'':9} {'median 0 on':^17} {'per-pixel MAE':>14}  best scale s of the truth")
    print(f"{'photons':>9} {'pixels':>8} {'photons':>8} {'optimum energy':>14}  "
          + " ".join(f"{n:>9}" for n in names) + f"  MAE dark / truth  blur {BLUR_PX:g} px / "
          f"truth: MAE    NLL")
    probe = np.asarray(train.probe)
    sharp = intensities(patches, probe)
    soft = intensities(blurred(patches, BLUR_PX), probe)
    per_photon = 1.0 / sharp.sum(axis=(1, 2)).mean()  # one instrument scale for both
    rng = np.random.default_rng(0)
    for dose in DOSES:
        lam = (sharp * (dose * per_photon)).reshape(1, -1)
        lam_soft = (soft * (dose * per_photon)).reshape(1, -1).astype(np.float32)
        dark = lam < np.log(2)
        y = rng.poisson(lam).astype(np.float32)
        best, mae, ratio = [], None, {}
        for name in names:
            loss = LOSSES[name]
            fn = loss.make(dose / unit.N**2, TrainingConfig())
            if loss.output == "amplitude":
                vals = [float(fn(np.sqrt(y), s * np.sqrt(lam, dtype=np.float32)))
                        for s in SCALES]
                mae = vals if name == "mae" else mae
                soft_val = float(fn(np.sqrt(y), np.sqrt(lam_soft)))
            else:
                vals = [float(fn(y, (s * s * lam).astype(np.float32))) for s in SCALES]
                soft_val = float(fn(y, lam_soft))
            one = int(np.argmin(np.abs(SCALES - 1.0)))
            ratio[name] = soft_val / vals[one]
            best.append(SCALES[int(np.argmin(vals))])
        print(f"{dose:9.0e} {dark.mean():8.1%} {lam[dark].sum() / lam.sum():8.1%} "
              f"{poisson.median(lam).sum() / lam.sum():14.3f}  "
              + " ".join(f"{b:9.2f}" for b in best) + f"  {mae[0] / mae[one]:16.3f}"
              f"  {ratio['mae']:16.3f} {ratio['nll']:6.3f}")


if __name__ == "__main__":
    main()
