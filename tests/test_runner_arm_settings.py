"""Training settings varied between the arms of one unit (``[arms] realspace_weight = [0,
0.3]``): expansion and ids, validation, growing a directory, the records, the tables and the
choice by held-out photons (runner.series)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, use_tasks, write_sweep  # noqa: E402

import runner  # noqa: E402
from runner import cli  # noqa: E402
from runner.outdir import check_output_dir  # noqa: E402
from runner.paths import OutputPaths  # noqa: E402
from runner.plots import dose_response_figure  # noqa: E402
from runner.report import aggregate, chosen_text  # noqa: E402
from runner.schema import ARM_SETTINGS, PROVENANCE_SETTINGS  # noqa: E402
from runner.series import CHOSEN, choose_by_holdout, with_series  # noqa: E402
from runner.store import load_results  # noqa: E402
from runner.sweep import SweepError, load_sweep  # noqa: E402
from runner.unit import Unit  # noqa: E402


@pytest.fixture(autouse=True)
def _tasks_on_path(monkeypatch):
    use_tasks(monkeypatch)


def _arms(sweep):
    return {(a.loss, a.seed, dict(a.settings).get("realspace_weight")): a.arm_id
            for u in load_sweep(sweep).plan() for a in u.arms}


def test_every_arm_setting_is_a_recorded_training_setting():
    assert {"realspace_weight", "complex_tv_weight"} <= set(ARM_SETTINGS)
    assert all(PROVENANCE_SETTINGS[k] == ("training", k) for k in ARM_SETTINGS)


def test_a_setting_list_multiplies_the_arms_and_each_keeps_its_fixed_setting_id():
    varied = load_sweep(sweep_dict(arms={"realspace_weight": [0, 0.3]}, seed=(0, 1)))
    assert varied.arms_per_unit == 8 and varied.n_arms == 8
    (unit,) = varied.plan()
    assert len({a.arm_id for a in unit.arms}) == 8
    for arm in unit.arms:  # the task trains with the arm's value
        assert unit.training_config(arm).realspace_weight == dict(arm.settings)[
            "realspace_weight"]
        assert Unit.from_dict(unit.to_dict()).arm(arm.arm_id) == arm  # through unit.json
    ids = _arms(sweep_dict(arms={"realspace_weight": [0, 0.3]}, seed=(0, 1)))
    plain = _arms(sweep_dict(seed=(0, 1)))  # the default, 0: the same arms
    fixed = _arms(sweep_dict(seed=(0, 1), training={"realspace_weight": 0.3}))
    assert {k[:2]: v for k, v in ids.items() if k[2] == 0.0} == {k[:2]: v for k, v in
                                                                 plain.items()}
    assert {k[:2]: v for k, v in ids.items() if k[2] == 0.3} == {k[:2]: v for k, v in
                                                                 fixed.items()}
    # the text written to the output directory loads back to the same arms
    assert _arms(load_sweep(varied.to_dict())) == ids


@pytest.mark.parametrize("arms, training, key, says", [
    ({"realspace_weight": [-1]}, {}, "arms.realspace_weight", ">= 0"),
    ({"realspace_weight": 0.3}, {}, "arms.realspace_weight", "must be a list"),
    ({"realspace_weight": [0.3]}, {"realspace_weight": 0.1}, "arms.realspace_weight",
     "also set in [training]"),
    ({"realspace_weight": [0, 0.0]}, {}, "arms.realspace_weight", "duplicate"),
    ({"nepochs": [1.5]}, {}, "arms.nepochs", "1.5"),
    ({"lr_schedule": ["constant"]}, {}, "arms", "lr_schedule"),
])
def test_bad_arm_settings_are_named_before_anything_runs(arms, training, key, says):
    with pytest.raises(SweepError) as exc:
        load_sweep(sweep_dict(arms=arms, training=training))
    assert any(p.key.startswith(key) and says in p.text for p in exc.value.problems), \
        exc.value.errors


def test_a_directory_of_one_weight_grows_into_the_weight_axis(tmp_path, capsys):
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll",),
                                training={"realspace_weight": 0.3}), out, progress=False)
    one = set(load_results(out)["arm_id"])
    grown = load_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll",),
                                  arms={"realspace_weight": [0, 0.3]}))
    assert check_output_dir(grown, out) == grown
    runner.run_sweep(grown, out, progress=False)
    df = load_results(out)
    assert len(df) == 2 and one < set(df["arm_id"])  # the 0.3 arm did not run again
    # the original command still fits the directory, which keeps the axis
    assert cli.main(["run", str(write_sweep(tmp_path / "one.toml", sweep_dict(
        task="runner_tasks:prior_task", loss=("nll",), training={"realspace_weight": 0.3}))),
        "--out", str(out), "--no-progress"]) == 0
    assert dict(load_sweep(OutputPaths(out).sweep_toml).arm_settings) == {
        "realspace_weight": (0.0, 0.3)}
    # a sweep fixing another weight joins the axis
    other = write_sweep(tmp_path / "other.toml", sweep_dict(
        task="runner_tasks:prior_task", loss=("nll",), training={"realspace_weight": 1.0}))
    assert cli.main(["run", str(other), "--out", str(out), "--no-progress"]) == 0
    assert sorted(load_results(out)["realspace_weight"]) == [0.0, 0.3, 1.0]
    assert dict(load_sweep(OutputPaths(out).sweep_toml).arm_settings) == {
        "realspace_weight": (0.0, 0.3, 1.0)}
    # where no sweep lists it, another fixed weight is refused, saying how to run it beside
    fresh = tmp_path / "fresh"
    runner.run_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll",)), fresh,
                     progress=False)
    capsys.readouterr()
    assert cli.main(["run", str(other), "--out", str(fresh)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.realspace_weight = 1.0 here but 0.0 there" in err[0]
    assert "arms.realspace_weight = [...]" in err[0]


def test_a_directory_with_one_axis_grows_a_second_without_the_combinations(tmp_path):
    """A weight axis, then another prior's weight run beside it with the first at 0 only:
    the directory keeps every arm, plans both axes, and the ids of the first stay."""
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll",),
                                arms={"realspace_weight": [0, 0.3]}), out, progress=False)
    first = set(load_results(out)["arm_id"])
    assert cli.main(["run", str(write_sweep(tmp_path / "complex.toml", sweep_dict(
        task="runner_tasks:prior_task", loss=("nll",), arms={"complex_tv_weight": [0.3]}))),
        "--out", str(out), "--no-progress"]) == 0
    df = load_results(out)
    assert len(df) == 3 and first < set(df["arm_id"])
    table, varied = with_series(df)  # a weight the task leaves unset reads as its default, 0
    assert varied == ["realspace_weight", "complex_tv_weight"]
    assert sorted(zip(table["realspace_weight"], table["complex_tv_weight"], strict=True)) == [
        (0.0, 0.0), (0.0, 0.3), (0.3, 0.0)]
    assert dict(load_sweep(OutputPaths(out).sweep_toml).arm_settings) == {
        "realspace_weight": (0.0, 0.3), "complex_tv_weight": (0.0, 0.3)}
    assert len(choose_by_holdout(df)) == 1  # three candidates, one choice
    assert "2 values, comma-separated, per seed" in chosen_text(df)
    assert "0.3,0" in chosen_text(df)  # prior_task prefers realspace_weight 0.3 at 1e4


@pytest.fixture(scope="module")
def prior_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "out"
    with pytest.MonkeyPatch.context() as m:
        use_tasks(m)
        runner.run_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll", "mae"),
                                    nphotons=(1e4, 1e8), seed=(0, 1),
                                    arms={"realspace_weight": [0, 0.1, 0.3]}),
                         out, progress=False)
    return out


def test_each_record_names_the_weight_its_arm_trained_with(prior_study):
    df = load_results(prior_study)
    assert len(df) == 24 and set(df["status"]) == {"ok"}
    assert (df["realspace_weight"] == df["cfg_realspace_weight"]).all()
    assert sorted(set(df["realspace_weight"])) == [0.0, 0.1, 0.3]


def test_the_tables_keep_the_weights_apart(prior_study):
    long, pivots = aggregate(load_results(prior_study))
    ssim = pivots["amp_norm_ssim"]
    assert list(ssim.index.names) == ["N", "gridsize", "loss", "realspace_weight"]
    assert ssim.loc[(16, 1, "nll", 0.3), 1e4] == pytest.approx(0.9)
    assert ssim.loc[(16, 1, "nll", 0.0), 1e4] == pytest.approx(0.6)
    assert "realspace_weight" in long.columns and len(long) > 0


def test_the_held_out_photons_choose_the_weight_per_dose(prior_study):
    df = load_results(prior_study)
    chosen = choose_by_holdout(df)
    assert len(chosen) == 8  # loss x seed x dose
    picked = chosen.groupby("nphotons")["realspace_weight"].agg(set).to_dict()
    assert picked == {1e4: {0.3}, 1e8: {0.0}}
    assert set(chosen["series"]) == {f"nll, {CHOSEN}", f"mae, {CHOSEN}"}
    text = chosen_text(df)
    assert text.startswith("chosen by held-out NLL (realspace_weight")
    assert "0.3/0.3" in text and "0/0" in text  # one value per seed
    # without a varied setting there is nothing to choose
    assert not len(choose_by_holdout(df[df["realspace_weight"] == 0.3]))
    assert chosen_text(df[df["realspace_weight"] == 0.3]) == ""


def test_the_figure_draws_a_line_per_weight_and_the_choice(prior_study, capsys):
    fig = dose_response_figure(load_results(prior_study))
    labels = [t.get_text() for lg in list(fig.legends) + [ax.get_legend() for ax in fig.axes
                                                          if ax.get_legend()]
              for t in lg.get_texts()]
    for w in ("0", "0.1", "0.3"):
        assert f"loss: nll, realspace_weight {w}" in labels
    assert sum(CHOSEN in label for label in labels) == 2
    assert cli.main(["aggregate", str(prior_study)]) == 0
    assert "chosen by held-out NLL" in capsys.readouterr().out


def test_records_older_than_a_column_are_completed_never_overwritten(prior_study, tmp_path):
    """A record written before ``realspace_weight`` and ``holdout_loss`` were columns: the
    table takes the setting from the directory's sweep.toml (which planned the arm with it)
    and the held-out NLL from the record's own history at ``best_epoch``."""
    import json
    import shutil

    from runner.store import complete_records, read_records

    out = tmp_path / "old"
    shutil.copytree(prior_study, out)
    paths = OutputPaths(out)
    for f in paths.records_dir.glob("*.json"):
        rec = json.loads(f.read_text())
        rec.pop("realspace_weight")
        f.write_text(json.dumps(rec))
    for f in (paths.metrics_parquet, paths.metrics_csv):
        f.unlink()
    df = load_results(out)
    assert (df["realspace_weight"] == df["cfg_realspace_weight"]).all()
    # the held-out NLL of the scored epoch, from the history; a recorded value stays
    rec = {"arm_id": "x", "best_epoch": 2, "realspace_weight": 0.5,
           "history": [{"epoch": 1, "holdout_loss": 0.3}, {"epoch": 2, "holdout_loss": 0.2},
                       {"epoch": 3, "holdout_loss": 0.25}]}
    done = complete_records(paths, {"x": rec})["x"]
    assert done["holdout_loss"] == 0.2 and done["realspace_weight"] == 0.5
    assert complete_records(paths, {"x": {**rec, "holdout_loss": 0.9}})["x"][
        "holdout_loss"] == 0.9
    assert read_records(paths)  # the files themselves are not rewritten
    assert all("realspace_weight" not in json.loads(f.read_text())
               for f in paths.records_dir.glob("*.json"))


def test_a_choice_needs_two_candidates_each_with_a_held_out_nll(prior_study):
    df = load_results(prior_study)
    gap = df.index[(df["nphotons"] == 1e4) & (df["realspace_weight"] == 0.1)
                   & (df["loss"] == "nll") & (df["seed"] == 0)]
    chosen = choose_by_holdout(df.assign(holdout_loss=df["holdout_loss"].mask(
        df.index.isin(gap))))
    assert len(chosen) == 7  # that point has no choice, not one among the other weights
    one = df[(df["realspace_weight"] == 0.3) | (df["nphotons"] == 1e4)]
    assert set(choose_by_holdout(one)["nphotons"]) == {1e4}


def test_held_out_nlls_of_different_fractions_are_never_compared(tmp_path):
    """With ``holdout`` itself an [arms] list, the choice is made per fraction: a held-out NLL
    of 10 % of the photons says nothing against one of 20 %."""
    out = tmp_path / "out"
    runner.run_sweep(sweep_dict(task="runner_tasks:prior_task", loss=("nll",),
                                arms={"realspace_weight": [0, 0.3], "holdout": [0.1, 0.2]}),
                     out, progress=False)
    df = load_results(out)
    assert len(df) == 4 and sorted(set(df["holdout"])) == [0.1, 0.2]
    chosen = choose_by_holdout(df)
    assert sorted(chosen["holdout"]) == [0.1, 0.2]  # one choice per fraction
    assert set(chosen["realspace_weight"]) == {0.3}
    assert set(chosen["series"]) == {f"nll, holdout 0.1, {CHOSEN}", f"nll, holdout 0.2, {CHOSEN}"}


def test_the_dry_run_names_each_setting_of_an_arm(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "two.toml", sweep_dict(
        task="runner_tasks:prior_task", loss=("nll",),
        arms={"realspace_weight": [0, 0.3], "complex_tv_weight": [0.1]}))
    assert cli.main(["run", str(sweep), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[nll,s0,realspace_weight=0.3,complex_tv_weight=0.1]:run" in out
    assert "[nll,s0,realspace_weight=0,complex_tv_weight=0.1]:run" in out
