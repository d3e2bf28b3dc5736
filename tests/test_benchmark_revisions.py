"""benchmarks/revisions.py runs each revision's own copy of a benchmark, interleaved, reads the
figure and prints the ratio; bad input exits 2 with one line; no worktree is left behind."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "revisions.py"
BENCH = "import sys\nprint('samples/s', {value})\nprint(sys.argv[1:])\n"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def toy_repo(tmp_path):
    """A repository whose ``bench.py`` prints 10.0 at the first commit and 15.0 at the second."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    for value in (10.0, 15.0):
        (repo / "bench.py").write_text(BENCH.format(value=value))
        git(repo, "add", "bench.py")
        git(repo, "commit", "-q", "-m", f"value {value}")
    return repo


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_interleaves_the_revisions_and_prints_the_ratio(tmp_path):
    repo = toy_repo(tmp_path)
    proc = run("HEAD~1", "HEAD", "--repo", str(repo), "--rounds", "2",
               "--figure", r"samples/s ([0-9.]+)", "--", "bench.py", "--flag")
    assert proc.returncode == 0, proc.stderr
    rounds = re.findall(r"round (\d)  ([AB]) +\S+  ([0-9.]+)", proc.stdout)
    assert rounds == [("1", "A", "10"), ("1", "B", "15"), ("2", "A", "10"), ("2", "B", "15")]
    assert "ratio B / A: median 1.500" in proc.stdout
    assert "A       HEAD~1  median 10  range 10 to 10  (2 rounds)" in proc.stdout
    assert git(repo, "worktree", "list").count("\n") == 0  # only the main tree


def test_the_same_revision_twice_is_an_a_a_run(tmp_path):
    repo = toy_repo(tmp_path)
    proc = run("HEAD", "HEAD", "--repo", str(repo), "--rounds", "1",
               "--figure", r"samples/s ([0-9.]+)", "--", "bench.py")
    assert proc.returncode == 0, proc.stderr
    assert "ratio B / A: median 1.000" in proc.stdout


def test_bad_input_exits_2_with_one_line(tmp_path):
    repo = toy_repo(tmp_path)
    fig = ["--figure", r"samples/s ([0-9.]+)"]
    cases = [
        (["HEAD", "nosuchrev", "--repo", str(repo), *fig, "--", "bench.py"], "'nosuchrev'"),
        (["HEAD~1", "HEAD", "--repo", str(repo), *fig, "--", "nothere.py"], "nothere.py"),
        (["HEAD~1", "HEAD", "--repo", str(repo), *fig], "no benchmark command"),
        (["HEAD~1", "HEAD", "--repo", str(repo), "--figure", "x(", "--", "bench.py"],
         "--figure"),
        (["HEAD~1", "HEAD", "--repo", str(repo), "--figure", "x", "--", "bench.py"],
         "needs a group"),
    ]
    for args, named in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert named in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert git(repo, "worktree", "list").count("\n") == 0


def test_a_figure_missing_from_the_output_fails_naming_the_round(tmp_path):
    repo = toy_repo(tmp_path)
    proc = run("HEAD~1", "HEAD", "--repo", str(repo), "--rounds", "1",
               "--figure", r"seconds ([0-9.]+)", "--", "bench.py")
    assert proc.returncode == 1
    assert "round 1, HEAD~1" in proc.stderr and "matched nothing" in proc.stderr
    assert "Traceback" not in proc.stderr
