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
off: pages are ``file://`` URLs, and every other request goes to a dead proxy (each such request is
listed). It is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (JSON
messages on file descriptors 3 and 4), so no Python package beyond the standard library is needed.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--no-default-browser-check",
                  "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync", "--hide-scrollbars",
                  "--mute-audio", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                  "--remote-debugging-pipe"]
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


class Chromium:
    """A headless Chromium driven over --remote-debugging-pipe (CDP messages end with a NUL byte)."""

    def __init__(self, binary: str, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.profile = tempfile.mkdtemp(prefix="browser-check-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: bash puts our ends there (dash cannot name fds above 9).
        high_r, high_w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r), os.close(from_child_w)
        redirect = f'exec "$@" 3<&{high_r} 4>&{high_w} {high_r}<&- {high_w}>&-'
        self.proc = subprocess.Popen(["bash", "-c", redirect, "bash", binary, *CHROMIUM_FLAGS,
                                      f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
                                     pass_fds=(high_r, high_w), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(high_r), os.close(high_w)
        self._next, self._buffer, self.events = 0, b"", []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.call(method, session=True)
        self.call("Page.setLifecycleEventsEnabled", session=True, enabled=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (did it start?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str, timeout: float = 60) -> list[str]:
        """Load ``url`` and wait for its load event; returns the requests that tried the network."""
        self.events.clear()
        loader = self.call("Page.navigate", session=True, url=url)["loaderId"]

        def loaded(event: dict) -> bool:
            params = event.get("params", {})
            return (event.get("method") == "Page.lifecycleEvent" and params.get("loaderId") == loader
                    and params.get("name") == "load")

        while not any(loaded(e) for e in self.events):
            self.events.append(self._read(timeout))
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("file:", "data:", "about:", "blob:"))]

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.call("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page's script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(base64.b64decode(data))
        os.replace(tmp, path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self._to_child), os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)


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
    binary = binary or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise FileNotFoundError("no chromium: `apt-get install -y chromium` (Debian's package)")
    site = Path(site).resolve()
    pages = sorted(p for p in site.rglob("*.html") if p.name not in SKIP and not {"_static", "_sources"} & set(p.parts)
                   and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])  # index.html redirects
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {site}: build the book first (make book)")
    report = {}
    browser = Chromium(binary)
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
