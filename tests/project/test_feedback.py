"""What a student reads when a graded test fails: the chapter of the book to re-read, and the
misconception by name (every mistake of the catalogue, tests/mutants, has the phrase of its failure
message that names it, and the catalogue run, test_mutants.py, checks that the student reads it)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.graded import CHAPTERS
from tools import rubric
from tools.mutants import ROOT, first_lines, load_catalogue


def chapter_titles() -> set[str]:
    """The title (first level-1 heading) of every chapter of the book."""
    titles = set()
    for path in (ROOT / "book").rglob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        lines = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        titles.update(line[2:].strip() for text in lines for line in text.splitlines() if line.startswith("# "))
    return titles


def test_every_graded_question_names_a_chapter_of_the_book():
    graded = {q.number for q in rubric.questions(rubric.load()) if q.code or q.hidden}
    assert graded - set(CHAPTERS) == set(), "graded questions without a chapter to re-read"
    assert set(CHAPTERS) - graded == set(), "chapters for questions that no test grades"
    titles = chapter_titles()
    assert {q: c for q, c in CHAPTERS.items() if c not in titles} == {}, "not the title of a chapter of the book"


def test_every_mistake_of_the_catalogue_has_the_phrase_that_names_it():
    """load_catalogue refuses a mutant without one; the catalogue run (test_mutants.py) checks that the
    student reads it."""
    mutants = [e for e in load_catalogue() if e.kind == "mutant"]
    assert mutants and all(len(e.feedback.strip()) >= 8 for e in mutants), "a feedback phrase must say something"


def test_a_failure_says_what_to_re_read(tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/graded/test_part1_optimisers.py", "--impl=assignment",
                           f"--results={results}", "-q", "-p", "no:cacheprovider", "-p", "no:nbval"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    reread = f'Re-read the book\'s chapter "{CHAPTERS["1.4"]}".'
    assert done.stdout.count(reread) == 3, done.stdout[-3000:]  # under each failure, in the terminal
    tests = json.loads(results.read_text())["tests"]
    assert tests and all(t["output"].startswith(reread + "\n") for t in tests)  # and first in results.json
    assert all(reread not in first_lines(t["output"]) for t in tests)  # the runner records the error itself
