"""The default task through the runner on a tiny unit: the scoring columns, the training
history table and the per-epoch log lines users rely on."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import run_cli, sweep_dict, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.schema import ARM_SETTINGS  # noqa: E402


def test_default_task_records_scores_baselines_and_history(tmp_path):
    sweep = sweep_dict(task="experiments.dose_response:run_unit", name="tiny",
                       N=(16,), gridsize=(2,), nphotons=(1e6,), loss=("nll", "mae"),
                       timeout_s=600, model={"n_filters_scale": 1, "offset": 2},
                       simulation={"object_size": 64, "n_train": 20, "n_test": 9,
                                   "scan": "grid"},
                       training={"nepochs": 3, "batch_size": 8, "lr_schedule": "cosine"})
    out = tmp_path / "out"
    proc = run_cli("run", write_sweep(tmp_path / "tiny.toml", sweep), "--out", out,
                   "--n-jobs", "1", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    df = runner.load_results(out)
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    for col in ("amp_norm_ssim", "amp_norm_ssim_baseline", "amp_norm_psnr_baseline",
                "phase_plane_ssim", "phase_plane_ssim_baseline", "amp_frc50_px",
                "amp_norm_ssim_illum", "amp_frc50_px_illum", "phase_plane_ssim_illum",
                "amp_ssim", "final_loss", "final_val_loss"):
        assert df[col].notna().all(), col
    for col in ("holdout_loss", "best_epoch"):  # no photons held out: nothing to say
        assert df[col].isna().all(), col
    assert set(df["reconstruct"]) == {"same"}
    assert (df["nepochs"] == 3).all() and set(df["lr_schedule"]) == {"cosine"}
    assert (df["realspace_weight"] == 0.0).all() and (df["complex_tv_weight"] == 0.0).all()
    assert "history" not in df.columns  # the history has its own table
    from runner.resources import thread_counts  # the one place the thread budget is decided

    intra, inter = thread_counts(1)
    assert set(df["tf_intra_threads"]) == {intra} and set(df["tf_inter_threads"]) == {inter}

    paths = OutputPaths(out)
    hist = pd.read_parquet(paths.history_parquet)
    assert len(hist) == 2 * 3
    # which arm, the settings that may tell arms of one unit apart, then the epoch
    lead = ["sweep", "arm_id", "N", "gridsize", "nphotons", "loss", "seed", *ARM_SETTINGS,
            "epoch"]
    assert list(hist.columns[:len(lead)]) == lead
    assert (hist["realspace_weight"] == 0.0).all() and (hist["nepochs"] == 3).all()
    for arm_id, grp in hist.groupby("arm_id"):
        assert list(grp["epoch"]) == [1, 2, 3]
        assert grp["lr"].is_monotonic_decreasing and grp["lr"].iloc[0] > grp["lr"].iloc[-1]
        assert (grp["epoch_s"] > 0).all() and grp["val_loss"].notna().all()
        final = df.set_index("arm_id").loc[arm_id, "final_loss"]
        assert grp["train_loss"].iloc[-1] == final
    assert paths.history_csv.is_file()
    log = next(paths.units_dir.glob("*/worker.log")).read_text()
    assert log.count("epoch 3/3") == 2 and "val_loss=" in log


def test_history_frame_keeps_identity_and_orders_epochs():
    from runner.store import history_frame

    base = {"sweep": "s", "N": 16, "gridsize": 1, "nphotons": 1e4, "seed": 0}
    recs = [{**base, "arm_id": "b", "loss": "mae",
             "history": [{"epoch": 2, "train_loss": 1.0}, {"epoch": 1, "train_loss": 2.0}]},
            {**base, "arm_id": "a", "loss": "nll", "history": [{"epoch": 1, "loss": 5.0}]},
            {**base, "arm_id": "c", "loss": "nll"}]  # a failed arm: no history
    df = history_frame(recs)
    assert list(zip(df["arm_id"], df["epoch"], strict=True)) == [("b", 1), ("b", 2), ("a", 1)]
    assert list(df["loss"]) == ["mae", "mae", "nll"]  # the name, never an epoch's value
    assert df.loc[df["arm_id"] == "a", "epoch_loss"].item() == 5.0
    assert history_frame([]).empty


def test_default_task_with_holdout_scores_the_best_epoch_and_records_it(tmp_path):
    """``training.holdout``: each arm is scored at the epoch whose intensities best predict
    the held-out photons; the record says which (``best_epoch``), its held-out loss, how many
    epochs ran and the fraction held out; the history and the log carry the held-out loss."""
    sweep = sweep_dict(task="experiments.dose_response:run_unit", name="held",
                       N=(16,), gridsize=(2,), nphotons=(1e4,), loss=("nll", "mae"),
                       timeout_s=600, model={"n_filters_scale": 1, "offset": 2},
                       simulation={"object_size": 64, "n_train": 16, "n_test": 9,
                                   "scan": "grid"},
                       training={"nepochs": 8, "batch_size": 8, "holdout": 0.2,
                                 "patience": 3, "learning_rate": 0.01})
    out = tmp_path / "out"
    proc = run_cli("run", write_sweep(tmp_path / "held.toml", sweep), "--out", out,
                   "--n-jobs", "1", "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    df = runner.load_results(out).set_index("arm_id")
    assert len(df) == 2 and set(df["status"]) == {"ok"} and (df["holdout"] == 0.2).all()
    assert str(df["best_epoch"].dtype) == "Int64"
    hist = pd.read_parquet(OutputPaths(out).history_parquet)
    for arm_id, grp in hist.groupby("arm_id"):
        rec = df.loc[arm_id]
        assert len(grp) == rec["epochs_run"] <= 8
        best = int(grp["holdout_loss"].to_numpy().argmin()) + 1
        assert rec["best_epoch"] == best
        assert rec["epochs_run"] == 8 or rec["epochs_run"] - best == 3  # patience
        assert rec["final_loss"] == grp["train_loss"].iloc[best - 1]
        assert rec["final_val_loss"] == grp["val_loss"].iloc[best - 1]
        assert rec["holdout_loss"] == grp["holdout_loss"].min()
    log = next(OutputPaths(out).units_dir.glob("*/worker.log")).read_text()
    assert "holdout_loss=" in log and "held-out photons: restored epoch" in log


def test_illumination_weighted_stitching_averages_what_the_windows_do_not():
    """The ``*_illum`` scores stitch each patch's central N/2 window weighted by its
    illumination: the true patches score as the truth, and noise independent per patch is
    averaged down where the N/4 windows (which tile without overlap) keep all of it."""
    import numpy as np

    from experiments.dose_response import ILLUM_SCORES, score_patches
    from ptycho.config import ModelConfig, SimulationConfig
    from ptycho.simulation import simulate_unit

    data, _ = simulate_unit(ModelConfig(N=32, gridsize=1), 1e6,
                            SimulationConfig(object_size=96, n_train=64, scan="grid"))
    truth = data.patches[..., :1]
    exact, arrays = score_patches(truth, data)
    assert {"amplitude_illum", "phase_illum"} <= set(arrays)
    assert arrays["amplitude_illum"].shape == arrays["true_amplitude"].shape
    for key in ("amp_norm_ssim", "phase_plane_ssim"):
        assert exact[key] > 0.99 and exact[f"{key}_illum"] > 0.99, (key, exact)
    assert set(ILLUM_SCORES) <= set(exact) and all(f"{k}_illum" in exact for k in ILLUM_SCORES)
    from runner.schema import METRICS  # the columns the task writes are the ones declared

    assert {k for k in exact if k.endswith("_illum")} == {k for k in METRICS
                                                           if k.endswith("_illum")}
    assert {"amp_norm_r", "phase_plane_r"} <= set(exact) & set(METRICS)
    assert exact["amp_norm_r"] > 0.99 and exact["phase_plane_r"] > 0.99, exact
    noise = np.random.default_rng(0).normal(0, 0.05, truth.shape)
    noisy, _ = score_patches((truth * (1 + noise)).astype(np.complex64), data)
    assert noisy["amp_norm_ssim_illum"] > noisy["amp_norm_ssim"] + 0.03, noisy  # 0.84, 0.80
    assert noisy["amp_norm_ssim_baseline"] < noisy["amp_norm_ssim"]
