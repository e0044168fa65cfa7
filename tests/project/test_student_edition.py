"""The student edition runs: every chapter it ships, executed top to bottom on a complete package.

The reference code is copied into the edition's ``assignment/`` (as a student's finished work would
be), and each notebook runs from the edition's own folder, with nothing on the path but the edition:
no ``solutions/``, no ``experiments/``, no data the edition does not ship. A chapter that needs any
of these fails here with its ImportError or FileNotFoundError.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from solutions.part2.books import MIRROR_ENV, mirror_folder

ROOT = Path(__file__).resolve().parents[2]


def complete(edition: Path) -> None:
    """Fill the edition's stubs with the reference code, file by file."""
    for path in sorted((ROOT / "solutions").rglob("*.py")):
        shutil.copyfile(path, edition / "assignment" / path.relative_to(ROOT / "solutions"))


def execute(notebook: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                           "--ExecutePreprocessor.timeout=900", notebook.name],
                          cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_every_student_chapter_runs_on_a_complete_package(release, tmp_path):
    edition = tmp_path / "student"
    shutil.copytree(release, edition, ignore=shutil.ignore_patterns("html"))
    complete(edition)
    notebooks = sorted((edition / "book").rglob("*.ipynb"))
    assert len(notebooks) >= 10, notebooks
    env = {**os.environ, "PYTHONPATH": "", "COURSE_BOOKS_CACHE": str(tmp_path / "cache")}
    mirror = mirror_folder()  # the books of Part 2: this machine's mirror, if it has one
    if mirror is not None:
        env[MIRROR_ENV] = str(mirror)
    with ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:  # one-thread kernels, side by side
        done = dict(zip(notebooks, pool.map(lambda nb: execute(nb, env), notebooks)))
    failed = {str(nb.relative_to(edition)): (run.stdout + run.stderr)[-1500:] for nb, run in done.items()
              if run.returncode != 0}
    assert not failed, "student chapters that do not run:\n" + "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())


@pytest.mark.timeout(900)
def test_the_student_edition_grades_itself(release, tmp_path):
    """``make grade`` in the edition: its public tests and the grader's plugin alone give the stubs 0 and a
    complete package every public point."""
    edition = tmp_path / "student"
    shutil.copytree(release, edition, ignore=shutil.ignore_patterns("html", "book"))
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}

    def grade() -> dict:
        subprocess.run([sys.executable, "-m", "pytest", "tests/graded", "--results=results.json", "-q",
                        "-p", "no:cacheprovider"], cwd=edition, env=env, capture_output=True, timeout=800)
        return json.loads((edition / "results.json").read_text())

    stubs = grade()
    assert stubs["score"] == 0 and stubs["tests"]
    complete(edition)
    report = grade()
    assert report["score"] == sum(t["max_score"] for t in report["tests"]) == sum(t["max_score"] for t in stubs["tests"])
    assert not [t for t in report["tests"] if "tests/hidden" in t["name"]]
