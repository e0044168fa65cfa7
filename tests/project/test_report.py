"""make report (tools/report.py): the answer sheets, filled with a sample answer for every question,
printed to one PDF in headless Chromium; read back with pdftotext: every question's heading in order,
each at the top of a page of its own, the math typeset (no TeX left in the text), the figures in it.
Missing answers are listed and marked; broken math stops the report with its question."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import rubric

ROOT = Path(__file__).resolve().parents[2]
needs = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("pdftotext") and shutil.which("pdfimages")),
                           reason="needs Debian's chromium and poppler-utils (apt-get install -y chromium poppler-utils)")
HAND_GRADED = [q.number for q in rubric.questions(rubric.load()) if q.hand]


def png() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(range(5, 21), [1.0] * 8 + [0.5] * 8, "o-")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def fill(folder: Path, skip: tuple[str, ...] = (), answer=None) -> list[Path]:
    """Copies of the answer sheets in ``folder`` with a sample answer for every question not in ``skip``."""
    image = png()
    (folder / "accuracy.png").write_bytes(image)
    sheets = []
    for source in sorted((ROOT / "book" / "answers").glob("part*.ipynb")):
        notebook = json.loads(source.read_text())
        current = None
        for cell in notebook["cells"]:
            current = cell["metadata"].get("answer_sheet", {}).get("question", current)
            number = cell["metadata"].get("answer_sheet", {}).get("answer")
            if number and number not in skip:
                text = answer(number) if answer else (
                    f"The answer to {number}: the gradient $\\partial\\mathcal L/\\partial\\mathbf W_{{hh}}$ is\n\n"
                    "$$\n\\frac{\\partial\\mathcal L}{\\partial\\mathbf W_{hh}} = \\sum_{k=1}^{T}"
                    " \\prod_{j=k+1}^{T} \\operatorname{diag}\\big(1 - \\mathbf h^{(j)2}\\big)\\,\\mathbf W_{hh} .\n$$\n\n"
                    + ("![accuracy against input length](accuracy.png)\n" if number == "1.3" else ""))
                cell["source"] = text.splitlines(keepends=True)
            if cell["cell_type"] == "code" and current == "1.6" and current not in skip:  # the starter's plot, as if run
                cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                                    "data": {"image/png": base64.b64encode(image).decode(), "text/plain": "<Figure>"}}]
        path = folder / source.name
        path.write_text(json.dumps(notebook))
        sheets.append(path)
    return sheets


def make_report(sheets: list[Path], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.report", *map(str, sheets), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def pages(pdf: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return text.split("\f")[:-1]


def heading_pages(texts: list[str]) -> dict[str, int]:
    """Question -> the page whose first line is its heading."""
    found = {}
    for index, text in enumerate(texts):
        first = next((line for line in text.splitlines() if line.strip()), "")
        heading = re.match(r"^Question (\d\.\d(?: \([a-z]\))?)(?::|$)", first)
        if heading:
            assert heading[1] not in found, f"question {heading[1]} is headed twice"
            found[heading[1]] = index
    return found


@needs
def test_a_complete_answer_sheet_prints_every_question_on_its_own_page(tmp_path):
    out = tmp_path / "report.pdf"
    done = make_report(fill(tmp_path), out)
    assert done.returncode == 0, done.stderr
    assert "missing" not in done.stderr
    texts = pages(out)
    found = heading_pages(texts)
    assert list(found) == HAND_GRADED  # every heading, in order
    assert sorted(found.values()) == list(found.values()) and len(set(found.values())) == len(found)
    assert found[HAND_GRADED[0]] == 1  # after the first page's list of questions
    assert all(f"{n}\nanswered" in texts[0] or re.search(rf"{re.escape(n)}\s+answered", texts[0]) for n in HAND_GRADED)
    everything = "\n".join(texts)
    for raw in ("$", "\\frac", "\\mathbf", "\\partial", "\\begin", "\\sum"):
        assert raw not in everything, f"raw TeX {raw!r} in the PDF's text"
    assert "The answer to 3.3 (b): the gradient" in texts[found["3.3 (b)"]]
    images = subprocess.run(["pdfimages", "-list", str(out)], check=True, capture_output=True, text=True).stdout
    assert len([line for line in images.splitlines()[2:] if " image " in line]) >= 2  # the file and the cell's output


@needs
def test_missing_answers_are_listed_and_marked(tmp_path):
    out = tmp_path / "report.pdf"
    done = make_report(fill(tmp_path, skip=("1.2", "2.1 (b)")), out)
    assert done.returncode == 0, done.stderr
    assert "missing answers (2): 1.2, 2.1 (b)" in done.stderr
    texts = pages(out)
    found = heading_pages(texts)
    assert list(found) == HAND_GRADED
    marked = [i for i, text in enumerate(texts) if "No answer was given to this question" in text]
    assert marked == [found["1.2"], found["2.1 (b)"]]
    assert re.search(r"1\.2\s+no answer", texts[0]) and re.search(r"2\.1 \(b\)\s+no answer", texts[0])


@needs
def test_a_deleted_question_counts_as_missing(tmp_path):
    sheets = fill(tmp_path)
    notebook = json.loads(sheets[2].read_text())
    notebook["cells"] = [c for c in notebook["cells"]  # the heading and the answer of 3.2
                         if "3.2" not in {c["metadata"].get("answer_sheet", {}).get(k) for k in ("question", "answer")}]
    sheets[2].write_text(json.dumps(notebook))
    done = make_report(sheets, tmp_path / "report.pdf")
    assert done.returncode == 0 and "missing answers (1): 3.2" in done.stderr


@needs
@pytest.mark.parametrize("tex, message", [
    ("$\\frac{1}{2$", "question 2.1 (c): the math $\\frac{1}{2$ does not typeset: Missing close brace"),
    ("$\\mathbf{W} \\undefinedmacro$", "question 2.1 (c): the math $\\mathbf{W} \\undefinedmacro$ does not typeset: "
                                       "Undefined control sequence \\undefinedmacro"),
    ("the rate \\alpha without dollars", "question 2.1 (c): TeX left as raw text: \\alpha"),
])
def test_broken_math_stops_the_report_with_its_question(tmp_path, tex, message):
    out = tmp_path / "report.pdf"
    done = make_report(fill(tmp_path, answer=lambda n: tex if n == "2.1 (c)" else f"Fine: $x_{{{n[0]}}}$."), out)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert not out.exists()


def test_the_sweep_starter_names_what_the_student_package_has(tmp_path):
    """The answer sheet's plotting cell imports what assignment/part1/sweep.py defines, and compiles."""
    import assignment.part1.sweep as sweep
    starters = {q.starter for q in rubric.questions(rubric.load()) if q.starter}
    assert starters
    for code in starters:
        compile(code, "<starter>", "exec")
        for name in re.findall(r"from assignment\.part1\.sweep import (.+)", code)[0].split(", "):
            assert callable(getattr(sweep, name.strip()))


@needs
def test_the_student_edition_prints_its_own_answer_sheets(release, tmp_path):
    """``make report`` in the edition, with nothing on the path but the edition: every question listed as missing."""
    import os
    edition = tmp_path / "student"
    shutil.copytree(release, edition, ignore=shutil.ignore_patterns("html", "assignment", "data"))
    done = subprocess.run([sys.executable, "-m", "tools.report", "--out", "report.pdf"], cwd=edition, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert f"missing answers ({len(HAND_GRADED)}): {', '.join(HAND_GRADED)}" in done.stderr
    assert list(heading_pages(pages(edition / "report.pdf"))) == HAND_GRADED
