"""Helpers of the autograder's tests: submissions made from the stubs or the reference, and the
autograder and the batch run as an instructor runs them, in their own processes."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from grader.sandbox import DEFAULT_USER, can_run_as
from tools.make_assignment import build

ROOT = Path(__file__).resolve().parents[2]
OPTIMISERS = "tests/graded/test_part1_optimisers.py"  # three quick tests, one point each
MOMENTUM = f"{OPTIMISERS}::test_momentum_matches_torch_sgd"
RMSPROP = f"{OPTIMISERS}::test_rmsprop_matches_torch"
# As root, the grader refuses to run student code as root unless told to: the tests pass --allow-root where
# the dedicated user cannot run our Python here (e.g. a Python under a 0700 home); student code then runs
# as root without capabilities.
ALLOW_ROOT = os.geteuid() == 0 and not can_run_as(DEFAULT_USER)
ROOT_FLAGS = ["--allow-root"] if ALLOW_ROOT else []


def submission(folder: Path, code: str = "", solved: bool = False) -> Path:
    """A submission in ``folder``: the pristine stubs (or, ``solved``, the reference) with ``code``
    appended to part1/optimisers.py, so that it runs when a probe imports that module."""
    package = folder / "assignment"
    if solved:
        shutil.copytree(ROOT / "solutions", package, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        build(ROOT / "solutions", package)
    optimisers = package / "part1" / "optimisers.py"
    optimisers.write_text(optimisers.read_text() + code)
    return folder


def autograde(work: Path, *args: str, timeout: float = 600) -> tuple[dict, subprocess.CompletedProcess]:
    """``python -m grader.autograder --grade SUBMISSION --results ... ARGS``, as run_autograder runs it."""
    results = work / "results" / "results.json"
    done = subprocess.run([sys.executable, "-m", "grader.autograder", "--results", str(results), *ROOT_FLAGS, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert results.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results.read_text()), done


def local(package: Path, results: Path, *args: str) -> dict:
    """The graded tests run in one process with the student's code, as on a student's machine."""
    subprocess.run([sys.executable, "-m", "pytest", OPTIMISERS, f"--impl={package}", f"--results={results}",
                    "-q", "-p", "no:cacheprovider", *args], cwd=ROOT, capture_output=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(results.read_text())


def statuses(report: dict) -> dict[str, str]:
    return {t["name"].split("::")[-1].rstrip("]"): t["status"] for t in report["tests"]}


def outputs(report: dict) -> str:
    return "\n".join(t["output"] for t in report["tests"])


def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                zf.write(path, f"{prefix}{path.relative_to(folder)}")
    return archive


def read_scores(path: Path) -> dict[str, dict]:
    with path.open() as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


def processes_with(marker: str) -> list[int]:
    """The processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            pass
    return [pid for pid in found if pid != os.getpid()]
