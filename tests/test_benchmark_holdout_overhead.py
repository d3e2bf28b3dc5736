"""benchmarks/holdout_overhead.py runs end to end on a tiny unit and prints its rounds and
the ratio; bad input exits 2 naming the key, before anything heavy."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "holdout_overhead.py"
TINY = ["grid.N=[16]", "simulation.object_size=64", "simulation.n_train=16",
        "simulation.n_test=4", "training.batch_size=8"]


def test_prints_seconds_per_epoch_with_and_without_and_the_ratio():
    proc = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--epochs", "2", "--repeats", "2",
                           "--threads", "1"], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rounds = re.findall(r"round \d: without ([\d.]+) s/epoch, with ([\d.]+) s/epoch", proc.stdout)
    assert len(rounds) == 2 and all(float(a) > 0 and float(b) > 0 for a, b in rounds)
    assert re.search(r"median ratio with/without holdout: [\d.]+", proc.stdout)
    assert "N=16 gridsize=2 nphotons=10000" in proc.stdout


def test_bad_override_exits_2_naming_the_key():
    proc = subprocess.run([sys.executable, str(SCRIPT), "training.holdout=2"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert "training.holdout" in proc.stderr and "Traceback" not in proc.stderr
