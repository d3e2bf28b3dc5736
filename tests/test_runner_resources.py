"""Worker environment on CPU-only and GPU hosts (runner.resources.worker_env)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tasks"))
import runner_testlib  # noqa: E402, F401  (puts the repository on sys.path)

from runner import resources  # noqa: E402


def test_cpu_only_workers_see_no_gpu_and_no_cuda_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "_NVIDIA_DRIVER", tmp_path / "absent")
    env = resources.worker_env(n_jobs=1, gpus=[], base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "-1"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "3"  # hides TensorFlow's 'failed call to cuInit'
    # what the user set is kept
    env = resources.worker_env(n_jobs=1, gpus=[], base={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0" and env["CUDA_VISIBLE_DEVICES"] == "-1"
    env = resources.worker_env(n_jobs=1, gpus=[], base={"CUDA_VISIBLE_DEVICES": "3"})
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    # detection through nvidia-smi (mocked) finds nothing: same as no GPU at all
    monkeypatch.setattr(resources, "_nvidia_smi_gpus", lambda: ())
    assert resources.worker_env(n_jobs=2, base={})["CUDA_VISIBLE_DEVICES"] == "-1"


def test_gpu_hosts_keep_their_devices(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "_NVIDIA_DRIVER", tmp_path / "absent")
    env = resources.worker_env(n_jobs=2, slot=1, gpus=["0", "1"], base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    # a loaded driver without nvidia-smi: TensorFlow may find a GPU itself, nothing hidden
    monkeypatch.setattr(resources, "_NVIDIA_DRIVER", tmp_path)
    env = resources.worker_env(n_jobs=1, gpus=[], base={})
    assert "CUDA_VISIBLE_DEVICES" not in env and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
