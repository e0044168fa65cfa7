"""The autograder: the bundle Gradescope runs, the reference and the stubs graded in the sandbox,
the command line, batch grading, and the submission checks. The hostile submissions are in
``test_red_team.py``."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader.batch import batch, grade_one
from grader.bundle import build_zip
from grader.submission import find_package
from tests.project.autograding import (ALLOW_ROOT, MOMENTUM, OPTIMISERS, RMSPROP, ROOT, ROOT_FLAGS, autograde,
                                       read_scores, statuses, submission, zip_folder)
from tools.make_assignment import build


def test_the_bundle_has_what_gradescope_runs_and_no_reference(tmp_path):
    names = build_zip(tmp_path / "autograder.zip")
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        assert sorted(zf.namelist()) == names
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(zf.getinfo(script).external_attr >> 16) & 0o111, f"{script} must be executable"
        setup = zf.read("setup.sh").decode()
        assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
        assert "useradd --system --no-create-home --shell /usr/sbin/nologin autograder-student" in setup
        assert "chmod -R go-rwx /autograder/source" in setup  # the tests are root's alone
        assert zf.read("requirements.txt") == (ROOT / "requirements.txt").read_bytes()
    assert {"grader/autograder.py", "grader/plugin.py", "grader/sandbox.py", "grader/worker.py", "grader/jail.py",
            "assignment/__init__.py", "tests/hidden/test_part1_hidden.py", "pytest.ini"} <= set(names)
    assert not [n for n in names if n.startswith(("solutions/", "tests/project/", "experiments/", "book/", "tools/"))]
    stubs = tmp_path / "stubs"
    build(ROOT / "solutions", stubs)
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        for path in stubs.rglob("*.py"):
            assert zf.read(f"assignment/{path.relative_to(stubs)}") == path.read_bytes()
    assert build_zip(tmp_path / "again.zip") == names
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "autograder.zip").read_bytes(), "not reproducible"


@pytest.mark.timeout(900)
def test_run_autograder_grades_a_zipped_submission(tmp_path):
    """Gradescope's layout in a temporary folder: the reference, zipped, earns every point it is graded on."""
    build_zip(tmp_path / "autograder.zip")
    with zipfile.ZipFile(tmp_path / "autograder.zip") as zf:
        zf.extractall(tmp_path / "source")
    (tmp_path / "source" / "run_autograder").chmod(0o755)
    (tmp_path / "submission").mkdir()
    zip_folder(ROOT / "solutions", tmp_path / "submission" / "my_work.zip", "assignment/")
    env = {**os.environ, "AUTOGRADER_ROOT": str(tmp_path), "AUTOGRADER_PYTHON": sys.executable,
           "AUTOGRADER_ARGS": " ".join([*ROOT_FLAGS, "--tests", "tests/hidden", OPTIMISERS])}
    done = subprocess.run([str(tmp_path / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=900)
    results = tmp_path / "results" / "results.json"
    assert results.exists(), done.stdout + done.stderr
    report = json.loads(results.read_text())
    assert {t["status"] for t in report["tests"]} == {"passed"}, report
    assert report["score"] == sum(t["max_score"] for t in report["tests"])
    hidden = [t for t in report["tests"] if "tests/hidden/" in t["name"]]
    assert hidden and {t["visibility"] for t in hidden} == {"after_due_date"}


@pytest.mark.timeout(1200)
def test_the_sandboxed_suite_gives_the_reference_every_point(tmp_path):
    """Every graded and hidden test, each probe in the sandbox: what runs locally runs there too."""
    report, done = autograde(tmp_path, "--grade", str(ROOT / "solutions"), timeout=1200)
    failed = [t["name"] + "\n" + t["output"] for t in report["tests"] if t["status"] != "passed"]
    assert not failed, "\n\n".join(failed)
    assert report["score"] == sum(t["max_score"] for t in report["tests"]) > 50
    assert report["extra_data"] == {"timed_out": [], "crashed": []}
    print(done.stdout.splitlines()[-1])


@pytest.mark.timeout(1200)
def test_the_sandboxed_suite_gives_the_stubs_nothing(tmp_path):
    build(ROOT / "solutions", tmp_path / "stubs" / "assignment")
    report, done = autograde(tmp_path, "--grade", str(tmp_path / "stubs"), timeout=1200)
    assert report["score"] == 0 and report["tests"]
    wrong_reason = [t["name"] for t in report["tests"] if "NotImplementedError" not in t["output"]]
    assert not wrong_reason, f"these tests fail on the stubs for another reason than a stub: {wrong_reason}"
    print(done.stdout.splitlines()[-1])


# ----------------------------------------------------------------------------- the command line


def test_the_command_line_grades_a_keyword_selection(tmp_path):
    """-k selects among the graded tests (it once crashed with FileExistsError)."""
    report, done = autograde(tmp_path, "--grade", str(submission(tmp_path / "s")), "--tests", OPTIMISERS,
                             "-k", "momentum")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [t["name"].endswith(f"[{MOMENTUM}]") for t in report["tests"]] == [True] and report["score"] == 0
    assert ("student code ran as root without capabilities (--allow-root)" in report["output"]) == ALLOW_ROOT


def test_the_command_line_names_bad_input_before_any_work(tmp_path):
    for args, message in [(["--grade", str(tmp_path / "nothing")], "no such submission"),
                          (["--grade", str(tmp_path), "--tests", "tests/nowhere"], "no such tests: tests/nowhere")]:
        done = subprocess.run([sys.executable, "-m", "grader.autograder", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr.splitlines()[-1], done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
def test_as_root_student_code_never_runs_as_root_unasked(tmp_path):
    """A user that cannot run our Python once meant a stderr warning and student code as root: now the
    grader and the batch stop before any work, with one line that names the fix."""
    folder = submission(tmp_path / "submissions" / "ann")
    grader = [sys.executable, "-m", "grader.autograder", "--grade", str(folder), "--results",
              str(tmp_path / "results.json"), "--tests", OPTIMISERS, "--user", "no-such-user"]
    done = subprocess.run(grader, cwd=ROOT, capture_output=True, text=True, timeout=300)
    [line] = done.stderr.splitlines()
    assert done.returncode == 2 and "'no-such-user' cannot run" in line and "--allow-root" in line
    assert not (tmp_path / "results.json").exists()
    done = subprocess.run([sys.executable, "-m", "grader.batch", str(tmp_path / "submissions"), "--out",
                           str(tmp_path / "scores.csv"), "--tests", OPTIMISERS, "--user", "no-such-user"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.splitlines() == [line]
    assert not (tmp_path / "scores.csv").exists()


# ----------------------------------------------------------------------------- batch grading


@pytest.mark.timeout(900)
def test_batch_grading_writes_one_row_per_submission(tmp_path):
    """The reference (a folder), the stubs (a zip), a corrupt zip, and a folder x beside a zip x.zip
    (which once aborted the whole batch): one CSV row each, in one run of two jobs."""
    folder = tmp_path / "submissions"
    submission(folder / "alice", solved=True)
    build(ROOT / "solutions", tmp_path / "stubs")
    zip_folder(tmp_path / "stubs", folder / "bob.zip", "")
    (folder / "carol.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    submission(folder / "x")
    (folder / "x.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    batch(folder, tmp_path / "scores.csv", time_limit=600, jobs=2, tests=[OPTIMISERS], allow_root=ALLOW_ROOT)
    rows = read_scores(tmp_path / "scores.csv")
    assert list(rows) == ["alice", "bob", "carol", "x", "x.zip"]
    assert (rows["alice"]["status"], rows["alice"]["1.4"], rows["alice"]["total"], rows["alice"]["possible"]) == \
        ("ok", "3.0", "3.0", "3.0")
    assert (rows["bob"]["status"], rows["bob"]["total"], rows["bob"]["error"]) == ("ok", "0.0", "")
    for name in ("carol", "x.zip"):
        assert rows[name]["status"] == "error" and "could not read the submission" in rows[name]["error"]
    assert (rows["x"]["status"], rows["x"]["total"], rows["x"]["possible"]) == ("ok", "0.0", "3.0")
    assert {p.name for p in (tmp_path / "scores.csv.d").glob("*.json")} == \
        {"alice.json", "bob.json", "carol.json", "x.json", "x.zip.json"}


@pytest.mark.timeout(300)
def test_batch_grading_stops_a_submission_at_its_time_limit(tmp_path):
    folder = submission(tmp_path / "dave", "\nwhile True:\n    pass\n")
    row = grade_one(folder, tmp_path / "dave.json", 25, ["--tests", OPTIMISERS, "--timeout", "600", *ROOT_FLAGS],
                    ROOT)  # a batch grades from the bundle; the repository serves here
    assert row["status"] == "timeout" and row["seconds"] < 60 and "report" not in row


@pytest.mark.timeout(300)
def test_a_row_names_the_tests_that_timed_out(tmp_path):
    """Tests that all time out once left status ok and an empty error column; a test that ignores its time
    limit (SIGALRM ignored, a busy loop) costs that limit, not 120 s plus 60 s a test."""
    code = "\nimport signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    start = time.monotonic()
    row = grade_one(submission(tmp_path / "erin", code), tmp_path / "erin.json", 300,
                    ["--tests", OPTIMISERS, "-k", "momentum or rmsprop", "--timeout", "3", *ROOT_FLAGS], ROOT)
    assert time.monotonic() - start < 90
    assert row["status"] == "incomplete", row
    assert row["error"] == "timed out: test_momentum_matches_torch_sgd, test_rmsprop_matches_torch"
    assert row["report"]["extra_data"] == {"timed_out": [MOMENTUM, RMSPROP], "crashed": []}
    assert "time limit" in row["report"]["tests"][0]["output"]


# ----------------------------------------------------------------------------- what a submission may be


def zip_of(archive: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def refusal(folder: Path, scratch: Path) -> str:
    with pytest.raises(ValueError) as refused:
        find_package(folder, scratch)
    return str(refused.value)


def test_a_zip_is_checked_before_it_is_unpacked(tmp_path):
    """A bomb (one 21 MiB file that compresses to 21 KB), 2001 files, a zip inside a zip that together
    pass 20 MiB, a file that is not .py, a symlink member: each refused, nothing of it unpacked."""
    bomb = zip_of(tmp_path / "bomb.zip", {"assignment/part1/big.py": b"#" * (21 * 2**20)})
    assert "too large" in refusal(bomb, tmp_path / "scratch")
    assert not list((tmp_path / "scratch").rglob("big.py")), "unpacked before it was checked"
    many = zip_of(tmp_path / "many.zip", {f"assignment/m{i}.py": b"" for i in range(2001)})
    assert "too large" in refusal(many, tmp_path / "scratch2")
    inner = zip_of(tmp_path / "inner.zip", {"assignment/part1/a.py": b"#" * (12 * 2**20)})
    nested = zip_of(tmp_path / "nested.zip", {"pad.py": b"#" * (12 * 2**20), "inner.zip": inner.read_bytes()})
    assert "too large" in refusal(nested, tmp_path / "scratch3")
    data = zip_of(tmp_path / "data.zip", {"assignment/__init__.py": b"", "assignment/weights.npy": b"\x93NUMPY"})
    assert "'assignment/weights.npy'" in refusal(data, tmp_path / "scratch4")
    link = zipfile.ZipInfo("assignment/part1/models.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, str(ROOT / "solutions" / "part1" / "models.py"))
    assert "symlink" in refusal(tmp_path / "link.zip", tmp_path / "scratch5")
    fine = zip_of(tmp_path / "fine.zip", {"assignment/__init__.py": b"", "assignment/.DS_Store": b"\0",
                                          "__MACOSX/assignment/._x.py": b"\0"})  # what zip tools add: skipped
    found = find_package(fine, tmp_path / "scratch6")
    assert found.name == "assignment" and sorted(p.name for p in found.iterdir()) == ["__init__.py"]


def test_a_submission_with_a_symlink_is_refused(tmp_path):
    """A link to the reference (the package, one file of it, or the whole submission) once earned its points."""
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "assignment").symlink_to(ROOT / "solutions")
    assert "symlink assignment" in refusal(linked, tmp_path / "scratch")
    one_file = submission(tmp_path / "one-file")
    (one_file / "assignment" / "part1" / "optimisers.py").unlink()
    (one_file / "assignment" / "part1" / "optimisers.py").symlink_to(ROOT / "solutions" / "part1" / "optimisers.py")
    assert "symlink assignment/part1/optimisers.py" in refusal(one_file, tmp_path / "scratch")
    (tmp_path / "whole").symlink_to(ROOT / "solutions")
    assert "symlink whole" in refusal(tmp_path / "whole", tmp_path / "scratch")


@pytest.mark.timeout(300)
def test_a_refused_submission_scores_0_and_says_why(tmp_path):
    zip_of(tmp_path / "bomb.zip", {"assignment/part1/big.py": b"#" * (21 * 2**20)})
    report, _ = autograde(tmp_path, "--grade", str(tmp_path / "bomb.zip"), "--tests", OPTIMISERS)
    assert report["score"] == 0 and set(statuses(report).values()) == {"failed"}
    [why] = [line for line in report["output"].splitlines() if line.startswith("could not read")]
    assert "bomb.zip: too large (at most 2000 files and 20 MiB unpacked" in why
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "assignment").symlink_to(ROOT / "solutions")
    report, _ = autograde(tmp_path, "--grade", str(linked), "--tests", OPTIMISERS)
    assert report["score"] == 0 and "refusing the symlink assignment" in report["output"]

