"""Sweep files: validation (everything, before anything runs), expansion and stable ids."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import REPO, cli_env, sweep_dict, use_tasks, write_sweep  # noqa: E402

from runner import cli  # noqa: E402
from runner.sweep import SweepError, check_output_dir, dumps_toml, load_sweep  # noqa: E402
from runner.taskref import check_task  # noqa: E402


@pytest.fixture(autouse=True)
def _tasks_on_path(monkeypatch):
    use_tasks(monkeypatch)


def test_example_sweep_files_are_valid():
    smoke = load_sweep(REPO / "experiments" / "smoke.toml", check_task=False)
    assert (smoke.name, smoke.n_units, smoke.n_arms) == ("smoke", 8, 16)
    assert smoke.task == "experiments.dose_response:run_unit"
    assert smoke.N == (32, 64) and smoke.nphotons == (1e4, 1e9)
    assert smoke.loss == ("nll_huber", "mae")
    dose = load_sweep(REPO / "experiments" / "dose_response.toml", check_task=False)
    assert (dose.name, dose.n_units, dose.n_arms) == ("dose_response", 24, 72)
    assert dose.loss == ("nll", "mae", "nll_huber")
    assert dose.simulation["object_size"] == 392
    cpu = load_sweep(REPO / "experiments" / "dose_response_cpu.toml", check_task=False)
    assert (cpu.name, cpu.n_units, cpu.n_arms) == ("dose_response_cpu", 16, 32)
    assert cpu.simulation["reconstruct"] == "same"
    quality = load_sweep(REPO / "experiments" / "quality.toml", check_task=False)
    assert (quality.name, quality.n_units, quality.n_arms) == ("quality", 2, 6)
    auto = load_sweep(REPO / "experiments" / "dose_response_n64_auto.toml", check_task=False)
    assert (auto.name, auto.n_units, auto.n_arms) == ("dose_response_n64_auto", 12, 36)
    assert auto.simulation["feature_scale"] == "auto"
    new = load_sweep(REPO / "experiments" / "new_object.toml", check_task=False)
    assert (new.name, new.n_units, new.n_arms) == ("new_object", 1, 3)
    assert new.simulation["reconstruct"] == "new" and new.simulation["n_train"] == 1024


@pytest.mark.parametrize("name, at_least", [("dose_response_cpu", 32),
                                             ("dose_response_n64_cpu", 14),
                                             ("dose_response_n64_auto", 4)])
def test_committed_studies_still_resume(name, at_least):
    """results/<name>/ is a study's committed resume point: every recorded arm that its sweep
    file plans must keep its id, or running the file again would redo hours of arms (e.g. after
    a default changed: these files pin simulation.feature_scale = 1.0, as their arms ran)."""
    from runner.outdir import check_output_dir

    sweep = load_sweep(REPO / "experiments" / f"{name}.toml", check_task=False)
    check_output_dir(sweep, REPO / "results" / name)  # the directory takes the file (no writes)
    planned = {(u.N, u.gridsize, u.nphotons, a.loss, a.seed): a.arm_id
               for u in sweep.plan() for a in u.arms}
    records = [json.loads(p.read_text())
               for p in (REPO / "results" / name / "records").glob("*.json")]
    matched = [r for r in records
               if (r["N"], r["gridsize"], r["nphotons"], r["loss"], r["seed"]) in planned]
    assert len(matched) >= at_least, len(matched)
    for r in matched:
        assert r["arm_id"] == planned[(r["N"], r["gridsize"], r["nphotons"], r["loss"],
                                       r["seed"])], r["arm_id"]


def test_expansion_and_unit_helpers(tmp_path):
    from runner.paths import OutputPaths

    sw = load_sweep(sweep_dict(N=(16, 32), gridsize=(1, 2), nphotons=(1e4, 1e6), seed=(0, 3),
                               training={"nepochs": 3}))
    plan = sw.plan()
    assert len(plan) == 8 and all(len(u.arms) == 4 for u in plan)
    assert [(u.N, u.gridsize, u.nphotons) for u in plan][:3] == [
        (16, 1, 1e4), (16, 1, 1e6), (16, 2, 1e4)]
    u = plan[3]
    assert u.unit_id.startswith("N16_g2_p1e+06_")
    unit = u.for_attempt(OutputPaths(tmp_path))
    assert unit.model_config().N == 16 and unit.model_config().gridsize == 2
    assert unit.simulation_config().object_size == 300
    arm = unit.arms[-1]  # mae, seed 3
    cfg = unit.training_config(arm)
    assert (cfg.nphotons, cfg.seed, cfg.nepochs) == (1e6, 3, 3)
    assert (cfg.nll_weight, cfg.mae_weight) == (0.0, 1.0)
    assert unit.training_config(arm.arm_id) == cfg and arm["loss"] == "mae"
    assert unit.artifact_path(arm) == tmp_path / "units" / u.unit_id / "artifacts" / (
        arm.arm_id + ".npz")
    assert type(unit).from_dict(unit.to_dict()).arms == unit.arms


def test_plan_and_attempt_are_one_unit_type(tmp_path):
    """The plan's units are what a task receives: one type, identity spelled once, and the
    attempt copy round-trips through unit.json."""
    from runner.paths import OutputPaths
    from runner.schema import IDENTITY
    from runner.unit import Unit

    sw = load_sweep(sweep_dict(nphotons=(1e4, 1e6), training={"nepochs": 3}))
    planned = sw.plan()[1]
    assert isinstance(planned, Unit) and planned.sweep == sw.name and planned.task == sw.task
    assert planned.training["nphotons"] == 1e6 and planned.timeout_s == sw.timeout_s
    with pytest.raises(ValueError, match="plan, not an attempt"):
        planned.artifact_path(planned.arms[0])
    attempt = planned.for_attempt(OutputPaths(tmp_path), planned.arms[1:], 2, "run-2")
    assert (attempt.attempt, attempt.attempt_id, attempt.arms) == (2, "run-2", planned.arms[1:])
    back = Unit.from_dict(attempt.to_dict())
    assert back.training == attempt.training and back.paths == attempt.paths
    assert back.artifact_dir == tmp_path / "units" / planned.unit_id / "artifacts"
    arm = back.arms[0]
    assert list(back.arm_columns(arm)) == list(IDENTITY)
    assert back.arm_columns(arm) == planned.arm_columns(arm.arm_id)
    # plan units share their dicts: a big plan costs no dict per unit
    units = sw.plan()
    assert units[0].model is units[1].model and units[0].training_base is units[1].training_base



def test_ids_are_stable_and_follow_the_config(tmp_path):
    base = sweep_dict(N=(16, 32), nphotons=(1e4, 1e9), training={"nepochs": 2})

    def ids(d):
        plan = load_sweep(d).plan()
        return [u.unit_id for u in plan], [a.arm_id for u in plan for a in u.arms]

    units, arms = ids(base)
    assert len(set(arms)) == len(arms) == 8 and len(set(units)) == 4
    assert all(len(a) == 12 and int(a, 16) >= 0 for a in arms)
    assert ids(copy.deepcopy(base)) == (units, arms)
    assert ids(write_sweep(tmp_path / "s.toml", base)) == (units, arms)  # file == dict
    # execution policy does not change ids; ints for floats do not either
    policy = copy.deepcopy(base)
    policy["sweep"].update(timeout_s=5, retries=0)
    policy["training"]["learning_rate"] = 0.001
    assert ids(policy) == (units, arms)
    # any setting that reaches the task does
    for section, key, value in [("training", "nepochs", 3), ("model", "n_filters_scale", 1),
                                ("simulation", "seed", 1), ("sweep", "task",
                                                            "runner_tasks:slow_task")]:
        changed = copy.deepcopy(base)
        changed.setdefault(section, {})[key] = value
        new_units, new_arms = ids(changed)
        assert not set(new_arms) & set(arms), (section, key)
        assert not set(new_units) & set(units), (section, key)


def test_an_added_option_at_its_neutral_value_keeps_the_ids(tmp_path):
    """An option added after a study was recorded (ptycho.config_base.added_option) must not orphan
    it: at the value that reproduces the old computation it is left out of the ids; any other
    value changes them."""
    from ptycho.config import ModelConfig

    base = sweep_dict(N=(16,), nphotons=(1e4,), training={"nepochs": 2})

    def arm_ids(d):
        return [a.arm_id for u in load_sweep(d).plan() for a in u.arms]

    assert "probe_coma" not in ModelConfig().identity_dict()
    assert ModelConfig.from_dict(ModelConfig().identity_dict()) == ModelConfig()
    explicit = copy.deepcopy(base)
    explicit.setdefault("model", {})["probe_coma"] = 0
    assert arm_ids(explicit) == arm_ids(base)
    explicit["model"]["probe_coma"] = 1.5
    assert not set(arm_ids(explicit)) & set(arm_ids(base))
    assert ModelConfig(probe_coma=1.5).identity_dict()["probe_coma"] == 1.5


def test_an_added_option_with_a_new_default_changes_the_ids_unless_pinned():
    """simulation.feature_scale defaults to "auto" (new objects at N = 64); its neutral 1.0
    reproduces the code before it, so a file that pins 1.0 keeps its recorded ids."""
    from ptycho.config import SimulationConfig

    assert SimulationConfig().identity_dict()["feature_scale"] == "auto"
    assert "feature_scale" not in SimulationConfig(feature_scale=1.0).identity_dict()
    base = sweep_dict(N=(64,), nphotons=(1e4,), training={"nepochs": 2})
    pinned = copy.deepcopy(base)
    pinned.setdefault("simulation", {})["feature_scale"] = 1.0
    explicit = copy.deepcopy(base)
    explicit.setdefault("simulation", {})["feature_scale"] = 2.0
    ids = {name: [(u.unit_id, [a.arm_id for a in u.arms]) for u in load_sweep(d).plan()]
           for name, d in (("default", base), ("pinned", pinned), ("explicit", explicit))}
    assert ids["default"] != ids["pinned"]  # N = 64: auto is 2, another object
    assert ids["default"] == ids["explicit"]  # ids name the resolved object, not the spelling
    at32 = {name: [u.unit_id for u in load_sweep({**d, "grid": {**d["grid"], "N": [32]}}).plan()]
            for name, d in (("default", base), ("pinned", pinned))}
    assert at32["default"] == at32["pinned"]  # N = 32: auto is 1, the pre-option ids


def test_the_stem_default_changes_the_ids_at_n_128_only():
    """model.stem defaults to "auto" (the patchify stem from N = 128): N = 64 units keep their
    recorded ids, N = 128 units get new ones unless the file pins stem = "none"."""
    base = sweep_dict(N=(64, 128), nphotons=(1e4,), training={"nepochs": 2},
                      simulation={"object_size": 392})
    ids = {}
    for name, stem in (("default", None), ("none", "none"), ("patchify", "patchify")):
        d = copy.deepcopy(base)
        if stem:
            d.setdefault("model", {})["stem"] = stem
        ids[name] = {u.N: (u.unit_id, [a.arm_id for a in u.arms]) for u in load_sweep(d).plan()}
    assert ids["default"][64] == ids["none"][64] != ids["patchify"][64]
    assert ids["default"][128] == ids["patchify"][128] != ids["none"][128]


def test_changing_the_default_loss_or_seed_keeps_the_ids(monkeypatch):
    """Arms set their loss and seed themselves, so the defaults of those fields (the default
    loss changed from nll to nll_huber in round 5) must not change any unit's or arm's id:
    recorded studies keep resuming in their own unit directories."""
    import dataclasses

    import runner.plan
    from ptycho.config import TrainingConfig

    base = sweep_dict(N=(16,), nphotons=(1e4, 1e9), training={"nepochs": 2})

    def ids():
        plan = load_sweep(base).plan()
        return [u.unit_id for u in plan], [a.arm_id for u in plan for a in u.arms]

    before = ids()

    @dataclasses.dataclass(frozen=True)
    class OtherDefaults(TrainingConfig):
        loss: str = "mae"
        seed: int = 7

    monkeypatch.setattr(runner.plan, "TrainingConfig", OtherDefaults)
    assert OtherDefaults().loss == "mae"
    assert ids() == before


BAD = [
    # (mutation of sweep_dict(), substring that must appear in the error)
    (lambda d: d.update(extra={"x": 1}), "[extra] is an unknown section"),
    (lambda d: d["sweep"].update(nmae="x"), "sweep.nmae is an unknown key"),
    (lambda d: d["sweep"].pop("name"), "sweep.name is required"),
    (lambda d: d["sweep"].update(name="a b"), "sweep.name"),
    (lambda d: d["sweep"].update(timeout_s=0), "sweep.timeout_s"),
    (lambda d: d["sweep"].update(retries=1.5), "sweep.retries"),
    (lambda d: d["sweep"].update(task="no_such_module_xyz:run"), "not found"),
    (lambda d: d["sweep"].update(task="runner_tasks:no_such_fn"), "defines no top-level"),
    (lambda d: d["sweep"].update(task="runner_tasks"), "module:function"),
    (lambda d: d["sweep"].update(task="runner_tasks:not_a_task"), "not callable"),
    (lambda d: d["grid"].update(N=[48]), "grid.N = 48 is invalid: must be a power of two"),
    (lambda d: d["grid"].update(N=[]), "grid.N is empty"),
    (lambda d: d["grid"].update(N="32"), "grid.N = '32' is invalid: must be a list"),
    (lambda d: d["grid"].update(N=[16, 16]), "grid.N: duplicate value 16"),
    (lambda d: d["grid"].update(N=[16.0]), "grid.N: element 16.0 is invalid"),
    (lambda d: d["grid"].pop("nphotons"), "grid.nphotons is required"),
    (lambda d: d["grid"].update(gridsize=[4]), "grid.gridsize = 4 is invalid"),
    (lambda d: d["grid"].update(nphotons=[-1.0]), "grid.nphotons = -1.0 is invalid"),
    (lambda d: d["grid"].update(nphotons=[1e4, 10000]), "grid.nphotons: duplicate"),
    (lambda d: d["arms"].update(loss=["l2"]), "arms.loss: 'l2' is not allowed"),
    (lambda d: d["arms"].update(seed=[-1]), "arms.seed: element -1 is invalid"),
    (lambda d: d.update(model={"N": 32}), "model.N is not allowed here: it is set by grid.N"),
    (lambda d: d.update(model={"offset": 100}), "model.offset"),
    (lambda d: d.update(model={"amp_activation": "tanh"}), "model.amp_activation"),
    (lambda d: d.update(training={"nepochs": "2"}), "training.nepochs = '2' is invalid"),
    (lambda d: d.update(training={"seed": 1}), "training.seed is not allowed here"),
    (lambda d: d.update(training={"bogus": 1}), "training.bogus is an unknown key"),
    (lambda d: d.update(simulation={"object_size": 20}), "simulation.object_size = 20"),
]


@pytest.mark.parametrize("mutate, expected", BAD)
def test_bad_sweeps_name_the_key(mutate, expected):
    d = sweep_dict()
    mutate(d)
    with pytest.raises(SweepError) as err:
        load_sweep(d)
    assert expected in str(err.value)
    assert str(err.value).startswith("<dict>: ")


def test_all_errors_are_reported_together(tmp_path):
    d = sweep_dict()
    d["grid"]["N"] = [48]
    d["arms"]["loss"] = ["l2"]
    d["training"] = {"nepochs": 0}
    path = write_sweep(tmp_path / "bad.toml", d)
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    msg = str(err.value)
    assert len(err.value.errors) == 3
    for key in ("grid.N", "arms.loss", "training.nepochs"):
        assert f"{path}: {key}" in msg


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[sweep\nname=")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_sweep(bad)
    with pytest.raises(SweepError, match="cannot read"):
        load_sweep(tmp_path / "missing.toml")


def test_task_check_never_imports_the_module(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb"
    monkeypatch.setenv("RUNNER_TEST_BOMB", str(bomb))
    assert check_task("runner_import_bomb:run_unit") is None
    assert "defines no top-level 'other'" in check_task("runner_import_bomb:other")
    assert "runner_import_bomb" not in sys.modules and not bomb.exists()
    # the default task is checked the same way: experiments is located, not imported
    load_sweep(sweep_dict(task="runner_import_bomb:run_unit"))
    assert not bomb.exists()


def test_output_dir_holding_a_different_sweep(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_sweep(out / "sweep.toml", sweep_dict(training={"nepochs": 2}))
    check_output_dir(load_sweep(sweep_dict(training={"nepochs": 2}, timeout_s=5)), out)
    with pytest.raises(SweepError, match="already holds a different sweep.*training.nepochs"):
        check_output_dir(load_sweep(sweep_dict(training={"nepochs": 3})), out)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    with pytest.raises(SweepError, match="not empty and holds no sweep.toml"):
        check_output_dir(load_sweep(sweep_dict()), junk)


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["sweep"].update(colour="red"), "sweep.colour"),
    (lambda d: d["grid"].update(N=[48]), "grid.N"),
    (lambda d: d["grid"].update(nphotons=[]), "grid.nphotons is empty"),
    (lambda d: d["sweep"].update(task="no_such_module_xyz:run"), "sweep.task"),
    (lambda d: d["training"].update(nepochs=2.5), "training.nepochs"),
])
def test_cli_bad_sweep_exits_2_and_writes_nothing(tmp_path, capsys, mutate, key):
    d = sweep_dict(training={"nepochs": 1})
    mutate(d)
    path = write_sweep(tmp_path / "bad.toml", d)
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


def test_cli_dir_holding_other_sweep_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.toml").write_text(dumps_toml(sweep_dict(name="other")))
    before = sorted(p.name for p in out.iterdir())
    path = write_sweep(tmp_path / "s.toml", sweep_dict(name="mine"))
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different sweep" in err and "sweep.name" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_cli_unknown_backend_and_missing_dir(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.toml", sweep_dict())
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--backend", "nope"]) == 2
    assert "valid backends: dask, inprocess, local" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--out", str(out), "--scheduler", "tcp://x:1"]) == 2
    assert "scheduler" in capsys.readouterr().err
    assert not out.exists()
    for cmd in ("status", "aggregate", "plot"):
        assert cli.main([cmd, str(tmp_path / "missing")]) == 2
    assert cli.main(["frobnicate"]) == 2


def test_cli_subprocess_exit_code_2(tmp_path):
    d = sweep_dict()
    d["grid"]["N"] = [48]
    path = write_sweep(tmp_path / "bad.toml", d)
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(path), "--out",
                           str(tmp_path / "out")], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "grid.N = 48 is invalid" in proc.stderr
    assert not (tmp_path / "out").exists()
