"""Every sweep file shipped in experiments/ loads and validates (keys, values, task), and is
named after its file, so each writes its own results/<name> and none goes stale unnoticed."""
from pathlib import Path

import pytest

from runner.sweep import load_sweep

FILES = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


def test_there_are_sweep_files():
    assert len(FILES) >= 2


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_shipped_sweep_file_is_valid_and_named_after_its_file(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    assert sweep.n_arms >= 1
