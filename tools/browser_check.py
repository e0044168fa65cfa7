"""Open the built book in headless Chromium, offline, and check what a reader sees.

    python -m tools.browser_check _build/html [--screenshot docs/screenshot-part1.png]
    make browser-check          # builds the book first

For every page: MathJax (served by the book, see ``_config.yml``) finished, every math element that
Sphinx wrote (``.math``) holds MathJax's output (``mjx-container``), no TeX error (``mjx-merror``),
no raw ``$$``, ``\\(`` or ``\\[`` left in the text outside code, and every image loaded
(``naturalWidth > 0``), and nothing a reader must see runs out of its column at a common laptop width
(``WIDTH``): no display equation, code block or cell output whose content is wider than its box
(``scrollWidth > clientWidth``: cut, or hidden behind a scroll bar) or that reaches past the right
edge of the article. With ``--screenshot PATH`` it also saves a screenshot of a Part 1 page at its
first equation (``make screenshot``; ``make browser-check`` only checks, it writes nothing).

Chromium is Debian's package (``apt-get install -y chromium``), started headless with the network
off by ``tools/cdp.py``: pages are ``file://`` URLs, and every other request goes to a dead proxy
(each such request is listed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tools.cdp import Chromium, find_chromium

SKIP = {"genindex.html", "search.html", "py-modindex.html"}
WIDTH, HEIGHT = 1366, 768  # the most common laptop screen: the book must fit its column there
# Run in the page once MathJax is done: what the reader sees.
INSPECT = r"""
(async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }
  const math = Array.from(document.querySelectorAll('.math'));
  const skip = el => el.closest('pre, code, script, style, mjx-container, .highlight, textarea');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let text = '';
  for (let n = walker.nextNode(); n; n = walker.nextNode()) { if (!skip(n.parentElement)) text += n.data + ' '; }
  const raw = ['$$', '\\(', '\\[', '\\begin{'].filter(t => text.includes(t));
  // What runs out of its column: display math, code and outputs wider than their box, or past the article.
  function overflowing() {
    const article = document.querySelector('article, main, body');
    const edge = article.getBoundingClientRect().right;
    const seen = new Set(), found = [];
    const boxes = document.querySelectorAll('mjx-container[display="true"], div.math, .MathJax_Display, pre, ' +
                                            'div.highlight, .cell_output .output, .output_area, table');
    for (const el of boxes) {
      if (seen.has(el) || el.closest('.d-none, [hidden]') || el.offsetParent === null) continue;
      const wide = el.scrollWidth - el.clientWidth;
      const past = el.getBoundingClientRect().right - edge;
      if (wide > 1 || past > 1) {
        // report the outermost box only: a pre inside an overflowing div.highlight is the same problem
        for (const inner of el.querySelectorAll('*')) seen.add(inner);
        const label = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                      (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
        found.push({element: label, by: Math.round(Math.max(wide, past)),
                    text: (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60)});
      }
    }
    return found;
  }
  return {
    mathjax: mj && mj.version ? mj.version : null,
    math: math.length,
    typeset: math.filter(el => el.querySelector('mjx-container')).length,
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent).slice(0, 5),
    raw: raw,
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
    overflow: overflowing(),
  };
})()
"""


def problems(page: dict) -> list[str]:
    """What a reader would see wrong on a page, from INSPECT's answer."""
    found = []
    if page["math"] and not page["mathjax"]:
        found.append("MathJax did not load")
    if page["typeset"] < page["math"]:
        found.append(f"{page['math'] - page['typeset']} of {page['math']} equations not typeset")
    if page["errors"]:
        found.append(f"TeX errors: {page['errors']}")
    if page["raw"]:
        found.append(f"raw TeX left in the text: {page['raw']}")
    found += [f"image did not load: {i['src']}" for i in page["images"] if not i["ok"]]
    found += [f"{o['element']} runs {o['by']} px out of its column: {o['text']!r}" for o in page.get("overflow", [])]
    return found


def check(site: Path, screenshot: Path | None = None, binary: str | None = None,
          shot_page: str = "part1/1_1_gradients.html") -> dict:
    """Check every page of the built site; returns {page: INSPECT's answer + problems + network}."""
    binary = find_chromium(binary)
    site = Path(site).resolve()
    pages = sorted(p for p in site.rglob("*.html") if p.name not in SKIP and not {"_static", "_sources"} & set(p.parts)
                   and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])  # index.html redirects
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {site}: build the book first (make book)")
    report = {}
    browser = Chromium(binary, WIDTH, HEIGHT)
    try:
        for page in pages:
            network = browser.open(page.as_uri())
            answer = browser.evaluate(INSPECT)
            answer["network"] = network
            answer["problems"] = problems(answer)
            report[str(page.relative_to(site))] = answer
            if screenshot is not None and page.relative_to(site).as_posix() == shot_page:
                browser.evaluate("(() => { const m = document.querySelector('div.math');"
                                 " if (m) window.scrollTo(0, m.getBoundingClientRect().top + window.scrollY - 250); })()")
                time.sleep(0.5)
                browser.screenshot(screenshot)
    finally:
        browser.close()
    if screenshot is not None and shot_page not in report:
        raise FileNotFoundError(f"{shot_page} is not in {site}: nothing to take a screenshot of")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, nargs="?", default=Path("_build/html"), help="the built book")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of a Part 1 page here")
    parser.add_argument("--page", default="part1/1_1_gradients.html", help="the page of the screenshot")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    report = check(args.site, args.screenshot, args.chromium, args.page)
    bad = 0
    for name, page in report.items():
        status = "; ".join(page["problems"]) or "ok"
        bad += bool(page["problems"])
        print(f"{name}: {page['typeset']}/{page['math']} equations typeset, {len(page['images'])} images, {status}")
        if page["network"]:
            print(f"  blocked network requests: {page['network'][:5]}")
    versions = sorted({page["mathjax"] for page in report.values() if page["mathjax"]})
    print(f"{len(report)} pages, {bad} with problems, MathJax {', '.join(versions) or 'never loaded'}, "
          f"{time.monotonic() - start:.0f} s" + (f"; screenshot in {args.screenshot}" if args.screenshot else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
