"""The grading machinery itself: the stubs are generated from the solutions, the solutions earn
every point, the pristine stubs earn none, and a broken submission cannot break the report."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.make_assignment import MarkerError, build, differences, strip_solutions

ROOT = Path(__file__).resolve().parents[2]


def grade(impl: str | Path, results: Path, *extra: str, tests: str = "tests/graded") -> dict:
    """Run the graded suite in a fresh process, as a student or an instructor would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pytest", tests, f"--impl={impl}", f"--results={results}", "-q",
                    "-p", "no:cacheprovider", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert results.exists(), "the grader must always write results.json"
    return json.loads(results.read_text())


def test_assignment_matches_what_the_tool_generates(tmp_path):
    fresh = tmp_path / "assignment"
    build(ROOT / "solutions", fresh)
    assert differences(fresh, ROOT / "assignment") == [], \
        "assignment/ drifted from solutions/: run `python -m tools.make_assignment`"


def test_stripper_replaces_regions_and_rejects_malformed_ones():
    source = "def f():\n    '''doc'''\n    ### BEGIN SOLUTION Question 9.9: implement f\n    return 1\n    ### END SOLUTION\n"
    assert strip_solutions(source) == "def f():\n    '''doc'''\n    raise NotImplementedError(\"Question 9.9: implement f\")\n"
    for bad in ["    ### BEGIN SOLUTION\n    ### END SOLUTION\n",          # no message
                "### BEGIN SOLUTION Q\nx = 1\n",                          # never closed
                "### END SOLUTION\n",                                     # never opened
                "### BEGIN SOLUTION Q\n### BEGIN SOLUTION Q\n### END SOLUTION\n"]:
        with pytest.raises(MarkerError):
            strip_solutions(bad)


@pytest.mark.timeout(1800)  # runs the graded suite in a child process
def test_solutions_earn_every_point(tmp_path):
    report = grade("solutions", tmp_path / "results.json")
    failed = [t["name"] + "\n" + t["output"] for t in report["tests"] if t["status"] != "passed"]
    assert not failed, "\n\n".join(failed)
    assert report["score"] == sum(t["max_score"] for t in report["tests"]) > 0
    for key in ("score", "execution_time", "tests"):
        assert key in report
    for test in report["tests"]:
        assert set(test) >= {"name", "number", "score", "max_score", "status", "output", "visibility"}


@pytest.mark.timeout(1800)  # runs the graded suite in a child process
def test_pristine_stubs_earn_nothing(tmp_path):
    """Every graded test fails on freshly generated stubs, and fails because of a stub."""
    build(ROOT / "solutions", tmp_path / "assignment")
    report = grade(tmp_path / "assignment", tmp_path / "results.json")
    assert report["tests"], "no graded test ran"
    assert report["score"] == 0
    free = [t["name"] for t in report["tests"] if t["status"] != "failed"]
    assert not free, f"tests a blank stub passes hand out free points: {free}"
    wrong_reason = [t["name"] for t in report["tests"] if "NotImplementedError" not in t["output"]]
    assert not wrong_reason, f"these tests fail on the stubs for another reason than a stub: {wrong_reason}"


@pytest.mark.timeout(1800)  # runs the graded suite in a child process
def test_a_broken_submission_cannot_break_the_report(tmp_path):
    """An import that exits, an endless loop and noise on stderr cost only the tests they touch."""
    package = tmp_path / "assignment"
    shutil.copytree(ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))  # a perfect submission
    gradients = package / "part1" / "gradients.py"
    gradients.write_text(gradients.read_text() + "\nimport sys\nsys.exit(0)\n")
    models = package / "part1" / "models.py"
    models.write_text(models.read_text() + "\nimport sys\nprint('noise', file=sys.stderr)\n")
    train = package / "part1" / "train.py"
    train.write_text(train.read_text().replace("    model.train()\n", "    while True:\n        pass\n", 1))
    report = grade(package, tmp_path / "results.json", "-o", "timeout=5", "-k", "not learns",
                   tests="tests/graded/test_part1.py")
    status = {t["name"].split("::")[-1].rstrip("]"): t for t in report["tests"]}
    assert status["test_rnn_gradients_by_hand_match_autograd"]["status"] == "failed"
    assert "SystemExit" in status["test_rnn_gradients_by_hand_match_autograd"]["output"]
    assert status["test_train_step_clips_global_norm"]["status"] == "failed"
    assert "Timeout" in status["test_train_step_clips_global_norm"]["output"]
    for name in ("test_rnn_step_matches_torch", "test_lstm_step_matches_torch", "test_lstm_parameter_count"):
        assert status[name]["status"] == "passed", status[name]["output"]
    assert 0 < report["score"] < sum(t["max_score"] for t in report["tests"])
