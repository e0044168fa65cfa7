"""The points of the assignment, from ``rubric.toml``: loaded, checked, and written out.

    python -m tools.rubric check                 # the rubric against the tests, the book and the docstrings
    python -m tools.rubric write                 # the answer sheets and the rubric pages of the book
    python -m tools.rubric outline --out dist/gradescope-outline.md   # make outline

``rubric.toml`` is the one source of every point (see its header). ``check`` fails, naming the
question, where the rubric does not add up (a question's code share plus its items, a part's
questions), where a question's code share differs from the points of its public graded tests
(``tests/graded``, collected by pytest as the grader collects them, parametrised cases included) or
its hidden share from ``tests/hidden``, and where a sidebar caption of ``book/_toc.yml``, a row of
``book/intro.md``'s table or a split in a graded test file's docstring says otherwise. ``write``
generates the answer sheets (``book/answers/partN.ipynb``, one section per hand-graded question)
and the rubric pages (``book/partN/rubric.md``); ``check`` also fails when they are out of date.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from grader.files import atomic_write

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "rubric.toml"
QUESTION_NUMBER = re.compile(r"^[1-9]\.[1-9](?: \([a-z]\))?$")  # "1.2", "2.1 (a)"


class RubricError(ValueError):
    """rubric.toml is malformed or does not add up."""


@dataclass
class Item:
    criterion: str
    points: float
    levels: list[str] = field(default_factory=list)


@dataclass
class Question:
    number: str
    title: str
    statement: str
    points: float
    code: float
    hidden: float = 0.0
    bonus: bool = False
    items: list[Item] = field(default_factory=list)
    starter: str = ""  # a code cell for the answer sheet, after the answer cell

    @property
    def part(self) -> int:
        return int(self.number[0])

    @property
    def hand(self) -> float:
        return sum(item.points for item in self.items)


@dataclass
class Part:
    number: int
    title: str
    points: float
    bonus: float = 0.0
    questions: list[Question] = field(default_factory=list)

    @property
    def code(self) -> float:
        return sum(q.code for q in self.questions)

    @property
    def hand(self) -> float:
        return sum(q.hand for q in self.questions)


def fmt(points: float) -> str:
    """3 -> "3", 1.5 -> "1.5"."""
    return f"{points:g}"


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RubricError(f"{where}: points must be a non-negative number, not {value!r}")
    return float(value)


def _text(table: dict, key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RubricError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def load(path: Path = RUBRIC) -> list[Part]:
    """The parts of the rubric with their questions, in order; RubricError names the first problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RubricError(f"{path.name}: {error}") from None
    parts: dict[int, Part] = {}
    for table in data.get("part", []):
        where = f"{path.name}: part {table.get('number')!r}"
        number = table.get("number")
        if not isinstance(number, int) or number in parts:
            raise RubricError(f"{where}: 'number' must be a new integer")
        parts[number] = Part(number, _text(table, "title", where), _number(table.get("points"), where),
                             _number(table.get("bonus", 0), where))
    starters = data.get("starters", {})
    seen: set[str] = set()
    for table in data.get("question", []):
        number = table.get("number")
        where = f"{path.name}: question {number!r}"
        if not isinstance(number, str) or not QUESTION_NUMBER.match(number) or number in seen:
            raise RubricError(f"{where}: 'number' must be a new question number like \"1.2\" or \"2.1 (a)\"")
        seen.add(number)
        unknown = set(table) - {"number", "title", "statement", "points", "code", "hidden", "bonus", "item", "starter"}
        if unknown:
            raise RubricError(f"{where}: unknown keys {sorted(unknown)}")
        items = []
        for i, entry in enumerate(table.get("item", []), 1):
            levels = entry.get("levels", [])
            if not isinstance(levels, list) or not all(isinstance(x, str) and re.match(r"^[\d.]+: \S", x) for x in levels):
                raise RubricError(f"{where}, item {i}: 'levels' must be a list of \"points: what earns them\"")
            item = Item(_text(entry, "criterion", f"{where}, item {i}"), _number(entry.get("points"), f"{where}, item {i}"), levels)
            for level in levels:
                if float(level.split(":")[0]) >= item.points:
                    raise RubricError(f"{where}, item {i}: the level {level!r} is not below the item's {fmt(item.points)} points")
            items.append(item)
        question = Question(number, _text(table, "title", where), _text(table, "statement", where),
                            _number(table.get("points"), where), _number(table.get("code", 0), where),
                            _number(table.get("hidden", 0), where), bool(table.get("bonus", False)), items)
        if "starter" in table:
            if table["starter"] not in starters:
                raise RubricError(f"{where}: no starter {table['starter']!r} in [starters]")
            question.starter = starters[table["starter"]]
        if question.part not in parts:
            raise RubricError(f"{where}: there is no part {question.part}")
        if question.code + question.hand != question.points:
            raise RubricError(f"{where}: points {fmt(question.points)} != code {fmt(question.code)} + "
                              f"items {fmt(question.hand)}")
        parts[question.part].questions.append(question)
    if not parts:
        raise RubricError(f"{path.name}: no [[part]]")
    for part in parts.values():
        main = sum(q.points for q in part.questions if not q.bonus)
        bonus = sum(q.points for q in part.questions if q.bonus)
        if (main, bonus) != (part.points, part.bonus):
            raise RubricError(f"{path.name}: part {part.number}: its questions add up to {fmt(main)} points + "
                              f"{fmt(bonus)} bonus, not {fmt(part.points)} + {fmt(part.bonus)}")
    return [parts[n] for n in sorted(parts)]


def questions(parts: list[Part]) -> list[Question]:
    return [q for part in parts for q in part.questions]


# ------------------------------------------------------------------------------------ derived text

def caption(part: Part) -> str:
    """The sidebar caption of book/_toc.yml: "Part 2 (35 points + 8 bonus)"."""
    return f"Part {part.number} ({fmt(part.points)} points" + (f" + {fmt(part.bonus)} bonus)" if part.bonus else ")")


def intro_points(part: Part) -> str:
    """The points column of book/intro.md's table: "2.1–2.2 (35 points + 8 bonus)"."""
    numbers = [q.number.split(" ")[0] for q in part.questions]
    return f"{numbers[0]}–{numbers[-1]} " + caption(part).split(" ", 2)[2]


def sheet_heading(question: Question) -> str:
    return f"## Question {question.number}: {question.title} ({fmt(question.hand)} points)"


def answer_sheet(part: Part) -> dict:
    """The answer sheet of a part, a notebook: a section per hand-graded question, each with an empty answer cell."""
    graded = [q for q in part.questions if q.hand]
    cells = [_markdown(
        f"# Answer sheet, Part {part.number}: {part.title}\n\n"
        f"Write your answers to the questions of Part {part.number} that are graded by hand below each "
        "question, in Markdown with math (`$...$`, `$$...$$`). Add cells as you need them. A plot goes "
        "in as the output of a code cell that draws it (run the cell before you save), or as an image "
        "file next to this notebook: `![accuracy](accuracy.png)`. Keep the question headings: "
        "`make report` starts each question on a new page of `report.pdf` and lists the questions "
        "left without an answer. The points are those read by hand; the tests grade the rest.",
        {"answer_sheet": {"part": part.number, "questions": [q.number for q in graded]}})]
    for question in graded:
        note = f"By hand: {fmt(question.hand)} of the question's {fmt(question.points)} points"
        note += f"; the tests grade the other {fmt(question.code)}." if question.code else "."
        cells.append(_markdown(f"{sheet_heading(question)}\n\n{question.statement}\n\n*{note}*",
                               {"answer_sheet": {"question": question.number}}))
        cells.append(_markdown("", {"answer_sheet": {"answer": question.number}}))
        if question.starter:  # run by the student on their own results; nbval has none to run it on
            cells.append({"cell_type": "code", "execution_count": None, "id": "", "metadata": {"tags": ["nbval-skip"]},
                          "outputs": [], "source": question.starter.splitlines(keepends=True)})
    for index, cell in enumerate(cells):
        cell["id"] = f"part{part.number}-{index}"
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _markdown(source: str, metadata: dict) -> dict:
    return {"cell_type": "markdown", "id": "", "metadata": metadata, "source": source.splitlines(keepends=True)}


def rubric_page(part: Part) -> str:
    """book/partN/rubric.md: the points of every question; the criteria for the course staff only."""
    lines = [f"# Part {part.number}: the points of each question", "",
             f"Part {part.number} is worth {caption(part).split(' (', 1)[1][:-1]}. The tests grade the code's share "
             "of each question (`make grade`); the rest is read by hand from the answer sheet "
             f"(`book/answers/part{part.number}.ipynb`, printed by `make report`).", "",
             "| question | points | graded by the tests | read by hand |", "|---|---|---|---|"]
    for q in part.questions:
        lines.append(f"| {q.number} {q.title}{' (bonus)' if q.bonus else ''} | {fmt(q.points)} | {fmt(q.code)} | {fmt(q.hand)} |")
    lines += ["", "<!-- BEGIN INSTRUCTOR -->", "", "## The rubric", "",
              "What a grader checks in each hand-graded answer, with the points of each criterion and the partial "
              "credit it allows. The hidden tests add their points in the autograder on top of the code's share.", ""]
    for q in part.questions:
        if not q.items:
            continue
        lines += [f"### {q.number}, read by hand: {fmt(q.hand)} of {fmt(q.points)} points", "", q.statement, ""]
        for item in q.items:
            lines.append(f"- **{fmt(item.points)}** {item.criterion}")
            lines += [f"  - partial: {level.split(': ', 1)[1]} (**{level.split(':')[0]}**)" for level in item.levels]
        lines.append("")
    lines += ["<!-- END INSTRUCTOR -->", ""]
    return "\n".join(lines)


def generated(parts: list[Part]) -> dict[str, str]:
    """Every file generated from the rubric: its path under the repository, its text."""
    files = {}
    for part in parts:
        sheet = answer_sheet(part)
        files[f"book/answers/part{part.number}.ipynb"] = json.dumps(sheet, indent=1, ensure_ascii=False) + "\n"
        files[f"book/part{part.number}/rubric.md"] = rubric_page(part)
    return files


def write_generated(parts: list[Part], root: Path = ROOT) -> list[str]:
    written = []
    for name, text in generated(parts).items():
        path = root / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write(path, text)
            written.append(name)
    return written


def outline(parts: list[Part]) -> str:
    """The manual-graded questions for Gradescope's outline and rubric, as Markdown to copy from."""
    lines = ["# Gradescope outline: the questions graded by hand", "",
             "Enter each question in the outline of the Homework / Problem Set assignment that takes report.pdf "
             "(its number, title and points), then its items in the question's rubric (positive scoring: each item "
             "adds its points). An item marked (partial) is a lower level of the item above it: put the two in one "
             "rubric group and make it mutually exclusive.", ""]
    for part in parts:
        for q in part.questions:
            if not q.items:
                continue
            lines += [f"## {q.number} {q.title} ({fmt(q.hand)} points)", ""]
            for item in q.items:
                lines.append(f"- +{fmt(item.points)}: {item.criterion}")
                lines += [f"- +{level.split(':')[0]} (partial): {level.split(': ', 1)[1]}" for level in item.levels]
            lines.append("")
    total = sum(q.hand for q in questions(parts))
    lines.append(f"In all: {fmt(total)} points by hand, in {sum(1 for q in questions(parts) if q.items)} questions.")
    return "\n".join(lines) + "\n"


def outline_json(parts: list[Part]) -> str:
    data = [{"number": q.number, "title": q.title, "points": q.hand,
             "rubric": [{"points": i.points, "description": i.criterion, "partial": i.levels} for i in q.items]}
            for q in questions(parts) if q.items]
    return json.dumps({"questions": data}, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------- checks

COLLECT = r"""
import json, sys
import pytest
found = []
class Collect:
    def pytest_collection_finish(self, session):
        for item in session.items:
            marker = item.get_closest_marker("points")
            if marker is not None:
                found.append([item.nodeid, str(marker.kwargs.get("question")), float(marker.args[0])])
code = pytest.main([*sys.argv[2:], "--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[Collect()])
with open(sys.argv[1], "w") as f:
    json.dump(found, f)
sys.exit(int(code))
"""


def collect_points(folders: tuple[str, ...] = ("tests/graded", "tests/hidden"),
                   root: Path = ROOT) -> list[tuple[str, str, float]]:
    """(test id, question, points) of every graded test in ``folders``, as pytest collects them in ``root``."""
    with tempfile.TemporaryDirectory(prefix="rubric-") as tmp:
        out = Path(tmp) / "points.json"
        done = subprocess.run([sys.executable, "-c", COLLECT, str(out), *folders], cwd=root, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, timeout=300)
        if done.returncode != 0:
            raise RubricError(f"collecting the tests of {', '.join(folders)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return [tuple(row) for row in json.loads(out.read_text())]


def check_tests(parts: list[Part], root: Path = ROOT) -> list[str]:
    """Each question's code share against its public tests' points, its hidden share against the hidden tests'."""
    problems = []
    known = {q.number: q for q in questions(parts)}
    collected = collect_points(("tests/graded", "tests/hidden"), root)
    for folder, share in (("tests/graded", "code"), ("tests/hidden", "hidden")):
        sums: dict[str, float] = {}
        tests: dict[str, list[str]] = {}
        for test, question, points in collected:
            if not test.startswith(folder + "/"):
                continue
            sums[question] = sums.get(question, 0.0) + points
            tests.setdefault(question, []).append(f"{test.split('/')[-1]} ({fmt(points)})")
        for question in sorted(set(sums) - set(known)):
            problems.append(f"{folder}: question {question!r} of {tests[question][0]} is not in rubric.toml")
        for number, q in known.items():
            expected, found = getattr(q, share), round(sums.get(number, 0.0), 6)
            if expected != found:
                problems.append(f"question {number}: rubric.toml gives {share} {fmt(expected)}, the tests of {folder} "
                                f"give {fmt(found)}: {', '.join(tests.get(number, ['none']))}")
    return problems


TABLE_ROW = re.compile(r"^\|\s*(?P<q>\d\.\d(?: \([a-z]\))?)[^|]*\|\s*(?P<code>[\d.]+)\s*:[^|]*\|\s*(?P<hand>[\d.]+)\s*:", re.M)


def check_docstrings(parts: list[Part], root: Path = ROOT) -> list[str]:
    """The split tables of the graded test files' docstrings: a row per question that has tests."""
    problems, rows = [], {}
    for path in sorted((root / "tests" / "graded").glob("test_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        for row in TABLE_ROW.finditer(doc):
            rows.setdefault(row["q"], []).append((path.name, float(row["code"]), float(row["hand"])))
    for q in questions(parts):
        found = rows.pop(q.number, [])
        if not found and not q.code:
            continue  # a question without tests needs no row
        if len(found) != 1:
            problems.append(f"question {q.number}: {len(found)} rows in the graded test files' split tables, not 1")
        elif found[0][1:] != (q.code, q.hand):
            problems.append(f"question {q.number}: {found[0][0]}'s docstring splits it {fmt(found[0][1])} + "
                            f"{fmt(found[0][2])}, rubric.toml {fmt(q.code)} + {fmt(q.hand)}")
    problems += [f"question {n}: in {r[0][0]}'s split table but not in rubric.toml" for n, r in rows.items()]
    return problems


def check_book(parts: list[Part], root: Path = ROOT) -> list[str]:
    """The sidebar captions of book/_toc.yml and the table of book/intro.md."""
    import yaml
    problems = []
    toc = yaml.safe_load((root / "book" / "_toc.yml").read_text(encoding="utf-8"))
    captions = [entry["caption"] for entry in toc.get("parts", []) if entry.get("caption", "").startswith("Part ")]
    expected = [caption(part) for part in parts]
    if captions != expected:
        problems.append(f"book/_toc.yml: the captions {captions} should be {expected}")
    intro = (root / "book" / "intro.md").read_text(encoding="utf-8")
    for part in parts:
        row = re.search(rf"^\| \[Part {part.number}\]\([^)]*\) \| (?P<points>[^|]*?) \|", intro, re.M)
        if row is None or row["points"] != intro_points(part):
            problems.append(f"book/intro.md: Part {part.number}'s row should say {intro_points(part)!r}, "
                            f"not {row['points'] if row else 'nothing'!r}")
    return problems


def check_generated(parts: list[Part], root: Path = ROOT) -> list[str]:
    return [f"{name} is out of date: run `python -m tools.rubric write`" for name, text in generated(parts).items()
            if not (root / name).exists() or (root / name).read_text(encoding="utf-8") != text]


def check(parts: list[Part], root: Path = ROOT) -> list[str]:
    return check_book(parts, root) + check_docstrings(parts, root) + check_generated(parts, root) + check_tests(parts, root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="check rubric.toml against the tests, the book and the docstrings")
    commands.add_parser("write", help="write the answer sheets and the rubric pages")
    out = commands.add_parser("outline", help="the Gradescope outline of the hand-graded questions")
    out.add_argument("--out", type=Path, default=ROOT / "dist" / "gradescope-outline.md",
                     help="the Markdown to copy from (a .json with the same data is written next to it)")
    args = parser.parse_args(argv)
    try:
        parts = load()
    except RubricError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "write":
        written = write_generated(parts)
        print(f"wrote {', '.join(written)}" if written else "everything generated from rubric.toml is up to date")
    elif args.command == "outline":
        atomic_write(args.out, outline(parts))
        atomic_write(args.out.with_suffix(".json"), outline_json(parts))
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    else:
        try:
            problems = check(parts)
        except RubricError as error:
            problems = [str(error)]
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"rubric.toml agrees with the tests, the book and the docstrings: {len(questions(parts))} questions, "
              f"{fmt(sum(p.points for p in parts))} points + {fmt(sum(p.bonus for p in parts))} bonus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
