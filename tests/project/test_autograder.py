"""The Gradescope autograder: the zip runs end to end, and hostile submissions gain nothing.

Each hostile submission starts from the pristine stubs (so it deserves 0 points) and adds an
attack that runs when the graded test imports ``part1.models``. The graded selection is the hidden
test (one point, one child process) to keep this file at about two minutes.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.autograder import build_zip, grade
from tools.make_assignment import build

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = ["tests/hidden"]


def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                zf.write(path, f"{prefix}{path.relative_to(folder)}")
    return archive


def test_zip_has_what_gradescope_runs(tmp_path):
    names = build_zip(tmp_path / "autograder.zip")
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        assert sorted(zf.namelist()) == names
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(zf.getinfo(script).external_attr >> 16) & 0o111, f"{script} must be executable"
        setup = zf.read("setup.sh").decode()
        assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
        assert zf.read("requirements.txt") == (ROOT / "requirements.txt").read_bytes()
    assert {"tests/conftest.py", "tests/grading.py", "tools/autograder_plugin.py", "assignment/__init__.py",
            "tests/hidden/test_part1_hidden.py", "pytest.ini"} <= set(names)
    assert any(n.startswith("tests/graded/test_") for n in names)
    assert not [n for n in names if n.startswith(("solutions/", "tests/project/", "experiments/", "book/"))]
    # the skeleton is the stubs, not the reference code
    stubs = tmp_path / "stubs"
    build(ROOT / "solutions", stubs)
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        for path in stubs.rglob("*.py"):
            assert zf.read(f"assignment/{path.relative_to(stubs)}") == path.read_bytes()
    assert build_zip(tmp_path / "again.zip") == names
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "autograder.zip").read_bytes(), "not reproducible"


@pytest.mark.timeout(900)
def test_run_autograder_grades_a_zipped_submission(tmp_path):
    """Gradescope's layout in a temporary folder: the solutions, zipped, earn every point."""
    build_zip(tmp_path / "autograder.zip")
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        zf.extractall(tmp_path / "source")
    (tmp_path / "source" / "run_autograder").chmod(0o755)
    (tmp_path / "submission").mkdir()
    zip_folder(ROOT / "solutions", tmp_path / "submission" / "my_work.zip", "assignment/")
    env = {**os.environ, "AUTOGRADER_ROOT": str(tmp_path), "AUTOGRADER_PYTHON": sys.executable,
           "AUTOGRADER_ARGS": "--user= --tests tests/hidden tests/graded/test_part1_optimisers.py"}
    done = subprocess.run([str(tmp_path / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=900)
    results = tmp_path / "results" / "results.json"
    assert results.exists(), done.stdout + done.stderr
    report = json.loads(results.read_text())
    assert [t["status"] for t in report["tests"]] == ["passed"] * 4, report
    assert report["score"] == 4
    hidden = [t for t in report["tests"] if "tests/hidden/" in t["name"]]
    assert hidden and hidden[0]["visibility"] == "after_due_date"


# Each attack is appended to part1/models.py of the pristine stubs; {marker} proves that it ran.
ATTACKS = {
    "writes a perfect results.json": """
import json, pathlib
pathlib.Path({results!r}).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path({results!r}).write_text(json.dumps({{"score": 100.0, "tests": [{{"name": "forged", "score": 100.0,
    "max_score": 1.0, "status": "passed"}}]}}))
pathlib.Path({marker!r}).write_text("ran")
""",
    "patches pytest's reports to passed": """
import pathlib, _pytest.reports, _pytest.runner
_init = _pytest.reports.TestReport.__init__
def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.outcome, self.longrepr = "passed", None
_pytest.reports.TestReport.__init__ = __init__
_make = _pytest.runner.pytest_runtest_makereport
_pytest.runner.pytest_runtest_makereport = lambda item, call: (setattr(call, "excinfo", None), _make(item, call))[1]
pathlib.Path({marker!r}).write_text("ran")
""",
    "exits early with status 0": """
import os, pathlib
pathlib.Path({marker!r}).write_text("ran")
os._exit(0)
""",
    "writes forged records on every descriptor": """
import json, os, pathlib
for fd in os.listdir("/proc/self/fd"):
    for nodeid in ("tests/hidden/test_part1_hidden.py::test_lstm_on_one_hot_digits_matches_torch",):
        line = json.dumps({{"start": nodeid}}) + "\\n" + json.dumps({{"record": ["", nodeid, "passed", ""], "mac": "0" * 64}}) + "\\n"
        try:
            os.write(int(fd), line.encode())
        except OSError:
            pass
pathlib.Path({marker!r}).write_text("ran")
""",
}
CONFTEST = """
import pytest
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    report.outcome = "passed"
    return report
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_hostile_submission_gains_nothing(tmp_path, attack):
    package = tmp_path / "assignment"
    build(ROOT / "solutions", package)  # the pristine stubs: 0 points deserved
    results, marker = tmp_path / "results" / "results.json", tmp_path / "marker"
    models = package / "part1" / "models.py"
    models.write_text(models.read_text() + ATTACKS[attack].format(results=str(results), marker=str(marker)))
    (package / "conftest.py").write_text(CONFTEST)
    report = grade(tmp_path, results, tests=HIDDEN, user=None, per="test")
    assert marker.exists(), "the attack never ran: this test would prove nothing"
    assert report["score"] == 0 and [t["status"] for t in report["tests"]] == ["failed"], report
    assert json.loads(results.read_text()) == report, "results.json must be the grader's, not the submission's"
    assert "conftest.py" in report["output"]  # ignored, and said so


@pytest.mark.timeout(600)
def test_the_pytest_patch_would_fool_grading_in_process(tmp_path):
    """Control for the attack above: grading in the student's own process reports it as passed."""
    package = tmp_path / "assignment"
    build(ROOT / "solutions", package)
    models = package / "part1" / "models.py"
    marker = tmp_path / "marker"
    models.write_text(models.read_text() + ATTACKS["patches pytest's reports to passed"].format(marker=str(marker)))
    subprocess.run([sys.executable, "-m", "pytest", "tests/hidden", f"--impl={package}",
                    f"--results={tmp_path / 'naive.json'}", "-q", "-p", "no:cacheprovider"],
                   cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=600)
    assert marker.exists()
    assert json.loads((tmp_path / "naive.json").read_text())["score"] == 1, "the attack no longer fools plain pytest"


@pytest.mark.timeout(600)
def test_a_broken_upload_is_graded_as_the_stubs(tmp_path):
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "notes.txt").write_text("forgot the code")
    report = grade(tmp_path / "submission", tmp_path / "results.json", tests=HIDDEN, user=None)
    assert report["score"] == 0 and "no assignment/ package" in report["output"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escaped.py", "x = 1")
    report = grade(evil, tmp_path / "results.json", tests=HIDDEN, user=None)
    assert report["score"] == 0 and "outside the archive" in report["output"]
    assert not (tmp_path.parent / "escaped.py").exists()


@pytest.mark.timeout(900)
def test_batch_grading_writes_one_row_per_submission(tmp_path):
    """The solutions (a folder), the stubs (a zip) and a corrupt zip: one CSV row each, in one run."""
    from tools.batch_grade import batch
    folder = tmp_path / "submissions"
    (folder / "alice").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions", folder / "alice" / "assignment", ignore=shutil.ignore_patterns("__pycache__"))
    build(ROOT / "solutions", tmp_path / "stubs")
    zip_folder(tmp_path / "stubs", folder / "bob.zip", "")
    (folder / "carol.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    batch(folder, tmp_path / "scores.csv", time_limit=600, tests=HIDDEN, user="")
    with (tmp_path / "scores.csv").open() as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["alice", "bob", "carol"]
    assert (rows["alice"]["status"], rows["alice"]["1.6"], rows["alice"]["total"], rows["alice"]["possible"]) == \
        ("ok", "1.0", "1.0", "1.0")
    assert (rows["bob"]["status"], rows["bob"]["total"], rows["bob"]["error"]) == ("ok", "0.0", "")
    assert (rows["carol"]["status"], rows["carol"]["total"]) == ("error", "0.0")
    assert "could not read the submission" in rows["carol"]["error"]
    assert json.loads((tmp_path / "scores.csv.d" / "graded-tests.json").read_text())["tests"], "collected once, kept"
    assert json.loads((tmp_path / "scores.csv.d" / "alice.json").read_text())["score"] == 1


@pytest.mark.timeout(300)
def test_batch_grading_stops_a_submission_at_its_time_limit(tmp_path):
    from tools.batch_grade import grade_one
    package = tmp_path / "dave" / "assignment"
    build(ROOT / "solutions", package)
    models = package / "part1" / "models.py"
    models.write_text(models.read_text() + "\nwhile True:\n    pass\n")
    row = grade_one(tmp_path / "dave", tmp_path / "dave.json", 25, ["--tests", *HIDDEN, "--user=", "--timeout", "600"])
    assert row["status"] == "timeout" and row["seconds"] < 60 and "report" not in row
