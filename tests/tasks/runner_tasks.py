"""Tiny task functions for the runner tests (named in test sweeps as ``runner_tasks:<fn>``).

This directory is put on PYTHONPATH by the tests; nothing here is collected by pytest. Tasks
dispatch on ``unit.N`` where one sweep needs units that behave differently.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OBSERVED_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                "PTYCHO_SWEEP_THREADS", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")


def _metrics(unit, arm) -> dict:
    """Plausible metrics that improve with dose (and a bit with N)."""
    d = math.log10(unit.nphotons)
    bonus = 0.5 if arm.loss == "nll" else 0.0
    return {
        "amp_psnr": 10 + 2 * d + bonus + 0.1 * arm.seed, "amp_ssim": min(1.0, 0.1 * d),
        "phase_psnr": 8 + 2 * d + bonus, "phase_ssim": min(1.0, 0.09 * d),
        "amp_frc50": 4.0 * d, "phase_frc50": 3.0 * d, "amp_mae": 1 / d, "amp_mse": 1 / d**2,
        "phase_mae": 2 / d, "phase_mse": 4 / d**2, "final_loss": np.float32(1 / d),
        "train_s": 0.01,
    }


def ok_task(unit):
    """Yields plausible metrics per arm; saves ``<arm_id>.npz`` unless RUNNER_TEST_NO_NPZ."""
    for arm in unit.arms:
        cfg = unit.training_config(arm)
        if not os.environ.get("RUNNER_TEST_NO_NPZ"):
            rng = np.random.default_rng(arm.seed)
            img = rng.random((unit.N, unit.N)).astype(np.float32)
            np.savez(unit.artifact_path(arm), amplitude=img, phase=img - 0.5,
                     true_amplitude=np.ones_like(img), true_phase=np.zeros_like(img))
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm), "nepochs": cfg.nepochs,
               "cfg_nphotons": cfg.nphotons, "cfg_seed": cfg.seed,
               "cfg_nll_weight": cfg.nll_weight, "cfg_mae_weight": cfg.mae_weight,
               "parent_pid": os.getppid(), "tf_loaded": "tensorflow" in sys.modules,
               **{f"env_{k}": os.environ.get(k) for k in OBSERVED_ENV}}


def slow_task(unit):
    """Each arm takes RUNNER_TEST_SLEEP seconds (default 0); in units with
    N == RUNNER_TEST_HANG_N the task hangs after yielding the first arm."""
    delay = float(os.environ.get("RUNNER_TEST_SLEEP", "0"))
    hang = os.environ.get("RUNNER_TEST_HANG_N") == str(unit.N)
    for i, arm in enumerate(unit.arms):
        if hang and i == 1:
            time.sleep(1000)
        time.sleep(delay)
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm)}


def block_once_task(unit):
    """Like slow_task without delays, plus ``parent_pid``. In units with N == 64 the first
    execution yields its first arm, then writes ``<RUNNER_TEST_READY_DIR>/<unit_id>.ready``
    ("<pid> <parent pid>") and blocks; later executions (the file exists) run normally."""
    marker = Path(os.environ.get("RUNNER_TEST_READY_DIR", "/nonexistent")) / f"{unit.unit_id}.ready"
    block = unit.N == 64 and not marker.exists()
    for i, arm in enumerate(unit.arms):
        if block and i == 1:
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(f"{os.getpid()} {os.getppid()}")
            os.replace(tmp, marker)
            time.sleep(1000)
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm), "parent_pid": os.getppid()}


def flaky_task(unit):
    """Raises for units with N=32 while RUNNER_TEST_FAIL=1, else like ok_task."""
    if unit.N == 32 and os.environ.get("RUNNER_TEST_FAIL") == "1":
        raise RuntimeError("flaky failure requested by RUNNER_TEST_FAIL")
    yield from ok_task(unit)


def mixed_task(unit):
    """N=16 ok; N=32 first arm ok then raises; N=64 segfaults; N=128 hangs with a child;
    N=256 segfaults on its first attempt only."""
    arms = list(unit.arms)
    if unit.N == 16:
        yield from ok_task(unit)
    elif unit.N == 32:
        yield {"arm_id": arms[0].arm_id, **_metrics(unit, arms[0])}
        raise ValueError(f"boom at N={unit.N}")
    elif unit.N == 64:
        os.kill(os.getpid(), signal.SIGSEGV)
    elif unit.N == 128:
        child = subprocess.Popen(["sleep", "1000"])
        (unit.artifact_dir / "child.pid").write_text(str(child.pid))
        time.sleep(1000)
    elif unit.N == 256:
        marker = unit.artifact_dir / "crashed-once"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSEGV)
        yield from ok_task(unit)


# -- TensorFlow state poisoning --------------------------------------------------------------
_TRACES: list = []
_FN = None


def tf_poison_task(unit):
    """Observe TF/legacy global state (must be pristine in a fresh worker), then poison it."""
    tf_before = "tensorflow" in sys.modules
    import tensorflow as tf

    from ptycho import params

    global _FN
    observed = {
        "tf_loaded_before_task": tf_before,
        "obs_cfg_N": params.cfg["N"],
        "obs_eager": bool(tf.config.functions_run_eagerly()),
        "obs_intra": tf.config.threading.get_intra_op_parallelism_threads(),
        "obs_traces": len(_TRACES),
        "obs_fn_defined": _FN is not None,
    }
    # poison everything we can reach
    tf.config.threading.set_intra_op_parallelism_threads(3)
    params.cfg["N"] = unit.N * 2
    params.cfg["gridsize"] = 3

    @tf.function(jit_compile=True)
    def double(x):
        _TRACES.append(tuple(x.shape))
        return x * 2.0

    _FN = double
    out = double(tf.ones((unit.N, unit.N)))
    tf.config.run_functions_eagerly(True)
    for arm in unit.arms:
        yield {"arm_id": arm.arm_id, **observed, "out_shape": list(out.shape),
               "amp_ssim": 0.5, "tf_intra_after": tf.config.threading
               .get_intra_op_parallelism_threads()}


#: A top-level name that is not callable (the static task check rejects it).
not_a_task = {"arm_id": "x"}


def chdir_task(unit):
    """Changes the working directory before yielding (records must still land in --out)."""
    os.chdir(os.environ.get("RUNNER_TEST_CHDIR", "/"))
    for arm in unit.arms:
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm)}


# -- process trees and limits (tests/test_runner_attempt.py) ---------------------------------
def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(pid))
    os.replace(tmp, path)


_DAEMONIZE = ("import subprocess, sys; p = subprocess.Popen(['sleep', '1000'], "
              "start_new_session=True); open(sys.argv[1] + '.tmp', 'w').write(str(p.pid)); "
              "import os; os.replace(sys.argv[1] + '.tmp', sys.argv[1])")


def setsid_task(unit):
    """Starts ``sleep 1000`` in a new session (``child.pid``) and a daemon: a process that
    starts ``sleep 1000`` in a new session and exits (``daemon.pid``), in the artifact dir.
    Then hangs, or with RUNNER_TEST_RETURN=1 yields every arm and returns."""
    child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    subprocess.run([sys.executable, "-c", _DAEMONIZE, str(unit.artifact_dir / "daemon.pid")],
                   check=True)
    _write_pid(unit.artifact_dir / "child.pid", child.pid)
    if os.environ.get("RUNNER_TEST_RETURN") != "1":
        time.sleep(1000)
    for arm in unit.arms:
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm)}


def gil_hog_task(unit):
    """Ignores SIGTERM through a Python handler (which cannot run while C code holds the
    GIL), then spins in one long C call that never checks for signals."""
    signal.signal(signal.SIGTERM, lambda *a: None)
    _write_pid(unit.artifact_dir / "spinning.pid", os.getpid())
    sum(range(10**14))
    yield from ok_task(unit)


def memory_hog_task(unit):
    """First arm ok; then allocates 20 MB every 20 ms (up to 1.5 GB, then waits)."""
    arms = list(unit.arms)
    yield {"arm_id": arms[0].arm_id, **_metrics(unit, arms[0])}
    hoard = []
    for _ in range(75):
        hoard.append(bytearray(20 * 2**20))
        time.sleep(0.02)
    time.sleep(1000)


def arm_hang_task(unit):
    """Arms run in order; the arm with seed 1 hangs, the others take no time."""
    for arm in unit.arms:
        if arm.seed == 1:
            time.sleep(1000)
        yield {"arm_id": arm.arm_id, **_metrics(unit, arm), "worker_pid": os.getpid()}


def prior_task(unit):
    """Like a task fitting with a prior of weight ``realspace_weight``: the held-out NLL is
    least at weight 0.3 for doses below 1e6 and at 0 above, and so is the error; records the
    weight the arm's config has (``cfg_realspace_weight``) but not ``realspace_weight``."""
    for arm in unit.arms:
        cfg = unit.training_config(arm)
        best = 0.3 if unit.nphotons < 1e6 else 0.0
        miss = abs(cfg.realspace_weight - best)
        yield {"arm_id": arm.arm_id, "holdout_loss": 0.1 + miss + 0.001 * arm.seed,
               "amp_norm_ssim": 0.9 - miss, "amp_norm_ssim_baseline": 0.3,
               "amp_frc50_px": 2.0 + 10 * miss, "final_loss": 0.5,
               "cfg_realspace_weight": cfg.realspace_weight}
