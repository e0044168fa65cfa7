"""A headless Chromium driven through the Chrome DevTools Protocol, with the network off.

Chromium is Debian's package (``apt-get install -y chromium``), started headless: pages are
``file://`` URLs, and every other request goes to a dead proxy. It is driven over
``--remote-debugging-pipe`` (JSON messages on file descriptors 3 and 4, each ending with a NUL
byte), so no Python package beyond the standard library is needed. ``make report`` prints the
answer sheets to PDF with it (``tools/report.py``), and the course staff check the built book with it.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from grader.files import atomic_write

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--no-default-browser-check",
                  "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync", "--hide-scrollbars",
                  "--mute-audio", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                  "--remote-debugging-pipe"]


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
            "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
            "/Applications/Chromium.app/Contents/MacOS/Chromium")


def find_chromium(binary: str | None = None) -> str:
    """The browser binary: ``binary``, else the first of ``BROWSERS`` found; a clear error where there is none."""
    if binary is not None:
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(f"no browser at {binary!r}")
        return found
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        raise FileNotFoundError("no chromium: `apt-get install -y chromium` (Debian, Ubuntu: chromium-browser), "
                                "or Google Chrome, or name the binary with --chromium")
    return found


class Chromium:
    """A headless Chromium driven over --remote-debugging-pipe (CDP messages end with a NUL byte)."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
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
        atomic_write(path, base64.b64decode(data))

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

    def print_pdf(self, path: Path, timeout: float = 120, **options) -> int:
        """Print the open page to ``path`` (atomically) with ``Page.printToPDF``; returns its size in bytes."""
        data = base64.b64decode(self.call("Page.printToPDF", session=True, timeout=timeout, **options)["data"])
        atomic_write(path, data)
        return len(data)
