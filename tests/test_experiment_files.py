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


ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent for p in (ROOT / "results").glob("*/sweep.toml")
                 if (p.parent / "records").is_dir()
                 and (ROOT / "docs" / "results" / p.parent.name).is_dir())


@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_committed_studies_keep_their_ids(study):
    """A study committed as a resume point (results/<name>, copied to docs/results/<name>)
    resumes only if this code plans its recorded arms under the same ids: an option added to
    a config must leave them alone (``added_option``). Fails naming the first moved arm."""
    import json

    from runner.outdir import check_recorded_ids

    sweep = load_sweep(study / "sweep.toml", check_task=False)
    records = {r["arm_id"]: r for r in (json.loads(p.read_text())
                                        for p in (study / "records").glob("*.json"))}
    assert records
    check_recorded_ids(sweep, sweep.plan(), records, study)
