"""Helpers shared by tests/test_runner_*.py (imported after putting this directory on
sys.path; there is deliberately no conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
REPO = TASKS_DIR.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def sweep_dict(task: str = "runner_tasks:ok_task", name: str = "t", N=(16,), gridsize=(1,),
               nphotons=(1e4,), loss=("nll", "mae"), seed=(0,), timeout_s=60, retries=1,
               **sections) -> dict:
    """A small valid sweep dict; extra sections (model=..., training=...) are merged in."""
    d = {
        "sweep": {"name": name, "task": task, "timeout_s": timeout_s, "retries": retries},
        "grid": {"N": list(N), "gridsize": list(gridsize), "nphotons": list(nphotons)},
        "arms": {"loss": list(loss), "seed": list(seed)},
        "simulation": {"object_size": 300},
    }
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return d


def write_sweep(path: Path, d: dict) -> Path:
    from runner.sweep import dumps_toml

    path.write_text(dumps_toml(d))
    return path


def tasks_pythonpath() -> str:
    parts = [str(TASKS_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                if p]
    return os.pathsep.join(parts)


def use_tasks(monkeypatch) -> None:
    """Make runner_tasks importable by workers (and findable by the static task check)."""
    monkeypatch.setenv("PYTHONPATH", tasks_pythonpath())


def cli_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), tasks_pythonpath()]))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(*args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """``python -m runner *args`` in a subprocess (cwd: the repository)."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO,
                          env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def pid_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
