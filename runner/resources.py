"""Machine resources of this host and the environment a worker gets from them.

Threads: with ``n_jobs`` concurrent workers on ``cores`` usable cores, every worker gets
``intra = max(1, cores // n_jobs)`` intra-op threads (``OMP_NUM_THREADS``,
``TF_NUM_INTRAOP_THREADS``, ``PTYCHO_SWEEP_THREADS``) and 1 inter-op thread (2 when it has
more than 2 intra-op threads), so concurrent workers do not oversubscribe the cores.

GPUs: listed with ``nvidia-smi -L`` when that program exists (never by importing TensorFlow),
restricted to an existing ``CUDA_VISIBLE_DEVICES`` if one is set; worker slot ``k`` gets
``CUDA_VISIBLE_DEVICES = gpus[k % len(gpus)]``.

CPU-only hosts (no GPU listed and no NVIDIA driver loaded): workers get
``CUDA_VISIBLE_DEVICES=-1`` and ``TF_CPP_MIN_LOG_LEVEL=3``, so TensorFlow neither looks for a
GPU nor logs ``failed call to cuInit`` errors into every worker log (elsewhere the level is 2:
warnings and info hidden, errors shown). A ``CUDA_VISIBLE_DEVICES`` or ``TF_CPP_MIN_LOG_LEVEL``
already set in the orchestrator's environment is kept.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["usable_cores", "detect_gpus", "thread_counts", "worker_env"]

#: Present when the NVIDIA kernel driver is loaded (a GPU may exist without ``nvidia-smi``).
_NVIDIA_DRIVER = Path("/proc/driver/nvidia")


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def _nvidia_smi_gpus() -> tuple[str, ...]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return ()
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(str(i) for i, line in
                 enumerate(ln for ln in out.splitlines() if ln.startswith("GPU ")))


def detect_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids a worker may be given (indices, or the entries of CUDA_VISIBLE_DEVICES)."""
    environ = os.environ if environ is None else environ
    gpus = list(_nvidia_smi_gpus())
    if not gpus:
        return []
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    return gpus


def thread_counts(n_jobs: int, cores: int | None = None) -> tuple[int, int]:
    """``(intra, inter)`` op threads per worker for ``n_jobs`` concurrent workers."""
    cores = usable_cores() if cores is None else cores
    intra = max(1, cores // max(1, n_jobs))
    return intra, (2 if intra > 2 else 1)


def worker_env(*, n_jobs: int, slot: int = 0, gpus: list[str] | None = None,
               cwd: str | Path | None = None, parent_pid: int | None = None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker running in concurrency slot ``slot`` of ``n_jobs``.

    A copy of ``base`` (default ``os.environ``) with the project root and ``cwd`` prepended to
    ``PYTHONPATH``, the thread settings above, ``TF_CPP_MIN_LOG_LEVEL`` (2; 3 on a CPU-only
    host; a value in ``base`` is kept), unbuffered output, the orchestrator's pid
    (``PTYCHO_SWEEP_PARENT_PID``, watched by the worker) and one GPU, or on a CPU-only host
    (no ``gpus``, no NVIDIA driver, no ``CUDA_VISIBLE_DEVICES`` in ``base``) none:
    ``CUDA_VISIBLE_DEVICES=-1``.
    """
    from .taskref import project_root

    env = dict(os.environ if base is None else base)
    cwd = str(Path(cwd or os.getcwd()).resolve())
    parts = [str(project_root()), cwd] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                           if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    intra, inter = thread_counts(n_jobs)
    env.update({
        "OMP_NUM_THREADS": str(intra),
        "TF_NUM_INTRAOP_THREADS": str(intra),
        "TF_NUM_INTEROP_THREADS": str(inter),
        "PTYCHO_SWEEP_THREADS": str(intra),
        "PTYCHO_SWEEP_INTEROP_THREADS": str(inter),
        "PYTHONUNBUFFERED": "1",
        "PTYCHO_SWEEP_PARENT_PID": str(os.getpid() if parent_pid is None else parent_pid),
    })
    gpus = detect_gpus(env) if gpus is None else gpus
    cpu_only = not gpus and "CUDA_VISIBLE_DEVICES" not in env and not _NVIDIA_DRIVER.exists()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    elif cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = "-1"  # no device to look for
    # 3 hides the 'failed call to cuInit' error TensorFlow logs on a machine without CUDA
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if cpu_only else "2")
    return env
