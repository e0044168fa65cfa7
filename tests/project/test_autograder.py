"""The Gradescope autograder: the zip runs end to end, and hostile submissions gain nothing.

Each hostile submission starts from the pristine stubs (so it deserves 0 points) and adds an
attack that runs when the graded test imports ``part1.models``. The graded selection is the hidden
test (one point, one child process). Each hole closed later (a symlink, a zip bomb, a test that
ignores its time limit, ...) has a test of its own that grades a few quick tests of
``test_part1_optimisers.py``, or none: a refused submission runs no child.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tools.autograder import build_zip, can_drop_privileges, find_package, grade, hidden_lines
from tools.make_assignment import build

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = ["tests/hidden"]
OPTIMISERS = ["tests/graded/test_part1_optimisers.py"]  # three quick tests, for the checks of single holes
MOMENTUM = "tests/graded/test_part1_optimisers.py::test_momentum_matches_torch_sgd"
# As root, the grader refuses to run student code as root unless told to: the tests that grade as the
# default user (nobody) pass --allow-root exactly where the grader's own check says the drop fails here
# (e.g. a Python under a 0700 home).
ALLOW_ROOT = os.geteuid() == 0 and not can_drop_privileges("nobody")
ROOT_FLAGS = ["--allow-root"] if ALLOW_ROOT else []


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
        # nobody reads the tests, but not the hidden ones (the grader copies those a child runs)
        assert setup.index("chmod -R a+rX /autograder/source") < setup.index("chmod -R go-rwx /autograder/source/tests/hidden")
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


# ----------------------------------------------------------------------------- holes, each closed

def stubs_with(folder: Path, code: str, solved: bool = False) -> Path:
    """A submission in ``folder``: the pristine stubs (or, ``solved``, the solutions), running ``code`` when a
    test imports part1.optimisers."""
    package = folder / "assignment"
    if solved:
        shutil.copytree(ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        build(ROOT / "solutions", package)
    optimisers = package / "part1" / "optimisers.py"
    optimisers.write_text(optimisers.read_text() + code)
    return folder


def test_the_command_line_grades_a_keyword_selection(tmp_path):
    """-k collects twice (every graded test, then the selection): once crashed with FileExistsError."""
    build(ROOT / "solutions", tmp_path / "submission" / "assignment")
    results = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "tools.autograder", "--grade", str(tmp_path / "submission"),
                           "--results", str(results), "--tests", *OPTIMISERS, "-k", "momentum", *ROOT_FLAGS],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(results.read_text())
    assert [t["name"].endswith(f"[{MOMENTUM}]") for t in report["tests"]] == [True] and report["score"] == 0
    assert ("student code ran as root (--allow-root)" in report["output"]) == ALLOW_ROOT


@pytest.mark.timeout(600)
def test_batch_grading_keeps_a_folder_and_a_zip_of_one_name_apart(tmp_path):
    """A folder x beside x.zip once aborted the whole batch: now two rows, x and x.zip."""
    from tools.batch_grade import batch
    folder = tmp_path / "submissions"
    build(ROOT / "solutions", folder / "x" / "assignment")
    (folder / "x.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    batch(folder, tmp_path / "scores.csv", time_limit=300, tests=OPTIMISERS, allow_root=ALLOW_ROOT)
    with (tmp_path / "scores.csv").open() as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["x", "x.zip"]
    assert (rows["x"]["status"], rows["x"]["total"], rows["x"]["possible"]) == ("ok", "0.0", "3.0")
    assert rows["x.zip"]["status"] == "error" and "could not read" in rows["x.zip"]["error"]
    assert {p.name for p in (tmp_path / "scores.csv.d").glob("x*.json")} == {"x.json", "x.zip.json"}


@pytest.mark.timeout(300)
def test_a_batch_row_names_the_tests_that_timed_out(tmp_path):
    """Tests that all time out once left status ok and an empty error column."""
    from tools.batch_grade import grade_one
    submission = stubs_with(tmp_path / "erin", "\nimport time\ntime.sleep(600)\n")
    row = grade_one(submission, tmp_path / "erin.json", 300, ["--tests", *OPTIMISERS, "-k", "momentum or rmsprop",
                                                              "--timeout", "2", *ROOT_FLAGS])
    assert row["status"] == "incomplete", row
    assert row["error"] == "timed out: test_momentum_matches_torch_sgd, test_rmsprop_matches_torch"
    assert row["report"]["extra_data"]["timed_out"] == [MOMENTUM, MOMENTUM.replace("momentum_matches_torch_sgd",
                                                                                  "rmsprop_matches_torch")]


@pytest.mark.timeout(300)
def test_a_test_that_ignores_its_time_limit_costs_only_that_limit(tmp_path):
    """SIGALRM ignored and a busy loop: pytest-timeout cannot stop it, the parent kills the child 10 s
    past the test's limit (it once waited 120 s plus 60 s a test)."""
    code = "\nimport signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    submission = stubs_with(tmp_path / "frank", code)
    start = time.monotonic()
    report = grade(submission, tmp_path / "results.json", tests=OPTIMISERS, keyword="momentum", timeout=2,
                   allow_root=ALLOW_ROOT)
    seconds = time.monotonic() - start
    assert seconds < 60, f"the child was stopped after {seconds:.0f} s, not 2 + 10 s and a start-up"
    [test] = report["tests"]
    assert test["status"] == "failed" and "ignored pytest-timeout" in test["output"], test
    assert report["extra_data"] == {"timed_out": [MOMENTUM], "crashed": []}


def zip_of(archive: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def refusal(submission: Path, scratch: Path) -> str:
    with pytest.raises(ValueError) as refused:
        find_package(submission, scratch)
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
    # what zip tools add is skipped, not refused
    fine = zip_of(tmp_path / "fine.zip", {"assignment/__init__.py": b"", "assignment/.DS_Store": b"\0",
                                          "__MACOSX/assignment/._x.py": b"\0"})
    found = find_package(fine, tmp_path / "scratch6")
    assert found.name == "assignment" and sorted(p.name for p in found.iterdir()) == ["__init__.py"]


@pytest.mark.timeout(300)
def test_a_refused_zip_scores_0_and_says_why(tmp_path):
    zip_of(tmp_path / "bomb.zip", {"assignment/part1/big.py": b"#" * (21 * 2**20)})
    report = grade(tmp_path / "bomb.zip", tmp_path / "results.json", tests=OPTIMISERS, allow_root=ALLOW_ROOT)
    assert report["score"] == 0
    [why] = [line for line in report["output"].splitlines() if line.startswith("could not read")]
    assert "bomb.zip: too large (at most 2000 files and 20 MiB unpacked" in why


@pytest.mark.timeout(300)
def test_a_submission_with_a_symlink_is_refused(tmp_path):
    """A link to the solutions (the package, one file of it, or the whole submission) once earned their points."""
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "assignment").symlink_to(ROOT / "solutions")
    assert "symlink assignment" in refusal(linked, tmp_path / "scratch")
    one_file = tmp_path / "one-file"
    build(ROOT / "solutions", one_file / "assignment")
    (one_file / "assignment" / "part1" / "optimisers.py").unlink()
    (one_file / "assignment" / "part1" / "optimisers.py").symlink_to(ROOT / "solutions" / "part1" / "optimisers.py")
    assert "symlink assignment/part1/optimisers.py" in refusal(one_file, tmp_path / "scratch")
    (tmp_path / "whole").symlink_to(ROOT / "solutions")
    assert "symlink whole" in refusal(tmp_path / "whole", tmp_path / "scratch")
    report = grade(linked, tmp_path / "results.json", tests=OPTIMISERS, allow_root=ALLOW_ROOT)
    assert report["score"] == 0 and "refusing the symlink assignment" in report["output"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
def test_as_root_the_grader_will_not_run_student_code_as_root_unasked(tmp_path, monkeypatch, capsys):
    """A Python that nobody cannot run (simulated) once meant a stderr warning and student code as root."""
    import tools.autograder
    from tools import batch_grade
    monkeypatch.setattr(tools.autograder, "can_drop_privileges", lambda user: False)
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "notes.txt").write_text("no code")
    results = tmp_path / "results.json"
    handler = signal.getsignal(signal.SIGTERM)  # main() installs its own
    try:
        assert tools.autograder.main(["--grade", str(tmp_path / "submission"), "--results", str(results),
                                      "--tests", *OPTIMISERS]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert "'nobody' cannot run" in line and "--allow-root" in line and not results.exists()
        assert batch_grade.main([str(tmp_path), "--out", str(tmp_path / "scores.csv"), "--tests", *OPTIMISERS]) == 2
        assert capsys.readouterr().err.splitlines() == [line] and not (tmp_path / "scores.csv").exists()
        assert tools.autograder.main(["--grade", str(tmp_path / "submission"), "--results", str(results),
                                      "--tests", *OPTIMISERS, "--allow-root"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert json.loads(results.read_text())["output"].startswith("note: student code ran as root (--allow-root)")


@pytest.mark.timeout(300)
def test_a_visible_test_can_neither_read_nor_show_the_hidden_tests(tmp_path):
    """The hidden tests were copied into every child's folder; and a child that reads the grader's own
    copy cannot print it in a visible test's output."""
    hidden = ROOT / "tests" / "hidden" / "test_part1_hidden.py"
    code = f"""
import os, pathlib
try:
    _source = pathlib.Path({str(hidden)!r}).read_text()
except OSError:
    _source = ""
raise RuntimeError(_source + f"\\nread the grader's copy: {{bool(_source)}}"
                   f"\\ncopied into this child: {{os.path.exists('tests/hidden/test_part1_hidden.py')}}")
"""
    submission = stubs_with(tmp_path / "gina", code)
    report = grade(submission, tmp_path / "results.json", tests=OPTIMISERS, keyword="momentum",
                   allow_root=ALLOW_ROOT)
    [test] = report["tests"]
    assert "copied into this child: False" in test["output"], test["output"]
    secret = hidden_lines()
    assert "def test_lstm_on_one_hot_digits_matches_torch(load):" in secret
    assert not [line for line in secret if line in test["output"]], test["output"]
    if "read the grader's copy: True" in test["output"]:
        assert "[withheld: a line of a hidden test]" in test["output"]


# ----------------------------------------------------------------------------- descendants and resources

# Leaves the child's session twice (a fork that calls setsid, and a double fork whose grandchild does),
# each escaped process writing its pid to {prefix}.<how>; the import waits until both are written.
ESCAPE = """
import os, time
def _escape(how):
    if os.fork() == 0:
        if how == "double" and os.fork() != 0:
            os._exit(0)
        os.setsid()
        with open({prefix!r} + "." + how + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename({prefix!r} + "." + how + ".tmp", {prefix!r} + "." + how)
        time.sleep(600)
        os._exit(0)
    for _ in range(200):
        if os.path.exists({prefix!r} + "." + how):
            break
        time.sleep(0.05)
_escape("setsid")
_escape("double")
"""


def escaped_pids(prefix: Path) -> list[int]:
    """The pids the ESCAPE code wrote, after checking that it ran."""
    files = [prefix.with_name(f"{prefix.name}.{how}") for how in ("setsid", "double")]
    assert all(f.exists() for f in files), "the escape never ran: this test would prove nothing"
    return [int(f.read_text()) for f in files]


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # neither running nor an unreaped zombie


@pytest.mark.timeout(300)
def test_a_process_that_leaves_the_session_dies_with_the_child(tmp_path):
    """A fork that calls setsid, or a double fork, escaped killpg and outlived grading (in a batch it once
    killed later students' processes): the grader is a subreaper, and kills and reaps every descendant."""
    prefix = tmp_path / "escaped"
    submission = stubs_with(tmp_path / "hal", ESCAPE.format(prefix=str(prefix)))
    report = grade(submission, tmp_path / "results.json", tests=OPTIMISERS, keyword="momentum", user=None)
    pids = escaped_pids(prefix)
    assert report["score"] == 0 and len(report["tests"]) == 1
    assert_gone(pids)


@pytest.mark.timeout(600)
def test_a_batch_leaves_no_process_behind(tmp_path):
    """The same escape in a batch, beside the solutions: no escaped process outlives the batch, and the
    solutions still earn every point."""
    from tools.batch_grade import batch
    folder = tmp_path / "submissions"
    prefix = tmp_path / "escaped"
    stubs_with(folder / "ian", ESCAPE.format(prefix=str(prefix)))
    shutil.copytree(ROOT / "solutions", folder / "jo" / "assignment", ignore=shutil.ignore_patterns("__pycache__"))
    batch(folder, tmp_path / "scores.csv", time_limit=300, tests=OPTIMISERS, user="")
    with (tmp_path / "scores.csv").open() as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert (rows["ian"]["status"], rows["ian"]["total"]) == ("ok", "0.0")
    assert (rows["jo"]["status"], rows["jo"]["total"], rows["jo"]["possible"]) == ("ok", "3.0", "3.0")
    assert_gone(escaped_pids(prefix))


@pytest.mark.timeout(300)
def test_a_huge_file_is_cut_at_the_limit_and_the_score_is_honest(tmp_path):
    """The solutions, writing 200 MiB at import: the write stops at 64 MiB (OSError, not a crash: Python
    ignores SIGXFSZ), and the test they pass still scores."""
    from tools.autograder import FILE_LIMIT
    big = tmp_path / "big.bin"
    code = f"""
try:
    with open({str(big)!r}, "wb") as _f:
        for _ in range(200):
            _f.write(bytes(2**20))
except OSError as _exc:
    open({str(big)!r} + ".error", "w").write(repr(_exc))
"""
    submission = stubs_with(tmp_path / "kim", code, solved=True)
    report = grade(submission, tmp_path / "results.json", tests=OPTIMISERS, keyword="momentum", user=None)
    assert "File too large" in (tmp_path / "big.bin.error").read_text()
    assert big.stat().st_size <= FILE_LIMIT < 200 * 2**20
    assert report["score"] == 1 and [t["status"] for t in report["tests"]] == ["passed"], report


@pytest.mark.timeout(300)
def test_a_test_that_allocates_far_too_much_fails_alone(tmp_path):
    """8 GiB (less than this machine has, so only the limit refuses it; torch maps it without touching it)
    during one test of the solutions: that test fails, the other passes, the grader carries on."""
    marker = tmp_path / "refused"
    code = f"""
import os, torch
if "momentum" in os.environ.get("PYTEST_CURRENT_TEST", ""):
    try:
        _hoard = torch.empty(8 * 2**30, dtype=torch.uint8)
    except (MemoryError, RuntimeError) as _exc:
        open({str(marker)!r}, "w").write(repr(_exc))
        raise
"""
    submission = stubs_with(tmp_path / "lee", code, solved=True)
    report = grade(submission, tmp_path / "results.json", tests=OPTIMISERS, keyword="momentum or rmsprop",
                   user=None, per="test")
    assert marker.exists(), "the allocation was not refused: no memory limit"
    status = {t["name"].split("::")[-1].rstrip("]"): t["status"] for t in report["tests"]}
    assert status == {"test_momentum_matches_torch_sgd": "failed", "test_rmsprop_matches_torch": "passed"}, report


@pytest.mark.timeout(300)
def test_a_flood_of_output_does_not_grow_the_grader(tmp_path):
    """256 MiB written straight to the child's output pipe (past pytest's capture) once made the grader peak
    at 2.6 GB: it keeps only the tail, and its peak RSS stays far below the flood."""
    code = """
import os
for _fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{_fd}").startswith("pipe:"):
            for _ in range(256):
                os.write(int(_fd), b"x" * 2**20)
            open(%r, "w").write(_fd)
    except OSError:
        pass
""" % str(tmp_path / "flooded")
    submission = stubs_with(tmp_path / "max", code)
    # The peak is this process image's own high-water mark (VmHWM): ru_maxrss survives execve, so it
    # would report the pytest process that started us.
    script = ("import json, re, sys; from tools.autograder import grade; "
              f"r = grade({str(submission)!r}, {str(tmp_path / 'results.json')!r}, tests={OPTIMISERS!r}, "
              "keyword='momentum', user=None); "
              "peak = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]); "
              "print(json.dumps([r['score'], peak]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    score, peak_kib = json.loads(done.stdout.splitlines()[-1])
    assert (tmp_path / "flooded").exists(), "the flood never ran: this test would prove nothing"
    print(f"the grader's peak RSS: {peak_kib / 1024:.0f} MiB")
    assert score == 0 and peak_kib < 160 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
