"""The student edition: built once per session, searched for every marked solution, and its
public tests run from the release itself and fail only on the stubs."""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.make_assignment import BEGIN as CODE_BEGIN, END as CODE_END, PACKAGE_MENTION
from tools.release import REMOVED, SolutionMarkerError, strip_book, strip_markdown, strip_notebook

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 8  # words in a row that identify a sentence of a solution


@pytest.fixture(scope="module")
def instructor_html(tmp_path_factory):
    """The instructor's edition, the plain `jupyter-book build book/`, as a control for the search."""
    out = tmp_path_factory.mktemp("instructor")
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", "book/", "--path-output", str(out),
                    "--keep-going"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=900)
    return out / "_build" / "html"


def words(text: str) -> str:
    """Lower-case words and numbers separated by single spaces: Markdown, HTML and LaTeX agree on these."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def page_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", text)))
    return text


def windows(text: str) -> set[str]:
    """Every run of WINDOW words of each line (lines are where Markdown and code keep their words together)."""
    found = set()
    for line in text.splitlines():
        tokens = words(line).split()
        found |= {" " + " ".join(tokens[i:i + WINDOW]) + " " for i in range(len(tokens) - WINDOW + 1)}
    return found


def runs_of_words(text: str) -> set[str]:
    """Every run of WINDOW words of ``words(text)``: ``window in runs_of_words(t)`` is ``window in words(t)``
    for a window of ``windows``, found by hashing instead of a search of the whole page for each window."""
    tokens = text.split()
    return {" " + " ".join(tokens[i:i + WINDOW]) + " " for i in range(len(tokens) - WINDOW + 1)}


def book_solutions() -> list[str]:
    """The text of every solution cell and Markdown solution block of the instructor's book."""
    texts = []
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        texts += strip_notebook(json.loads(path.read_text()), str(path))[1]
        for cell in json.loads(path.read_text())["cells"]:  # independently of the stripper: the tags
            if "solution" in cell.get("metadata", {}).get("tags", []):
                texts.append("".join(cell["source"]))
    for path in sorted((ROOT / "book").rglob("*.md")):
        texts += strip_markdown(path.read_text(), str(path))[1]
    return texts


def book_kept_text() -> str:
    """The words the instructor's book shows outside its solutions (an answer may quote them)."""
    parts = []
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if "solution" in cell.get("metadata", {}).get("tags", []):
                continue
            parts.append(strip_markdown("".join(cell["source"]))[0] if cell["cell_type"] == "markdown"
                         else "".join(cell["source"]))
            for output in cell.get("outputs", []):
                parts.append(json.dumps(output.get("text", "")) + json.dumps(output.get("data", {}).get("text/plain", "")))
    for path in sorted((ROOT / "book").rglob("*.md")):
        parts.append(strip_markdown(path.read_text())[0])
    return words("\n".join(parts))


def code_solutions() -> list[str]:
    """Identifying pieces of the solution regions of solutions/: every line of 40 characters or more
    and every two consecutive lines, less what also stands outside a region (public anyway)."""
    pieces, public = [], set()
    for path in sorted((ROOT / "solutions").rglob("*.py")):
        inside, region = False, []
        for line in path.read_text().splitlines():
            flat = " ".join(line.split())
            if CODE_BEGIN.match(line):
                inside, region = True, []
            elif CODE_END.match(line):
                inside = False
                pieces += [a for a in region if len(a) >= 40]
                pieces += [f"{a} {b}" for a, b in zip(region, region[1:]) if len(a + b) >= 30]
            elif inside:
                if flat and not flat.startswith("#"):
                    region.append(flat)
            else:
                public.add(flat)
    return [p for p in pieces if p not in public]


def released_texts(release: Path) -> dict[str, str]:
    return {str(p.relative_to(release)): page_text(p) for p in sorted(release.rglob("*"))
            if p.is_file() and p.suffix in {".py", ".md", ".ipynb", ".html", ".txt", ".json", ".ini", ".js", ".yml", ".sh", ""}}


def test_release_has_the_public_parts_only(release):
    for needed in ["README.md", "Makefile", "requirements.txt", "pytest.ini", "assignment/__init__.py",
                   "assignment/part1/models.py", "assignment/part1/sweep.py", "grader/plugin.py", "grader/probes.py",
                   "tests/graded/test_part1.py", "data/books.json", "data/part1/gates/lstm_T10.pt",
                   "data/part2/sherlock_holmes.pt", "data/part3/karate.json", "_config.yml", "book/_toc.yml",
                   "tools/report.py", "tools/cdp.py", "book/answers/part1.ipynb", "html/answers/part1.html",
                   "book/part1/1_1_gradients.ipynb", "html/index.html", "html/part1/1_1_gradients.html"]:
        assert (release / needed).is_file(), needed
    for absent in ["solutions", "tests/hidden", "tests/project", "experiments", "tools/release.py", "tools/rubric.py",
                   "rubric.toml",
                   "grader/sandbox.py", "grader/worker.py", "grader/batch.py", "data/part1/sweep", "data/part2/cpu"]:
        assert not (release / absent).exists(), f"{absent} must not be released"
    assert (release / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()


def test_no_marked_solution_reaches_the_release(release, instructor_html):
    texts = released_texts(release)
    flat_code = {name: " ".join(text.split()) for name, text in texts.items()}
    leaks = [f"{line!r} in {name}" for line in code_solutions() for name, text in flat_code.items() if line in text]
    assert not leaks, "solution code in the student release:\n" + "\n".join(leaks[:20])

    solutions = book_solutions()
    assert solutions, "the book marks no solution: nothing to check"
    pages = {name: words(text) for name, text in texts.items() if name.startswith(("book/", "html/"))}
    kept = book_kept_text()
    unique = {window for text in solutions for window in windows(text) if window not in kept}
    leaks = [f"{window.strip()!r} in {name}" for name, page in pages.items() for window in unique & runs_of_words(page)]
    assert not leaks, "solution text in the student book:\n" + "\n".join(sorted(set(leaks))[:20])

    # Control: the same search finds the text the book keeps, so a miss above is not a blind search.
    intro = (ROOT / "book" / "intro.md").read_text()
    assert any(window in pages["html/intro.html"] for window in windows(intro))
    assert len(unique) > 100, "too few words unique to the solutions to make this search meaningful"
    instructor = words(" ".join(page_text(p) for p in instructor_html.rglob("*.html")))
    shown = len(unique & runs_of_words(instructor))
    assert shown >= 0.8 * len(unique), f"the search finds only {shown} of {len(unique)} solution phrases in the instructor's book"


def test_only_marked_cells_are_removed():
    """The stripper deletes the solution cells and nothing else; the instructor's book keeps them all."""
    for path in sorted((ROOT / "book").rglob("*.ipynb")):
        notebook = json.loads(path.read_text())
        stripped, _ = strip_notebook(notebook, str(path))
        kept = [c for c in notebook["cells"] if not set(REMOVED) & set(c.get("metadata", {}).get("tags", []))]
        assert len(stripped["cells"]) == len(kept), path
        for before, after in zip(kept, stripped["cells"]):
            if before["cell_type"] == "code":
                assert json.dumps(after["outputs"]) == PACKAGE_MENTION.sub("assignment", json.dumps(before["outputs"])), path


def test_release_tests_fail_only_on_the_stubs(release, tmp_path):
    """The public suite runs from the release alone (no solutions/ to fall back on) and fails only on stubs."""
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/graded", "-q", "-p", "no:cacheprovider",
                           f"--results={tmp_path / 'results.json'}"], cwd=release, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # 1: tests failed; not a usage error
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["tests"] and report["score"] == 0
    wrong = [t["name"] for t in report["tests"] if t["status"] != "failed" or "NotImplementedError" not in t["output"]]
    assert not wrong, f"these fail for another reason than a stub's NotImplementedError: {wrong}"


def test_markdown_solution_blocks(tmp_path):
    text = ("Question.\n<!-- BEGIN SOLUTION -->\nThe answer is 42.\n<!-- END SOLUTION -->\nNext.\n"
            "::::{admonition} Answer\n:class: tip solution\n\nInside.\n:::{note}\nnested\n:::\nstill inside\n::::\n"
            ":::{admonition} A hint\n:class: tip\nkept\n:::\n")
    stripped, removed = strip_markdown(text)
    assert stripped == "Question.\nNext.\n:::{admonition} A hint\n:class: tip\nkept\n:::\n"
    assert len(removed) == 2 and "42" in removed[0] and "still inside" in removed[1]
    for bad in ["<!-- BEGIN SOLUTION -->\nx\n", "x\n<!-- END SOLUTION -->\n", ":::{admonition} A\n:class: solution\nx\n"]:
        with pytest.raises(SolutionMarkerError):
            strip_markdown(bad)
    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "answer = 42", "outputs": []},
        {"cell_type": "code", "metadata": {}, "source": "from solutions.part1.models import LSTM", "outputs": []},
        {"cell_type": "markdown", "metadata": {}, "source": "Q\n<!-- BEGIN SOLUTION -->\nA\n<!-- END SOLUTION -->\n"}]}
    stripped_nb, removed = strip_notebook(notebook)
    assert [c["source"] for c in stripped_nb["cells"]] == ["from assignment.part1.models import LSTM", "Q\n"]
    assert removed == ["answer = 42", "A\n"] and notebook["cells"][0]["source"] == "answer = 42"
    (tmp_path / "page.md").write_text(text)
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
    assert len(strip_book(tmp_path)) == 4


MATHJAX = ROOT / "book" / "_offline" / "_static" / "mathjax"


def test_mathjax_is_the_pinned_copy_and_pages_use_it(release):
    """The book serves MathJax itself (the file PROVENANCE.md describes) and loads nothing from a CDN."""
    digest = hashlib.sha256((MATHJAX / "tex-svg-full.js").read_bytes()).hexdigest()
    assert f"`{digest}`" in (MATHJAX / "PROVENANCE.md").read_text(), "tex-svg-full.js differs from PROVENANCE.md"
    page = (release / "html" / "part1" / "1_1_gradients.html").read_text()
    assert '_static/mathjax/tex-svg-full.js' in page and page.count("tex-svg-full.js") == 1
    assert (release / "html" / "_static" / "mathjax" / "tex-svg-full.js").read_bytes() == \
        (MATHJAX / "tex-svg-full.js").read_bytes()
    assert not re.search(r"<script[^>]+src=\"https?://", page), "a script from the network"
    assert "colab.research.google.com" in page and "mybinder.org" in page and "_sources/part1/1_1_gradients.ipynb" in page


def test_launch_buttons_open_notebooks_the_edition_has(release):
    """Colab and Binder open ``<path in the student repository>``: every such path exists in the edition."""
    opened = set()
    for page in (release / "html").rglob("*.html"):
        text = html.unescape(page.read_text(encoding="utf-8"))
        opened |= set(re.findall(r"colab\.research\.google\.com/github/[^/\s\"]+/[^/\s\"]+/blob/[^/\s\"]+/([^\s\"?#]+\.ipynb)", text))
        opened |= set(re.findall(r"mybinder\.org/v2/gh/[^\s\"]*?urlpath=(?:lab/tree|tree)/([^\s\"&#]+\.ipynb)", text))
    assert len(opened) >= 10, opened
    missing = sorted(path for path in opened if not (release / path).is_file())
    assert not missing, f"launch buttons open notebooks the edition does not have: {missing}"


def test_the_edition_names_no_reference_code(release):
    """No file of the student edition (package, tests, chapters, built pages, data) names the reference package."""
    found = [f"{name}: ...{text[max(0, m.start() - 60):m.end() + 60]!r}..." for name, text in released_texts(release).items()
             for m in re.finditer(r"(?i)\bsolutions\b", text)]
    assert not found, "the edition names what students do not have:\n" + "\n".join(found[:20])
    # The data records keep the command that made them (their provenance); nothing else names experiments/.
    found = [name for name, text in released_texts(release).items()
             if not name.startswith("data/") and re.search(r"\bexperiments[./]part\d", text)]
    assert not found, f"these name the instructors' experiments/: {found}"


@pytest.mark.timeout(300)
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="needs Debian's chromium (apt-get install -y chromium); `make browser-check` runs it")
def test_headless_chromium_sees_typeset_equations_and_figures(release, tmp_path):
    """The student book in headless Chromium, offline: every equation typeset, every figure loaded; and
    the same check fails on a copy of the site without its MathJax and with a missing figure."""
    from tools.browser_check import check
    report = check(release / "html")
    assert {name: page["problems"] for name, page in report.items() if page["problems"]} == {}
    assert sum(page["typeset"] for page in report.values()) > 100
    assert sum(len(page["images"]) for page in report.values()) > 5
    broken = tmp_path / "site"
    shutil.copytree(release / "html", broken)
    (broken / "_static" / "mathjax" / "tex-svg-full.js").unlink()
    images = sorted((broken / "_images").iterdir())
    images[0].unlink()
    report = check(broken)
    assert any("not typeset" in p for page in report.values() for p in page["problems"])
    assert any(images[0].name in p for page in report.values() for p in page["problems"])
