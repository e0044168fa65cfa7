"""The report: points per test and per question, and Gradescope's ``results.json``.

The plugin (``grader/plugin.py``) registers every test marked ``@pytest.mark.points(n, question="1.2")``
and records its outcome here; this module turns them into a table per question and results.json.

A test earns its points only when every phase (setup, call, teardown) passes. A failing
import, an exception, a timeout (pytest-timeout) or a skip scores 0 for that test alone; the
report is written whatever happens to the other tests.
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader.files import atomic_write

OUTPUT_LIMIT = 4000  # characters of failure text kept per test
REREAD = "Re-read the book's chapter"  # how a failure's pointer to the book begins (tools/mutants.py skips it)


@dataclass
class Result:
    name: str
    number: str  # the question, e.g. "1.2"
    max_score: float
    score: float = 0.0
    status: str = "passed"
    output: str = ""
    visibility: str = "visible"
    read: str = ""  # the book's chapter to re-read when the test fails
    phases: list[str] = field(default_factory=list, repr=False)


class Grader:
    """Collects graded results during a pytest session."""

    def __init__(self) -> None:
        self.results: dict[str, Result] = {}
        self.start = time.monotonic()
        self.notes: list[str] = []  # shown above the table (the autograder's notes on the submission)
        self.stopped: dict[str, list[str]] = {"timed_out": [], "crashed": []}  # tests whose probe never answered

    def register(self, item) -> None:
        marker = item.get_closest_marker("points")
        if marker is None:
            return
        if not marker.args or "question" not in marker.kwargs:
            raise ValueError(f"{item.nodeid}: use @pytest.mark.points(<points>, question='<q>')")
        doc = (getattr(item.function, "__doc__", None) or "").strip().splitlines()
        title = doc[0] if doc else item.name
        question = str(marker.kwargs["question"])
        self.results[item.nodeid] = Result(
            name=f"{title} [{item.nodeid}]", number=question, max_score=float(marker.args[0]),
            visibility=marker.kwargs.get("visibility", "visible"), read=reread(item, question))

    def record(self, report) -> None:
        result = self.results.get(report.nodeid)
        if result is None:
            return
        result.phases.append(report.when)
        if report.failed or report.skipped:
            result.status = "failed"
            text = report.longreprtext or ("skipped" if report.skipped else "failed")
            result.output = (result.output + f"[{report.when}] " + text[-OUTPUT_LIMIT:] + "\n").strip() + "\n"

    def finish(self) -> None:
        for result in self.results.values():
            if "call" not in result.phases:  # never ran (deselected, interrupted or failed in setup)
                result.status = "failed"
                result.output = result.output or "not run"
            result.score = result.max_score if result.status == "passed" else 0.0
            if result.status != "passed" and result.read and not result.output.startswith(result.read):
                result.output = f"{result.read}\n{result.output}"

    def by_question(self) -> dict[str, tuple[float, float]]:
        table: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in self.results.values():
            table[r.number][0] += r.score
            table[r.number][1] += r.max_score
        return {q: (s, m) for q, (s, m) in sorted(table.items(), key=lambda kv: question_key(kv[0]))}

    def summary_lines(self) -> list[str]:
        lines = [f"{'question':<10}{'points':>10}{'possible':>10}"]
        total = possible = 0.0
        for question, (score, maximum) in self.by_question().items():
            lines.append(f"{question:<10}{score:>10g}{maximum:>10g}")
            total, possible = total + score, possible + maximum
        lines.append(f"{'total':<10}{total:>10g}{possible:>10g}")
        return lines

    def gradescope(self) -> dict:
        tests = []
        for r in sorted(self.results.values(), key=lambda r: (question_key(r.number), r.name)):
            entry = asdict(r)
            entry.pop("phases")
            tests.append(entry)
        return {
            "score": sum(r.score for r in self.results.values()),
            "execution_time": round(time.monotonic() - self.start, 2),
            "output": "\n".join([*self.notes, *([""] if self.notes else []), *self.summary_lines()]),
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": self.stopped,
        }

    def write(self, path: Path) -> None:
        """Write results.json atomically (a reader never sees half a file)."""
        atomic_write(path, json.dumps(self.gradescope(), indent=2) + "\n")


def reread(item, question: str) -> str:
    """'Re-read the book's chapter "...".': the ``CHAPTERS`` entry of the test's package (``tests/graded``), if any."""
    package = sys.modules.get(item.module.__name__.rpartition(".")[0]) if getattr(item, "module", None) else None
    chapter = getattr(package, "CHAPTERS", {}).get(question)
    return f'{REREAD} "{chapter}".' if chapter else ""


def question_key(question: str) -> tuple:
    """Sort "1.10" after "1.9" and "3.1 (b)" after "3.1"."""
    return tuple(int(p) if p.isdigit() else p for p in question.replace("(", ".").replace(")", "").replace(" ", "").split("."))
