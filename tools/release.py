"""Build the student edition from the single source: the stubs, the public tests and the book
without the answers.

    python -m tools.release --out dist/student          # or: make student

What goes in ``--out`` (replaced whole):

| path | from |
|---|---|
| ``assignment/`` | the generated stubs (``tools/make_assignment.py``), rebuilt from ``solutions/`` |
| ``tests/graded/``, ``tests/conftest.py``, ``tests/grading.py``, ``pytest.ini`` | the public graded suite (not ``tests/hidden/`` nor ``tests/project/``) |
| ``data/*.json`` | dataset manifests the package reads (not the committed results) |
| ``requirements.txt``, ``README.md``, ``Makefile`` | the pins, and ``tools/templates/*.student*`` |
| ``book/`` | the HTML book built from a copy of ``book/`` with every solution removed |

Solutions in the book (see CONTRIBUTING.md, "Solutions in the book"):

- a notebook cell tagged ``solution`` (code or Markdown) is deleted with its outputs;
- in Markdown (``.md`` files and Markdown cells), the lines from ``<!-- BEGIN SOLUTION -->`` to
  ``<!-- END SOLUTION -->``, and a fenced admonition or dropdown whose ``:class:`` includes
  ``solution`` (````:::{admonition} Answer```` / ``:class: tip solution`` ... ``:::``), are deleted.

The answers are removed from the pages, not collapsed: a dropdown would still ship them in the
HTML and in the downloadable notebook. Code cells that import the reference package
(``from solutions.part1 ...``) import ``assignment`` instead, so a student runs the chapters on their
own code. The instructor edition is the plain ``jupyter-book build book/``, which keeps everything.
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

from tools.make_assignment import build as build_stubs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLIC_FILES = ("pytest.ini", "requirements.txt", "tests/__init__.py", "tests/conftest.py", "tests/grading.py")
PUBLIC_TESTS = ("tests/graded",)
SOLUTION_TAG = "solution"
# A student repository that holds this edition (Binder and Colab open its notebooks): replace it.
STUDENT_REPOSITORY = "https://github.com/uva-deep-learning/rnn-gnn-course-student"

BEGIN = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
END = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
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
        if BEGIN.match(line):
            end = next((j for j in range(i + 1, len(lines)) if END.match(lines[j])), None)
            if end is None:
                raise SolutionMarkerError(f"{where}: <!-- BEGIN SOLUTION --> on line {i + 1} is never closed")
            removed.append("".join(lines[i + 1:end]))
            i = end + 1
            continue
        if END.match(line):
            raise SolutionMarkerError(f"{where}: <!-- END SOLUTION --> on line {i + 1} without a BEGIN")
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
    """Whether the option lines (``:key: value``) right after a directive's fence give class solution."""
    for line in lines[start:]:
        if not line.startswith(":") or line.startswith("::"):
            return False
        option = CLASS_OPTION.match(line.strip())
        if option and SOLUTION_TAG in option["classes"].split():
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
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            removed.append(source)
            continue
        if cell["cell_type"] == "markdown":
            source, blocks = strip_markdown(source, f"{where}, cell {index}")
            removed += blocks
        elif cell["cell_type"] == "code":
            source = REFERENCE_IMPORT.sub(r"\1\2\3assignment", source)
        cell["source"] = source
        cells.append(cell)
    notebook["cells"] = cells
    return notebook, removed


def strip_book(book: Path) -> list[str]:
    """Remove every solution from the book folder ``book`` in place; returns the texts removed."""
    removed: list[str] = []
    for path in sorted(book.rglob("*.ipynb")):
        notebook, found = strip_notebook(json.loads(path.read_text(encoding="utf-8")), str(path.relative_to(book)))
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        removed += found
    for path in sorted(book.rglob("*.md")):
        text, found = strip_markdown(path.read_text(encoding="utf-8"), str(path.relative_to(book)))
        path.write_text(text, encoding="utf-8")
        removed += found
    return removed


def build_book(html_out: Path, repository: str = STUDENT_REPOSITORY, strict: bool = False) -> list[str]:
    """Build the student book into ``html_out`` from a stripped copy of ``book/``; returns the texts removed."""
    with tempfile.TemporaryDirectory(prefix="student-book-") as tmp:
        source = Path(tmp) / "book"
        shutil.copytree(ROOT / "book", source, ignore=IGNORE)
        removed = strip_book(source)
        config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
        config.setdefault("repository", {})["url"] = repository
        (Path(tmp) / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(source),
                   "--path-output", tmp, "--keep-going", *(["-W", "-n"] if strict else [])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not (Path(tmp) / "_build" / "html" / "index.html").is_file():
            raise RuntimeError(f"building the student book failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        if html_out.exists():
            shutil.rmtree(html_out)
        shutil.copytree(Path(tmp) / "_build" / "html", html_out)
    return removed


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
    (out / "data").mkdir()
    for manifest in sorted((ROOT / "data").glob("*.json")):
        shutil.copyfile(manifest, out / "data" / manifest.name)
    shutil.copyfile(TEMPLATES / "README.student.md", out / "README.md")
    shutil.copyfile(TEMPLATES / "Makefile.student", out / "Makefile")
    removed = build_book(out / "book", repository, strict) if book else []
    return {"regions": regions, "removed_from_book": len(removed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "student")
    parser.add_argument("--no-book", action="store_true", help="skip the book (the package and tests only)")
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
