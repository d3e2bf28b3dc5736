"""aggregate / plot / status on a finished sweep (fake task with plausible metrics)."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, tasks_pythonpath  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.plots import (  # noqa: E402
    dose_response_figure,
    plot_dose_response,
    reconstructions_figure,
    training_curves_figure,
)
from runner.report import aggregate  # noqa: E402
from runner.schema import METRICS  # noqa: E402
from runner.store import COLUMNS  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("PYTHONPATH", tasks_pythonpath())
        runner.run_sweep(sweep_dict(N=(16, 32), nphotons=(1e4, 1e6, 1e8), seed=(0, 1)), out,
                         n_jobs=2, progress=False)
    return out


def test_results_table(finished):
    df = runner.load_results(finished)
    assert len(df) == 24 and set(df["status"]) == {"ok"}
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    # then the declared metrics present, in their declared order, then the rest sorted
    rest = list(df.columns[len(COLUMNS):])
    metrics = [c for c in METRICS if c in rest]
    assert metrics and rest[: len(metrics)] == metrics
    assert rest[len(metrics):] == sorted(rest[len(metrics):])
    parquet = pd.read_parquet(OutputPaths(finished).metrics_parquet)
    assert len(parquet) == 24 and list(parquet.columns) == list(df.columns)
    assert parquet["status"].dtype == "category" and parquet["error"].dtype == "string"


def test_aggregate(finished, capsys):
    assert cli.main(["aggregate", str(finished)]) == 0
    text = capsys.readouterr().out
    for metric in ("amp_psnr", "amp_ssim", "phase_psnr", "phase_ssim", "amp_frc50",
                   "final_loss"):
        assert metric in text
    agg = pd.read_csv(OutputPaths(finished).aggregate_csv)
    assert list(agg.columns) == ["N", "gridsize", "loss", "nphotons", "metric", "mean", "std",
                                 "n_seeds"]
    psnr = agg[agg["metric"] == "amp_psnr"]
    assert len(psnr) == 2 * 2 * 3 and set(psnr["n_seeds"]) == {2}
    row = psnr[(psnr["N"] == 16) & (psnr["loss"] == "nll") & (psnr["nphotons"] == 1e6)]
    assert row["mean"].item() == pytest.approx(10 + 12 + 0.5 + 0.05)  # mean over seeds 0, 1
    _, pivots = aggregate(runner.load_results(finished))
    table = pivots["amp_ssim"]
    assert list(table.columns) == [1e4, 1e6, 1e8] and table.index.names == ["N", "gridsize",
                                                                            "loss"]


def test_plot(finished, capsys):
    assert cli.main(["plot", str(finished)]) == 0
    paths = OutputPaths(finished)
    assert paths.dose_response_png.stat().st_size > 10_000
    assert paths.reconstructions_png.stat().st_size > 10_000
    assert "saved" in capsys.readouterr().out


def test_plot_max_rows_sets_the_reconstruction_panel_rows(finished, monkeypatch):
    import runner.report

    seen = []
    real = runner.report.plot_reconstructions
    monkeypatch.setattr(runner.report, "plot_reconstructions",
                        lambda out, **kw: seen.append(kw) or real(out, **kw))
    assert cli.main(["plot", str(finished), "--max-rows", "2"]) == 0
    assert cli.main(["plot", str(finished)]) == 0
    assert seen == [{"max_rows": 2}, {"max_rows": 12}]
    for bad in ("0", "x"):  # a usage error, before anything is drawn
        assert cli.main(["plot", str(finished), "--max-rows", bad]) == 2
    assert len(seen) == 2


def test_plot_without_artifacts_skips_the_panel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", tasks_pythonpath())
    monkeypatch.setenv("RUNNER_TEST_NO_NPZ", "1")
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(), out, progress=False)
    assert cli.main(["plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reconstructions.png skipped" in text and "training_curves.png skipped" in text
    assert OutputPaths(out).dose_response_png.is_file()
    assert not OutputPaths(out).reconstructions_png.exists()


# -- figures ---------------------------------------------------------------------------------
def _table(failed=(), seeds=(0, 1)) -> pd.DataFrame:
    """A results table of N 16/32 x loss nll/mae x 3 doses x ``seeds``; ``failed``: (N, loss,
    nphotons, seed, status) arms that are not ok (no metrics)."""
    rows = []
    bad = {f[:4]: f[4] for f in failed}
    for n in (16, 32):
        for loss in ("nll", "mae"):
            for p in (1e4, 1e6, 1e8):
                for seed in seeds:
                    status = bad.get((n, loss, p, seed), "ok")
                    q = math.log10(p) / 10 + 0.01 * seed
                    metrics = {} if status != "ok" else {
                        "amp_norm_ssim": q, "amp_norm_ssim_baseline": 0.26,
                        "amp_norm_psnr": 20 * q, "amp_norm_psnr_baseline": 12.0,
                        "amp_frc50_px": 10 / q, "phase_plane_ssim": q,
                        "phase_plane_ssim_baseline": 0.0, "phase_plane_psnr": 18 * q,
                        "phase_plane_psnr_baseline": 11.0, "phase_frc50_px": 8 / q,
                        "amp_norm_r": q, "phase_plane_r": q - 0.1, "final_loss": 1 / q}
                    rows.append({"sweep": "figs", "arm_id": f"{n}{loss}{p:.0e}{seed}",
                                 "unit_id": f"N{n}_{p:.0e}", "N": n, "gridsize": 1,
                                 "nphotons": p, "loss": loss, "seed": seed, "status": status,
                                 "nepochs": 7, "n_train": 99, **metrics})
    return pd.DataFrame(rows)


def _legends(fig) -> list:
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]


def _x_markers(ax) -> set[float]:
    return {float(x) for line in ax.get_lines() if line.get_marker() == "x"
            for x in line.get_xdata()}


def test_dose_response_figure_explains_itself(tmp_path):
    df = _table(failed=[(32, "mae", 1e6, 0, "failed"), (32, "mae", 1e6, 1, "timeout"),
                        (16, "nll", 1e8, 1, "crashed")])
    fig = dose_response_figure(df)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
    assert len(shown) == 10  # SSIM, PSNR, FRC50, r for amplitude and phase; a loss panel each
    assert {ax.get_xlabel() for ax in shown} == {"dose (photons per pattern)"}
    assert {ax.get_xscale() for ax in shown} == {"log"}
    ylabels = {ax.get_ylabel() for ax in shown}
    assert {"SSIM (1 = perfect)", "PSNR (dB)", "FRC50 (pixels, log; lower is better)",
            "Pearson r (constant image: 0)", "nll loss (its own units)",
            "mae loss (its own units)"} == ylabels
    assert sum("FRC" in ax.get_title() for ax in shown) == 2
    for ax in (ax for ax in shown if "correlation" in ax.get_title()):  # constant image: 0
        assert [list(line.get_ydata()) for line in ax.get_lines()
                if line.get_linestyle() == "--"] == [[0.0, 0.0]]
        assert len([line for line in ax.get_lines() if line.get_marker() == "o"]) == 2
    # one legend, outside the data panels; colours for N / gridsize, styles for the losses
    (legend,) = _legends(fig)
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:4] == ["N=16, gridsize 1", "N=32, gridsize 1", "loss: mae", "loss: nll"]
    assert any(label.startswith("constant image (baseline)") for label in labels)
    assert any("failed / timed out" in label for label in labels)
    assert legend.axes not in shown
    # failed points: an x at their dose on the bottom edge and a gap in the line
    ssim = shown[0]
    assert ssim.get_title().startswith("amplitude SSIM")
    assert _x_markers(ssim) == {1e6, 1e8}
    gaps = [line for line in ssim.get_lines() if line.get_marker() == "o"
            and np.isnan(np.asarray(line.get_ydata(), float)).any()]
    assert len(gaps) == 1 and list(gaps[0].get_xdata()) == [1e4, 1e6, 1e8]
    assert sum(line.get_linestyle() == "--" for line in ssim.get_lines()) == 2  # baselines
    assert ssim.containers  # error bars: two seeds
    note = fig.get_supxlabel()
    for part in ("sweep figs", "7 epochs", "n_train 99", "2 seeds (0, 1)", "std over seeds"):
        assert part in note, part
    # one seed: no error bars; no failure: no x and no failure entry in the legend
    fig = dose_response_figure(_table(seeds=(0,)))
    assert not any(ax.containers for ax in fig.axes) and "one seed each" in fig.get_supxlabel()
    assert not any(_x_markers(ax) for ax in fig.axes)
    assert not any("failed" in t.get_text() for t in _legends(fig)[0].get_texts())


def test_caption_says_when_points_average_different_numbers_of_seeds():
    """A study grown with more seeds at some doses: the caption must not claim every point is
    a mean over all seeds."""
    df = _table(seeds=(0, 1, 2))
    df = df[(df["seed"] == 0) | (df["nphotons"] == 1e4)]  # 3 seeds at 1e4, one elsewhere
    note = dose_response_figure(df).get_supxlabel()
    assert "mean over 1-3 seeds" in note and "differs between points" in note, note
    # a failed seed leaves 2 of 3 ok at one point: that point averages 2
    df = _table(seeds=(0, 1, 2), failed=[(16, "nll", 1e4, 2, "failed")])
    note = dose_response_figure(df).get_supxlabel()
    assert "mean over 2-3 seeds" in note, note


def test_a_metric_only_some_arms_have_says_so_on_its_panel():
    """A study whose older arms were recorded before a column (``amp_norm_r``): its panel
    averages fewer arms than the others and says how many; complete panels say nothing."""
    df = _table(seeds=(0, 1))
    df.loc[df["seed"] == 0, "amp_norm_r"] = np.nan
    fig = dose_response_figure(df)
    notes = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in fig.axes}
    assert notes["amplitude: correlation with the truth"] == [
        "from 12 of 24 ok arms\n(the others were recorded without amp_norm_r)"]
    assert notes["phase: correlation with the truth"] == []
    assert notes["amplitude SSIM (amplitude / its mean)"] == []


def test_a_baseline_at_one_dose_is_still_drawn():
    """A configuration with a single dose (e.g. a partial study) still shows its baseline."""
    df = _table(seeds=(0,))
    df = df[(df["N"] == 16) | (df["nphotons"] == 1e8)]  # N=32 has one dose left
    ssim = dose_response_figure(df).axes[0]
    baselines = [line for line in ssim.get_lines() if line.get_linestyle() == "--"]
    assert len(baselines) == 2
    single = [line for line in baselines if len(line.get_xdata()) == 1]
    assert len(single) == 1 and single[0].get_marker() == "_"
    assert list(single[0].get_ydata()) == [0.26]


def test_footnote_falls_back_to_the_sweep_file(tmp_path):
    df = _table(seeds=(3,)).drop(columns=["nepochs", "n_train"])
    toml = tmp_path / "sweep.toml"
    toml.write_text("[training]\nnepochs = 12\n[simulation]\nn_train = 64\n")
    note = dose_response_figure(df, toml).get_supxlabel()
    assert "12 epochs" in note and "n_train 64 groups" in note and "seed 3" in note
    out = plot_dose_response(df, tmp_path / "dose.png")  # sweep.toml beside it by default
    assert out.stat().st_size > 10_000


def test_reconstruction_figure_has_truth_scores_and_colour_bars(finished):
    fig = reconstructions_figure(finished)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.count("ground truth\namplitude") == 4 and titles.count("ground truth\nphase") == 4
    scored = [t for t in titles if t.startswith(("amplitude, 1e+06", "phase, 1e+06"))]
    assert len(scored) == 8 and all("SSIM" in t and "dB" in t and "FRC50" in t for t in scored)
    bars = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert sorted(bars) == ["amplitude"] * 4 + ["phase (rad)"] * 4  # one of each per row
    assert not _legends(fig) and "sweep t" in fig.get_supxlabel()
    assert "rows" not in fig._suptitle.get_text()
    # rows left out are said, not silently dropped
    fig = reconstructions_figure(finished, max_rows=3)
    assert fig._suptitle.get_text().endswith("the first 3 of 4 rows")


def test_reconstruction_figure_marks_arms_not_run(finished, tmp_path):
    """A partial sweep: the missing arm's cells say "not run" and carry no score line."""
    out = tmp_path / "partial"
    shutil.copytree(finished, out)
    df = runner.load_results(out)
    gone = df[(df["N"] == 16) & (df["loss"] == "nll") & (df["nphotons"] == 1e6)]
    for arm_id in gone["arm_id"]:
        OutputPaths(out).record(arm_id).unlink()
    fig = reconstructions_figure(out)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("not run") == 2  # its amplitude and phase cells
    titles = [ax.get_title() for ax in fig.axes]
    # only the missing arm's cells are bare; the others at that dose carry their scores
    assert titles.count("amplitude, 1e+06 ph") == 1 and titles.count("phase, 1e+06 ph") == 1
    assert sum(t.startswith("amplitude, 1e+06 ph\nSSIM") for t in titles) == 3


@pytest.mark.parametrize("width", [4.5, 6.4, 14.0])
def test_captions_wrap_to_the_figure_width(width):
    """A sweep with one dose draws a narrow reconstruction figure: its long caption must wrap,
    not run off the right edge."""
    import matplotlib.pyplot as plt

    from runner.plots.common import _caption

    fig = plt.figure(figsize=(width, 3))
    extra = "titles: " + "a long explanation of every score in the panel titles, " * 4
    _caption(fig, _table(seeds=(0,)), None, extra)
    fig.canvas.draw()
    caption = fig._supxlabel.get_window_extent()
    assert caption.x0 >= 0 and caption.x1 <= fig.bbox.x1
    plt.close(fig)


def test_training_curves(tmp_path, finished, capsys):
    from runner.store import history_frame

    out = tmp_path / "with_history"
    shutil.copytree(finished, out)
    records = [{"arm_id": f"a{n}{loss}{p}", "sweep": "t", "N": n, "gridsize": 1, "nphotons": p,
                "loss": loss, "seed": 0,
                "history": [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e}
                            for e in range(1, 6)]}
               for n in (16, 32) for loss in ("nll", "mae") for p in (1e4, 1e8)]
    history_frame(records).to_parquet(OutputPaths(out).history_parquet)
    fig = training_curves_figure(out)
    assert len(fig.axes) == 4  # loss (rows) x N / gridsize (columns)
    for ax in fig.axes:
        assert ax.get_yscale() == "log" and len(ax.get_lines()) == 4  # 2 doses x train/val
        assert ax.get_title().startswith("N=") and "loss" in ax.get_title()
    assert {ax.get_xlabel() for ax in fig.axes} == {"epoch", ""}
    (legend,) = _legends(fig)
    assert [t.get_text() for t in legend.get_texts()][-2:] == [
        "training loss", "validation loss\n(the test scan)"]
    assert cli.main(["plot", str(out)]) == 0
    assert OutputPaths(out).training_curves_png.stat().st_size > 10_000
    assert f"saved {OutputPaths(out).training_curves_png}" in capsys.readouterr().out
    assert training_curves_figure(finished) is None  # the fake task keeps no history


def test_training_curves_show_the_held_out_photons_and_the_epoch_scored(tmp_path, finished):
    import matplotlib.pyplot as plt

    from runner.store import history_frame

    out = tmp_path / "with_holdout"
    shutil.copytree(finished, out)
    curve = [5, 4, 3, 3.5, 4]  # minimum at epoch 3
    records = [{"arm_id": f"a{loss}{p}", "sweep": "t", "N": 16, "gridsize": 1, "nphotons": p,
                "loss": loss, "seed": 0,
                "history": [{"epoch": e, "train_loss": 1 / e, "holdout_loss": curve[e - 1] * p}
                            for e in range(1, 6)]}
               for loss in ("nll", "mae") for p in (1e4, 1e8)]
    history_frame(records).to_parquet(OutputPaths(out).history_parquet)
    fig = training_curves_figure(out)
    assert len(fig.axes) == 3  # two losses and the held-out row, one N / gridsize
    held = fig.axes[-1]
    assert held.get_title() == "held-out photons (Poisson NLL)" and held.get_yscale() == "log"
    lines = held.get_lines()
    assert len(lines) == 8  # 2 losses x 2 doses, each a curve and its minimum
    dots = [ln for ln in lines if ln.get_marker() == "o"]
    assert sorted(float(d.get_xdata()[0]) for d in dots) == [3.0] * 4
    # one style per loss, never the validation loss's dashes of the rows above
    assert {ln.get_linestyle() for ln in lines if ln not in dots} == {"-", ":"}
    (legend,) = _legends(fig)
    texts = [t.get_text() for t in legend.get_texts()]
    assert "held-out photons, mae" in texts and texts[-1] == "epoch scored (minimum)"
    plt.close(fig)


def test_dose_response_when_every_arm_failed():
    df = _table(seeds=(0,))[["sweep", "arm_id", "unit_id", "N", "gridsize", "nphotons", "loss",
                             "seed"]].assign(status="timeout")
    fig = dose_response_figure(df)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
    assert len(shown) == 10 and all(_x_markers(ax) == {1e4, 1e6, 1e8} for ax in shown)
    assert "no value of amp_norm_ssim" in [t.get_text() for t in shown[0].texts]


def test_a_dose_not_run_for_a_line_is_a_gap_not_a_straight_segment():
    """A partly run (or grown) sweep: N=32's nll line has 1e4 and 1e8 only while the others
    have 1e6 too; it must not be drawn as if 1e6 lay on the straight segment between them."""
    df = _table()
    df = df[~((df["N"] == 32) & (df["loss"] == "nll") & (df["nphotons"] == 1e6))]
    fig = dose_response_figure(df)
    ssim = next(ax for ax in fig.axes if ax.get_title().startswith("amplitude SSIM"))
    lines = [line for line in ssim.get_lines() if line.get_marker() in ("o", "s")]
    partial = [line for line in lines
               if np.isnan(np.asarray(line.get_ydata(), float)).sum() == 1]
    assert len(partial) == 1 and list(partial[0].get_xdata()) == [1e4, 1e6, 1e8]
    assert np.isnan(np.asarray(partial[0].get_ydata(), float)[1])


@pytest.mark.parametrize("lo, hi", [(0.1015, 0.1037), (0.034, 0.042), (1e-4, 1.0)])
def test_log_axis_tick_labels_are_distinct_on_narrow_and_wide_spans(lo, hi):
    import matplotlib.pyplot as plt

    from runner.plots.common import _log_y

    fig, ax = plt.subplots()
    ax.plot([0, 1], [lo, hi])
    _log_y(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)
              if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    plt.close(fig)
