"""Print the answer sheets to one PDF for manual grading: ``make report``.

    python -m tools.report                                  # book/answers/part*.ipynb -> report.pdf
    python -m tools.report my/part1.ipynb --out part1.pdf   # other sheets, another file

Each answer sheet is a notebook with a section per hand-graded question, headed
``## Question 2.1 (b): <title> (<points> points)``. The PDF has a first page that lists every question
and whether it has an answer, then each question on a new page under its heading, followed by the
answer: the Markdown cells with their math typeset, the images they show (files next to the
notebook, or pasted into the cell) and what the code cells printed and drew (run them before you
save). Gradescope then maps pages to questions by these headings.

A question without an answer is listed on the command line and marked on its page; a question whose
heading was deleted from a sheet counts as missing too. Math that does not typeset (a TeX error, an
unknown command, TeX left as raw text) or an image that cannot be found stops the report with the
question it is in; no PDF is written then.

It works offline: the page is typeset with the book's own copy of MathJax
(``book/_offline/_static/mathjax``) and printed by headless Chromium (``tools/cdp.py``,
``Page.printToPDF``); the PDF is written atomically.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import mimetypes
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from mdit_py_plugins.amsmath import amsmath_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin

from tools.cdp import Chromium, find_chromium

ROOT = Path(__file__).resolve().parent.parent
SHEETS = ROOT / "book" / "answers"
MATHJAX = ROOT / "book" / "_offline" / "_static" / "mathjax" / "tex-svg-full.js"
HEADING = re.compile(r"^#{1,3}\s*Question\s+(?P<number>\d\.\d(?:\s*\([a-z]\))?)\s*(?::\s*(?P<rest>.*))?$", re.M)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


class ReportError(RuntimeError):
    """The answer sheets cannot be printed as they are (the message names the question)."""


@dataclass
class Section:
    number: str
    heading: str                      # the heading line's text, without the #s
    sheet: Path
    intro: str = ""                   # the statement under the heading (Markdown)
    cells: list[dict] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Some Markdown text, or a figure drawn by a code cell."""
        for cell in self.cells:
            if cell["cell_type"] == "markdown" and _source(cell).strip():
                return True
            if cell["cell_type"] == "code" and any(set(IMAGE_TYPES) & set(o.get("data", {})) for o in cell.get("outputs", [])):
                return True  # a figure; printed text alone is no answer
        return False


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def read_sheet(path: Path) -> tuple[list[Section], list[str]]:
    """The sections of one answer sheet, and the questions its metadata expects."""
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReportError(f"{path}: not a readable notebook ({error})") from None
    expected = []
    for cell in cells:
        expected = cell.get("metadata", {}).get("answer_sheet", {}).get("questions", expected)
    sections: list[Section] = []
    for cell in cells:
        heading = HEADING.search(_source(cell)) if cell.get("cell_type") == "markdown" else None
        if heading:
            number = re.sub(r"\s*\(", " (", heading["number"])
            text = _source(cell)
            sections.append(Section(number, heading[0].lstrip("#").strip(), Path(path), text[heading.end():].strip()))
        elif sections:
            sections[-1].cells.append(cell)
    return sections, [str(q) for q in expected]


# ------------------------------------------------------------------------------------------ HTML

def _math(content: str, options: dict) -> str:
    display = options.get("display_mode", False)
    kind = "display" if display else "inline"
    return f'<span class="tex {kind}" data-tex="{html.escape(content)}"></span>'


MARKDOWN = (MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
            .use(dollarmath_plugin, double_inline=True, renderer=_math)
            .use(amsmath_plugin, renderer=lambda content: _math(content, {"display_mode": True})))


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _markdown_html(cell: dict, section: Section) -> str:
    """A Markdown cell as HTML, its images embedded (from files next to the sheet, or the cell's attachments)."""
    text = MARKDOWN.render(_source(cell))
    attachments = cell.get("attachments", {})

    def embed(match: re.Match) -> str:
        src = html.unescape(match["src"])
        if src.startswith("data:"):
            return match[0]
        if src.startswith("attachment:"):
            found = attachments.get(src.split(":", 1)[1], {})
            for mime, data in found.items():
                return match[0].replace(match["src"], _data_uri(base64.b64decode(data), mime))
            raise ReportError(f"question {section.number}: the pasted image {src!r} is not in the notebook")
        if re.match(r"^[a-z]+://", src):
            raise ReportError(f"question {section.number}: the image {src!r} is on the network; save it next to "
                              f"{section.sheet.name} and link the file")
        path = (section.sheet.parent / src).resolve()
        if not path.is_file():
            raise ReportError(f"question {section.number}: the image {src!r} is not there ({path})")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return match[0].replace(match["src"], _data_uri(path.read_bytes(), mime))

    return re.sub(r'<img src="(?P<src>[^"]*)"', embed, text)


def _output_html(output: dict) -> str:
    """What a code cell's output shows: an image, or printed text ('' for nothing shown)."""
    if output.get("output_type") == "stream":
        text = "".join(output.get("text", ""))
        return f"<pre>{html.escape(text)}</pre>" if text.strip() else ""
    data = output.get("data", {})
    for mime in IMAGE_TYPES:
        if mime in data:
            payload = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            if mime == "image/svg+xml":
                return f'<div class="figure">{payload}</div>'
            return f'<div class="figure"><img src="data:{mime};base64,{payload.strip()}"></div>'
    if output.get("output_type") == "error":
        return f"<pre class=\"error\">{html.escape(output.get('ename', ''))}: {html.escape(output.get('evalue', ''))}</pre>"
    text = "".join(data.get("text/plain", ""))
    return f"<pre>{html.escape(text)}</pre>" if text.strip() and not text.startswith("<Figure") else ""


STYLE = """
@page { size: A4; margin: 18mm 18mm 20mm 18mm; }
body { font-family: "DejaVu Serif", Georgia, serif; font-size: 11pt; line-height: 1.45; color: #111; }
h1 { font-size: 20pt; margin: 0 0 8mm 0; }
section.question { break-before: page; }
section.question > h2 { font-size: 15pt; border-bottom: 1px solid #444; padding-bottom: 2mm; }
.statement { color: #333; font-style: italic; margin-bottom: 6mm; }
.missing { border: 2px solid #b00; color: #b00; padding: 4mm; font-weight: bold; }
pre { font-size: 9pt; white-space: pre-wrap; background: #f4f4f4; padding: 2mm; }
img, svg { max-width: 100%; }
.figure { margin: 4mm 0; text-align: center; }
table { border-collapse: collapse; } td, th { border: 1px solid #999; padding: 1mm 2mm; }
table.summary td.missing-cell { color: #b00; font-weight: bold; }
mjx-container[display="true"] { margin: 3mm 0; }
"""

# Typeset every .math element with MathJax, one at a time, so that an error is known by its question.
TYPESET = r"""
(async () => {
  await MathJax.startup.promise;
  const errors = [];
  for (const el of document.querySelectorAll('.tex')) {
    const display = el.classList.contains('display');
    const question = el.closest('section') ? el.closest('section').dataset.question : '';
    try {
      const node = await MathJax.tex2svgPromise(el.dataset.tex, {display: display});
      el.appendChild(node);
      const err = node.querySelector('mjx-merror, [data-mjx-error]');
      if (err) errors.push([question, el.dataset.tex, err.getAttribute('data-mjx-error') || err.textContent]);
    } catch (e) { errors.push([question, el.dataset.tex, String(e.message || e)]); }
  }
  document.head.appendChild(MathJax.svgStylesheet());
  const skip = el => el.closest('pre, code, script, style, mjx-container, .math');
  for (const section of document.querySelectorAll('section')) {
    const walker = document.createTreeWalker(section, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (skip(n.parentElement)) continue;
      const raw = n.data.match(/\$\$|\\\(|\\\[|\\begin\{|\\[a-zA-Z]{2,}/);
      if (raw) errors.push([section.dataset.question, n.data.trim().slice(0, 60), 'TeX left as raw text: ' + raw[0]]);
    }
  }
  const images = Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => [i.closest('section') ? i.closest('section').dataset.question : '', (i.getAttribute('src') || '').slice(0, 60)]);
  return {errors: errors, images: images, version: MathJax.version};
})()
"""


def build_html(sections: list[Section], missing: list[str], deleted: list[str], title: str) -> str:
    rows = []
    for number in [s.number for s in sections] + deleted:
        state = "no answer" if number in missing else "answered"
        rows.append(f'<tr><td>{html.escape(number)}</td><td class="{"missing-cell" if number in missing else ""}">'
                    f"{state}</td></tr>")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(sections) + len(deleted) - len(missing)} of {len(sections) + len(deleted)} questions answered."
             " Each question starts on a new page.</p>",
             '<table class="summary"><tr><th>question</th><th>answer</th></tr>' + "".join(rows) + "</table>"]
    for section in sections:
        body = [f"<h2>{html.escape(section.heading)}</h2>"]
        if section.intro:
            body.append(f'<div class="statement">{_markdown_html({"source": section.intro}, section)}</div>')
        if not section.answered:
            body.append('<p class="missing">No answer was given to this question.</p>')
        for cell in section.cells:
            if cell["cell_type"] == "markdown":
                body.append(_markdown_html(cell, section))
            elif cell["cell_type"] == "code":
                body += [_output_html(output) for output in cell.get("outputs", [])]
        parts.append(f'<section class="question" data-question="{html.escape(section.number)}">{"".join(body)}</section>')
    for number in deleted:
        parts.append(f'<section class="question" data-question="{html.escape(number)}"><h2>Question {html.escape(number)}</h2>'
                     '<p class="missing">No answer was given to this question: its section is not in the answer sheet.</p></section>')
    config = "window.MathJax = {startup: {typeset: false}, tex: {packages: {'[-]': ['noundefined']}}, svg: {fontCache: 'local'}, options: {enableAssistiveMml: false}};"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style><script>{config}</script>"
            f'<script src="{MATHJAX.as_uri()}"></script></head><body>{"".join(parts)}</body></html>')


def course_title() -> str:
    """The book's title (``_config.yml``), which the report's first page repeats."""
    import yaml
    try:
        return str(yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["title"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "The assignment"


def report(sheets: list[Path], out: Path, title: str | None = None, binary: str | None = None) -> dict:
    """Print the sheets into ``out``; returns {"missing": [...], "pages": ..., "bytes": ..., "questions": [...]}."""
    sections: list[Section] = []
    deleted: list[str] = []
    for sheet in sheets:
        found, expected = read_sheet(sheet)
        numbers = [s.number for s in found]
        deleted += [q for q in expected if q not in numbers]
        sections += found
    if not sections and not deleted:
        raise ReportError(f"no question headings (## Question X.Y: ...) in {', '.join(map(str, sheets))}")
    repeated = sorted({n for n in [s.number for s in sections] if [s.number for s in sections].count(n) > 1})
    if repeated:
        raise ReportError(f"question {repeated[0]} has more than one section in the answer sheets")
    missing = [s.number for s in sections if not s.answered] + deleted
    if not MATHJAX.is_file():
        raise ReportError(f"MathJax is not at {MATHJAX}")
    page = build_html(sections, missing, deleted, title or f"{course_title()}: answers")
    browser = Chromium(find_chromium(binary))
    try:
        with tempfile.TemporaryDirectory(prefix="report-") as tmp:
            source = Path(tmp) / "report.html"
            source.write_text(page, encoding="utf-8")
            browser.open(source.as_uri())
            checked = browser.evaluate(TYPESET, timeout=300)
            if not checked.get("version"):
                raise ReportError("MathJax did not load")
            for question, tex, message in checked["errors"]:
                if message.startswith("TeX left"):
                    raise ReportError(f"question {question}: {message} in “{tex}” (math goes between $...$ or $$...$$)")
                raise ReportError(f"question {question}: the math ${tex}$ does not typeset: {message}")
            for question, src in checked["images"]:
                raise ReportError(f"question {question}: the image {src!r}... did not load")
            size = browser.print_pdf(out, printBackground=True, preferCSSPageSize=True, displayHeaderFooter=True,
                                     headerTemplate="<span></span>",
                                     footerTemplate='<div style="font-size:8pt;width:100%;text-align:center">'
                                                    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')
    finally:
        browser.close()
    return {"missing": missing, "bytes": size, "questions": [s.number for s in sections] + deleted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sheets", type=Path, nargs="*", help="the answer sheets, in order (default: book/answers/part*.ipynb)")
    parser.add_argument("--out", type=Path, default=Path("report.pdf"), help="the PDF to write (default: %(default)s)")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    sheets = args.sheets or sorted(SHEETS.glob("part*.ipynb"))
    start = time.monotonic()
    try:
        done = report(sheets, args.out, binary=args.chromium)
    except (ReportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if done["missing"]:
        print(f"missing answers ({len(done['missing'])}): {', '.join(done['missing'])}", file=sys.stderr)
    print(f"wrote {args.out}: {len(done['questions'])} questions, {len(done['questions']) - len(done['missing'])} answered, "
          f"{done['bytes'] / 1e6:.1f} MB, {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
