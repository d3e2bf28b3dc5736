"""Shared pytest setup: quiet TensorFlow logging, the repository on sys.path, Python's own
SIGINT handler (also when started with SIGINT ignored), and a guard against leaked ones."""

import os
import signal
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Started with SIGINT ignored (`nohup pytest &` from a non-interactive shell), Python keeps it
# ignored and so would every process the tests start (an ignored signal survives exec): the
# Ctrl-C tests could not signal anything. Tests run as from a terminal: Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _sigint_is_pythons():
    """Every test starts and ends with Python's own SIGINT handler: a module or test that
    replaces it (dask_jobqueue's import does) would change how Ctrl-C ends every later test."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, \
        "a SIGINT handler leaked into the test process before this test"
    yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, \
        "this test left its SIGINT handler installed"
