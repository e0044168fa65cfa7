"""The layout check of tools/browser_check.py sees what runs out of its column, on small pages made here."""
from __future__ import annotations

import shutil

import pytest

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                                 reason="needs Debian's chromium (apt-get install -y chromium)")]

PAGE = """<!DOCTYPE html><html><head><style>
article {{ width: 700px; margin: 0 auto; }}
pre {{ overflow-x: auto; }}
mjx-container {{ display: block; overflow-x: auto; }}
</style></head><body><article>
<p>Some text that wraps as text does, however long it is, because a paragraph breaks its lines.</p>
{body}
</article></body></html>"""
LONG = "x = " + " + ".join(f"weight_{i} * input_{i}" for i in range(40))
CASES = {
    "code": f"<pre>{LONG}</pre>",
    "output": f'<div class="cell_output"><div class="output"><pre>{LONG}</pre></div></div>',
    "math": f'<mjx-container display="true"><span style="display:inline-block;width:1200px">{LONG}</span></mjx-container>',
    "table": "<table><tr>" + "".join(f"<td>column_{i:02d}_wide</td>" for i in range(40)) + "</tr></table>",
}


def site(tmp_path, pages):
    for name, body in pages.items():
        (tmp_path / f"{name}.html").write_text(PAGE.format(body=body))
    return tmp_path


def test_overflowing_math_code_output_and_tables_are_problems(tmp_path):
    from tools.browser_check import check
    report = check(site(tmp_path, CASES))
    for name in CASES:
        problems = report[f"{name}.html"]["problems"]
        assert len(problems) == 1 and "out of its column" in problems[0], (name, problems)


def test_what_fits_its_column_passes(tmp_path):
    from tools.browser_check import check
    short = "x = weight_0 * input_0"
    fitting = {name: body.replace(LONG, short).replace("width:1200px", "width:200px").replace("range(40)", "")
               for name, body in CASES.items()}
    fitting["table"] = "<table><tr><td>one</td><td>two</td></tr></table>"
    report = check(site(tmp_path, fitting))
    assert {name: page["problems"] for name, page in report.items() if page["problems"]} == {}


def test_the_check_writes_no_screenshot_unless_asked(tmp_path):
    from tools.browser_check import check
    check(site(tmp_path, {"page": "<p>fits</p>"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
