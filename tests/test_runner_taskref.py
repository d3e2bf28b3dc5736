"""Task references: a task must be a function taking a unit, and the errors say so."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
from runner_testlib import sweep_dict, use_tasks  # noqa: E402

from runner.paths import OutputPaths  # noqa: E402
from runner.store import read_records  # noqa: E402
from runner.sweep import load_sweep  # noqa: E402
from runner.taskref import TASK_CONTRACT, check_task, import_task  # noqa: E402
from runner.worker import execute  # noqa: E402

CONTRACT = "a task must be a function taking a unit"


def test_builtin_module_is_refused_statically_with_the_task_contract():
    problem = check_task("builtins:exec")
    assert "not a task" in problem and CONTRACT in problem and "not found" not in problem
    assert CONTRACT in TASK_CONTRACT


@pytest.mark.parametrize("ref, what", [
    ("builtins:exec", "built-in function exec"),
    ("math:sqrt", "built-in function sqrt"),
    ("shutil:copy", "cannot take a single unit"),
])
def test_worker_refuses_callables_that_are_not_tasks(ref, what):
    with pytest.raises(TypeError) as info:
        import_task(ref)
    assert what in str(info.value) and CONTRACT in str(info.value)


def test_a_real_task_still_imports(monkeypatch):
    use_tasks(monkeypatch)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent / "tasks"))
    assert callable(import_task("runner_tasks:ok_task"))


def test_worker_records_the_contract_as_the_arms_error(tmp_path):
    sw = load_sweep(sweep_dict(task="builtins:exec"), check_task=False)
    unit = sw.plan()[0].for_attempt(OutputPaths(tmp_path))
    assert execute(unit)["status"] == "failed"
    recs = read_records(OutputPaths(tmp_path)).values()
    assert recs and all(r["status"] == "failed" and CONTRACT in r["error"] for r in recs)
