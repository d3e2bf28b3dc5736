"""A task module that must never be imported by the orchestrator (its validation is static)."""

import os
from pathlib import Path

Path(os.environ.get("RUNNER_TEST_BOMB", "/nonexistent/dir/bomb")).write_text("imported")
raise RuntimeError("runner_import_bomb was imported")


def run_unit(unit):  # pragma: no cover - never reached
    return []
