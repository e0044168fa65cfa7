"""Build the student edition from the single source: the stubs, the public tests and the book
without the answers.

    python -m tools.release --out dist/student          # or: make student

What goes in ``--out`` (replaced whole), laid out as the student repository is published:

| path | from |
|---|---|
| ``assignment/`` | the generated stubs (``tools/make_assignment.py``), rebuilt from the reference package |
| ``tests/graded/``, ``pytest.ini``, ``grader/`` (its plugin, probes, report and atomic file writes) | the public graded suite and what runs it on a student's machine (not ``tests/hidden/``, ``tests/project/`` nor the autograder's sandbox) |
| ``data/`` | dataset manifests and the committed results the student chapters load (``STUDENT_DATA``) |
| ``requirements.txt``, ``tools/install.py``, ``README.md``, ``Makefile`` | the pins, the installer, and ``tools/templates/*.student*`` |
| ``tools/report.py``, ``tools/cdp.py`` | ``make report``: the answer sheets (``book/answers/``) printed to one PDF |
| ``book/`` | the chapters (notebooks and Markdown) with every answer and every instructor-only part removed: the sources a student runs, and the paths the launch buttons open |
| ``html/`` | the book built from ``book/`` (open ``html/index.html``) |

Removed from the book (see CONTRIBUTING.md, "Solutions in the book"), for each kind in ``REMOVED``
(``solution``: an answer; ``instructor``: material that needs what students do not get, such as
``experiments/`` or the sweep results):

- a chapter for instructors only (a notebook whose metadata has ``"instructor_only": true``, such as
  ``book/part1/1_6_how_the_sweep_is_computed.ipynb``) is deleted, and its entry in ``_toc.yml`` with it;
- a notebook cell tagged with the kind (code or Markdown) is deleted with its outputs;
- in Markdown (``.md`` files and Markdown cells), the lines from ``<!-- BEGIN SOLUTION -->`` to
  ``<!-- END SOLUTION -->`` (``INSTRUCTOR`` likewise), and a fenced admonition or dropdown whose
  ``:class:`` includes the kind (````:::{admonition} Answer```` / ``:class: tip solution`` ... ``:::``).

The answers are removed from the pages, not collapsed: a dropdown would still ship them in the
HTML and in the downloadable notebook. Every mention of the reference package (``from solutions.part1
import ...``, ``python -m solutions.part1.train``, ``solutions/part3/gcn.py``) names ``assignment``
instead, so a student runs the chapters on their own code. The instructor edition is the plain
``jupyter-book build book/``, which keeps everything.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tools.make_assignment import PACKAGE_MENTION, build as build_stubs  # one rule for the package and the book

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLIC_FILES = ("pytest.ini", "requirements.txt", "tools/__init__.py", "tools/install.py", "tools/cdp.py", "tools/report.py",
                "tests/__init__.py", "grader/__init__.py", "grader/plugin.py", "grader/probes.py", "grader/report.py",
                "grader/files.py")
PUBLIC_TESTS = ("tests/graded",)
# What the student chapters load besides the books: globs under data/ (not the sweeps of Part 1).
STUDENT_DATA = ("*.json", "part1/gates/*", "part2/*.json", "part2/*.pt", "part3/karate.json")
REMOVED = ("solution", "instructor")  # cell tags, Markdown markers and admonition classes removed from the edition
# A student repository that holds this edition (Binder and Colab open its notebooks): replace it.
STUDENT_REPOSITORY = "https://github.com/uva-deep-learning/rnn-gnn-course-student"

BEGIN = re.compile(r"^\s*<!--\s*BEGIN (?P<kind>SOLUTION|INSTRUCTOR)\s*-->\s*$")
END = re.compile(r"^\s*<!--\s*END (?P<kind>SOLUTION|INSTRUCTOR)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>:{3,}|`{3,})\s*\{(?P<name>[a-z-]+)\}")
CLASS_OPTION = re.compile(r"^:class:\s*(?P<classes>.*)$")
REFERENCE_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)solutions\b", re.MULTILINE)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ipynb_checkpoints", "_build")


class SolutionMarkerError(ValueError):
    """A solution block in Markdown is not closed."""


def strip_markdown(text: str, where: str = "<markdown>") -> tuple[str, list[str]]:
    """Remove the solution blocks of Markdown text; returns the text and the blocks removed."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    removed: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        begin = BEGIN.match(line)
        if begin:
            kind = begin["kind"]
            end = next((j for j in range(i + 1, len(lines)) if END.match(lines[j])), None)
            if end is None or END.match(lines[end])["kind"] != kind:
                raise SolutionMarkerError(f"{where}: <!-- BEGIN {kind} --> on line {i + 1} is never closed")
            removed.append("".join(lines[i + 1:end]))
            i = end + 1
            continue
        if END.match(line):
            raise SolutionMarkerError(f"{where}: <!-- END {END.match(line)['kind']} --> on line {i + 1} without a BEGIN")
        fence = FENCE.match(line)
        if fence and _is_solution_directive(lines, i + 1):
            mark = fence["fence"]
            end = next((j for j in range(i + 1, len(lines))
                        if set(lines[j].strip()) == {mark[0]} and len(lines[j].strip()) >= len(mark)), None)
            if end is None:
                raise SolutionMarkerError(f"{where}: the solution block on line {i + 1} is never closed by {mark}")
            removed.append("".join(lines[i:end + 1]))
            i = end + 1
            continue
        out.append(line)
        i += 1
    return "".join(out), removed


def _is_solution_directive(lines: list[str], start: int) -> bool:
    """Whether the option lines (``:key: value``) right after a directive's fence give a removed class."""
    for line in lines[start:]:
        if not line.startswith(":") or line.startswith("::"):
            return False
        option = CLASS_OPTION.match(line.strip())
        if option and set(REMOVED) & set(option["classes"].split()):
            return True
    return False


def strip_notebook(notebook: dict, where: str = "<notebook>") -> tuple[dict, list[str]]:
    """A copy of a notebook without its solution cells and Markdown solution blocks.

    Returns the notebook and the texts removed (each solution cell's source, each block).
    """
    notebook = copy.deepcopy(notebook)
    cells, removed = [], []
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell.get("source", ""))
        if set(REMOVED) & set(cell.get("metadata", {}).get("tags", [])):
            removed.append(source)
            continue
        if cell["cell_type"] == "markdown":
            source, blocks = strip_markdown(source, f"{where}, cell {index}")
            removed += blocks
        elif cell["cell_type"] == "code":
            source = REFERENCE_IMPORT.sub(r"\1\2\3assignment", source)
            for output in cell.get("outputs", []):  # what the code printed names the package it ran
                for holder, key in ((output, "text"), (output.get("data", {}), "text/plain")):
                    if isinstance(holder.get(key), list):
                        holder[key] = [PACKAGE_MENTION.sub("assignment", line) for line in holder[key]]
                    elif key in holder:
                        holder[key] = PACKAGE_MENTION.sub("assignment", holder[key])
        cell["source"] = PACKAGE_MENTION.sub("assignment", source)
        cells.append(cell)
    notebook["cells"] = cells
    return notebook, removed


def drop_instructor_chapters(book: Path) -> list[str]:
    """Delete the chapters marked ``instructor_only`` and their entries in ``book/_toc.yml``; returns their sources."""
    removed, dropped = [], []
    for path in sorted(book.rglob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if notebook.get("metadata", {}).get("instructor_only"):
            removed += ["".join(cell.get("source", "")) for cell in notebook["cells"]]
            dropped.append(path.relative_to(book).with_suffix("").as_posix())
            path.unlink()
    toc = book / "_toc.yml"
    if dropped and toc.exists():
        entry = re.compile(r"^\s*- file: (?P<file>\S+)")
        lines = toc.read_text(encoding="utf-8").splitlines(keepends=True)
        toc.write_text("".join(line for line in lines
                               if not (entry.match(line) and entry.match(line)["file"] in dropped)), encoding="utf-8")
    return removed


def strip_book(book: Path) -> list[str]:
    """Remove every solution and instructor-only chapter from the book folder ``book`` in place; returns the texts removed."""
    removed: list[str] = drop_instructor_chapters(book)
    for path in sorted(book.rglob("*.ipynb")):
        notebook, found = strip_notebook(json.loads(path.read_text(encoding="utf-8")), str(path.relative_to(book)))
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        removed += found
    for path in sorted(book.rglob("*.md")):
        text, found = strip_markdown(path.read_text(encoding="utf-8"), str(path.relative_to(book)))
        path.write_text(PACKAGE_MENTION.sub("assignment", text), encoding="utf-8")
        removed += found
    return removed


def write_book(out: Path, repository: str = STUDENT_REPOSITORY) -> list[str]:
    """The stripped chapters in ``out/book`` and their ``out/_config.yml``; returns the texts removed.

    The layout is the repository's own, so the launch buttons' ``book/partN/chapter.ipynb`` exists in
    the published edition, and a notebook's ``parents[1]`` is the edition's root (``assignment/``, ``data/``).
    """
    source = out / "book"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(ROOT / "book", source, ignore=IGNORE)
    removed = strip_book(source)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("repository", {})["url"] = repository
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return removed


def build_html(out: Path, strict: bool = False) -> None:
    """Build ``out/book`` into ``out/html`` (the build's scratch files stay outside the edition)."""
    with tempfile.TemporaryDirectory(prefix="student-book-") as tmp:
        command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(out / "book"),
                   "--path-output", tmp, "--keep-going", *(["-W", "-n"] if strict else [])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not (Path(tmp) / "_build" / "html" / "index.html").is_file():
            raise RuntimeError(f"building the student book failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        if (out / "html").exists():
            shutil.rmtree(out / "html")
        shutil.copytree(Path(tmp) / "_build" / "html", out / "html")


def release(out: Path, *, book: bool = True, repository: str = STUDENT_REPOSITORY, strict: bool = False) -> dict:
    """Write the student edition into ``out`` (replaced whole); returns a summary."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    regions = build_stubs(ROOT / "solutions", out / "assignment")
    for relative in PUBLIC_FILES:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / relative, out / relative)
    for folder in PUBLIC_TESTS:
        shutil.copytree(ROOT / folder, out / folder, ignore=IGNORE)
    for pattern in STUDENT_DATA:
        for path in sorted((ROOT / "data").glob(pattern)):
            target = out / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    shutil.copyfile(TEMPLATES / "README.student.md", out / "README.md")
    shutil.copyfile(TEMPLATES / "Makefile.student", out / "Makefile")
    removed = write_book(out, repository)
    if book:
        build_html(out, strict)
    return {"regions": regions, "removed_from_book": len(removed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "student")
    parser.add_argument("--no-book", action="store_true", help="skip building the HTML book (the chapters' sources are written)")
    parser.add_argument("--repository", default=STUDENT_REPOSITORY,
                        help="the student repository the launch buttons open (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="build the book with warnings as errors")
    args = parser.parse_args(argv)
    start = time.monotonic()
    summary = release(args.out, book=not args.no_book, repository=args.repository, strict=args.strict)
    print(f"wrote the student edition to {args.out} in {time.monotonic() - start:.0f} s: "
          f"{summary['regions']} solution regions stubbed, {summary['removed_from_book']} solutions removed from the book")
    return 0


if __name__ == "__main__":
    sys.exit(main())
