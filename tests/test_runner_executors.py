"""Executor registry and the worker environment (threads, GPUs, PYTHONPATH)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
import runner_testlib  # noqa: E402, F401  (puts the repository on sys.path)

from runner import executors, resources  # noqa: E402
from runner.executors import BackendError, available_executors, get_executor  # noqa: E402
from runner.taskref import project_root  # noqa: E402


def test_registry_lists_valid_names_and_loads_lazily(monkeypatch):
    assert {"local", "inprocess", "dask"} <= set(available_executors())
    with pytest.raises(BackendError, match="unknown backend 'nosuch'; valid backends: "):
        get_executor("nosuch")
    monkeypatch.setitem(executors._REGISTRY, "lazy", "runner.executors:InProcessExecutor")
    assert isinstance(get_executor("lazy"), executors.InProcessExecutor)
    monkeypatch.setitem(executors._REGISTRY, "broken", "no_such_pkg.mod:Executor")
    with pytest.raises(BackendError, match="backend 'broken' is not available"):
        get_executor("broken")
    with pytest.raises(BackendError, match="takes no option"):
        get_executor("local", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(BackendError, match="n_jobs"):
        get_executor("local", n_jobs=0)
    ex = get_executor("inprocess", n_jobs=4)
    assert ex.n_jobs == 1 and not ex.isolated


def test_thread_counts_split_the_cores():
    assert resources.thread_counts(1, cores=8) == (8, 2)
    assert resources.thread_counts(2, cores=8) == (4, 2)
    assert resources.thread_counts(4, cores=8) == (2, 1)
    assert resources.thread_counts(16, cores=8) == (1, 1)


def test_worker_env(tmp_path):
    base = {"PYTHONPATH": "/a:/b", "OMP_NUM_THREADS": "99", "HOME": "/h"}
    env = resources.worker_env(n_jobs=2, slot=3, gpus=["0", "1"], cwd=tmp_path, base=base,
                               parent_pid=123)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(project_root()), str(tmp_path.resolve()),
                                                   "/a", "/b"]
    intra = str(max(1, resources.usable_cores() // 2))
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == intra
    assert env["PTYCHO_SWEEP_THREADS"] == intra and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["PTYCHO_SWEEP_PARENT_PID"] == "123"
    assert env["HOME"] == "/h" and base["OMP_NUM_THREADS"] == "99"  # base not modified
    cpu_only = resources.worker_env(n_jobs=1, gpus=[], base={"CUDA_VISIBLE_DEVICES": "7"})
    assert cpu_only["CUDA_VISIBLE_DEVICES"] == "7"  # left alone without GPUs
    with pytest.MonkeyPatch.context() as m:  # a driver is loaded: nothing hidden
        m.setattr(resources, "_NVIDIA_DRIVER", tmp_path)
        assert "CUDA_VISIBLE_DEVICES" not in resources.worker_env(n_jobs=1, gpus=[], base={})


def test_gpu_detection_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(resources, "_nvidia_smi_gpus", lambda: ("0", "1", "2"))
    assert resources.detect_gpus({}) == ["0", "1", "2"]
    assert resources.detect_gpus({"CUDA_VISIBLE_DEVICES": "2,0"}) == ["2", "0"]
    assert resources.detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setattr(resources, "_nvidia_smi_gpus", lambda: ())
    assert resources.detect_gpus({"CUDA_VISIBLE_DEVICES": "0"}) == []
