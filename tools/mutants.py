"""Test the graded tests: every plausible mistake must lose points, every correct alternative must keep them.

    python -m tools.mutants [--jobs 2] [--only ID ...] [--question 1.2 ...] [--out mutants.json]
    make mutants

The catalogue, ``tests/mutants/part*.toml``, lists entries of two kinds, each an exact edit of one
file of the reference package (``old`` occurs exactly once in it and becomes ``new``):

    [[mutant]]                      # a student's mistake: the question's graded tests must lose points
    id = "rnn-step-no-tanh"
    file = "part1/models.py"
    question = "1.2"
    misconception = "the hidden state skips the tanh non-linearity"
    feedback = "the tanh is missing"  # the phrase of the failure message that names it (required)
    old = "..."
    new = "..."

    [[alternative]]                 # a correct answer that differs from the reference: full points
    id = "..."  file = ...  question = ...
    reason = "why it is right"      # also for a mutant judged equivalent
    old = "..."  new = "..."

Each entry runs on its own copy of the reference, with the graded and hidden tests of its question
(``pytest --question``), in one process as on a student's machine. The report gives, for each
entry, the points, the tests that failed and the first lines of what the student would read.
Exit status 1 if a mutant keeps every point, its failure does not say the phrase of its ``feedback``
(the tests caught the mistake without naming it), an alternative loses a point, or an edit no longer
applies (the reference changed under it): all four are defects.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader.files import atomic_write
from grader.report import REREAD

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "tests" / "mutants"
TESTS = ("tests/graded", "tests/hidden")
KINDS = {"mutant": "misconception", "alternative": "reason"}  # each kind's sentence


class CatalogueError(ValueError):
    """An entry that cannot be run: a missing field, a duplicate id, or an edit that no longer applies."""


@dataclass
class Entry:
    kind: str  # "mutant" or "alternative"
    id: str
    file: str  # under the package, e.g. "part1/models.py"
    question: str
    why: str  # the misconception (mutant) or the reason it is right (alternative)
    old: str
    new: str
    feedback: str = ""  # mutants: the phrase of the failure message that names the misconception (case-insensitive)


@dataclass
class Outcome:
    id: str
    kind: str
    question: str
    why: str
    score: float = 0.0
    possible: float = 0.0
    failed: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)  # the first lines of each failure, as the student reads them
    seconds: float = 0.0
    error: str = ""
    expected_feedback: str = ""

    @property
    def named(self) -> bool:
        """The student reads the phrase that names the misconception (mutants)."""
        return self.expected_feedback.lower() in "\n".join(self.feedback).lower()

    @property
    def ok(self) -> bool:
        if self.error or not self.possible:
            return False
        if self.kind == "mutant":
            return self.score < self.possible and self.named
        return self.score == self.possible


def load_catalogue(folder: Path = CATALOGUE, package: Path = ROOT / "solutions") -> list[Entry]:
    """Every entry of ``folder/*.toml``, checked against ``package``; raises CatalogueError."""
    entries, seen = [], set()
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for kind, sentence in KINDS.items():
            for raw in data.get(kind, []):
                where = f"{path.name}: {kind} {raw.get('id', '?')!r}"
                required = ("id", "file", "question", sentence, "old", "new") + (("feedback",) if kind == "mutant" else ())
                missing = [k for k in required if not raw.get(k)]
                if missing:
                    raise CatalogueError(f"{where}: missing {', '.join(missing)}")
                if raw["id"] in seen:
                    raise CatalogueError(f"{where}: the id is used twice")
                seen.add(raw["id"])
                source = package / raw["file"]
                count = source.read_text().count(raw["old"]) if source.is_file() else 0
                if count != 1:
                    raise CatalogueError(f"{where}: `old` occurs {count} times in {raw['file']}, not once (stale?)")
                entries.append(Entry(kind, raw["id"], raw["file"], str(raw["question"]), raw[sentence],
                                     raw["old"], raw["new"], raw.get("feedback", "")))
    return entries


def regions(package: Path = ROOT / "solutions") -> list[tuple[str, str, int, int]]:
    """Every solution region of the reference: (file, its BEGIN line's text, start and end offsets)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text, offset, begin = path.read_text(), 0, None
        for line in text.splitlines(keepends=True):
            if "### BEGIN SOLUTION" in line:
                begin = (line.split("### BEGIN SOLUTION", 1)[1].strip(), offset)
            elif "### END SOLUTION" in line and begin is not None:
                found.append((str(path.relative_to(package)), begin[0], begin[1], offset))
                begin = None
            offset += len(line)
    return found


def uncovered(entries: list[Entry], package: Path = ROOT / "solutions") -> list[str]:
    """The solution regions that no mutant edits."""
    edits = [(e.file, (package / e.file).read_text().index(e.old)) for e in entries if e.kind == "mutant"]
    return [f"{file}: {label}" for file, label, start, end in regions(package)
            if not any(f == file and start <= at < end for f, at in edits)]


def run(entry: Entry, scratch: Path, package: Path = ROOT / "solutions") -> Outcome:
    """Grade one entry's edit of the reference with its question's tests."""
    start = time.monotonic()
    outcome = Outcome(entry.id, entry.kind, entry.question, entry.why, expected_feedback=entry.feedback)
    work = Path(tempfile.mkdtemp(prefix=f"{entry.id}-", dir=scratch))
    copy = work / "mutant"  # another name than the reference's, so that nothing imports the reference instead
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / entry.file
    target.write_text(target.read_text().replace(entry.old, entry.new, 1))
    results = work / "results.json"
    done = subprocess.run([sys.executable, "-m", "pytest", *TESTS, f"--impl={copy}", f"--question={entry.question}",
                           f"--results={results}", "-q", "-p", "no:cacheprovider", "-p", "no:nbval"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    if results.is_file():
        report = json.loads(results.read_text())
        outcome.score, outcome.possible = report["score"], sum(t["max_score"] for t in report["tests"])
        for test in report["tests"]:
            if test["status"] != "passed":
                outcome.failed.append(test["name"].split("::")[-1].rstrip("]"))
                outcome.feedback.append(first_lines(test["output"]))
    else:
        outcome.error = (done.stdout + done.stderr)[-500:]
    shutil.rmtree(work, ignore_errors=True)
    outcome.seconds = round(time.monotonic() - start, 1)
    return outcome


def first_lines(output: str, lines: int = 3) -> str:
    """What a student reads first in a failure: pytest's error lines (``E   ...``) where it has them, else
    the first lines (without the chapter to re-read, which every failure of a question shares)."""
    kept = [line for line in output.splitlines() if not line.startswith(REREAD)]
    text = "\n".join(kept).replace("[call] ", "", 1).strip()
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
    return "\n".join((errors or text.splitlines())[:lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="entries run at once (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="only these entries")
    parser.add_argument("--question", nargs="+", help="only the entries of these questions")
    parser.add_argument("--out", type=Path, help="write every outcome here (JSON)")
    args = parser.parse_args(argv)
    try:
        entries = load_catalogue()
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    unknown = sorted(set(args.only or ()) - {e.id for e in entries})
    if unknown:
        parser.error(f"no such entries: {', '.join(unknown)}")
    entries = [e for e in entries if (not args.only or e.id in args.only)
               and (not args.question or e.question in args.question)]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch, ThreadPoolExecutor(args.jobs) as pool:
        outcomes = []
        for outcome in pool.map(lambda e: run(e, Path(scratch)), entries):
            outcomes.append(outcome)
            verdict = "ok" if outcome.ok else "DEFECT"
            print(f"{verdict:6} {outcome.kind:11} {outcome.id:40} {outcome.question:8} "
                  f"{outcome.score:g}/{outcome.possible:g}  {outcome.seconds:.0f} s", flush=True)
    if args.out is not None:
        atomic_write(args.out, json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")
    defects = [o for o in outcomes if not o.ok]
    mutants = [o for o in outcomes if o.kind == "mutant"]
    killed = [o for o in mutants if not o.error and o.score < o.possible]
    print(f"{len(killed)}/{len(mutants)} mutants killed, {sum(o.named for o in killed)} of them named by the "
          f"failure message, "
          f"{sum(o.ok for o in outcomes if o.kind == 'alternative')}/{len(outcomes) - len(mutants)} alternatives "
          f"at full points, in {time.monotonic() - start:.0f} s with {args.jobs} jobs")
    for outcome in defects:
        if outcome.kind == "alternative":
            what = f"loses points: {', '.join(outcome.failed)}"
        elif outcome.score < outcome.possible:
            what = f"the failure does not say {outcome.expected_feedback!r}"
        else:
            what = "survives with every point"
        print(f"DEFECT {outcome.id} ({outcome.question}): {what}{': ' + outcome.error if outcome.error else ''}")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
