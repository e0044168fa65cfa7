"""The pytest plugin of the isolated grader's child process (see ``tools/autograder.py``).

The parent starts ``python -m pytest -p tools.autograder_plugin ...`` and writes one JSON line on
the child's stdin: ``{"key": hex, "nonce": hex, "fd": n, "mode": "collect" | "run", "expect": [...]}``.
This module reads it **when pytest imports the plugin**, before the conftest files, the test
modules and any student code are imported, and keeps the key only inside a keyed HMAC object in
a closure. Records go to the file descriptor ``fd`` that the parent opened and passed down:

- ``collect`` mode: one line with the graded tests (id, points, question, title, visibility);
- ``run`` mode: ``{"start": id}`` when a test starts (unsigned: only used to name a crashed
  test), then one signed line ``{"record": [nonce, id, status, output], "mac": hex}`` after its
  teardown. A test passes only if its setup, call and teardown raised nothing (read from pytest's
  CallInfo, not from the report a patched TestReport could fake) and the grading machinery that
  existed before the first student import is still the same objects (the runner, the report
  class, the test functions' code, the comparison functions the tests use).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys


def _read_handshake():
    line = sys.stdin.buffer.readline()
    try:
        message = json.loads(line)
        return (hmac.new(bytes.fromhex(message.pop("key")), digestmod=hashlib.sha256),
                message["nonce"], message["fd"], message["mode"], set(message.get("expect", ())))
    except (ValueError, KeyError, TypeError):
        raise SystemExit("tools.autograder_plugin: run by tools.autograder only (no handshake on stdin)")


def _make_hooks():
    keyed, nonce, fd, mode, expect = _read_handshake()
    write = os.write
    outcomes: dict[str, list] = {}  # id -> [(phase, passed, text)]
    watched: dict[str, object] = {}

    def emit(obj) -> None:
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[write(fd, data):]

    def sign(nodeid: str, status: str, output: str) -> None:
        record = [nonce, nodeid, status, output]
        mac = keyed.copy()
        mac.update(json.dumps(record).encode())
        emit({"record": record, "mac": mac.hexdigest()})

    def machinery() -> dict[str, object]:
        """The objects whose replacement would change how an outcome is decided."""
        import _pytest.python
        import _pytest.reports
        import _pytest.runner
        import pluggy
        import torch
        import torch.testing
        report = _pytest.reports.TestReport
        return {
            "_pytest.runner.call_and_report": _pytest.runner.call_and_report,
            "_pytest.runner.CallInfo.from_call": _pytest.runner.CallInfo.__dict__.get("from_call"),
            "_pytest.runner.pytest_runtest_makereport": _pytest.runner.pytest_runtest_makereport,
            "_pytest.reports.TestReport": report,
            "_pytest.reports.TestReport.__init__": report.__init__,
            "_pytest.reports.TestReport.from_item_and_call": report.__dict__.get("from_item_and_call"),
            "_pytest.python.Function.runtest": _pytest.python.Function.runtest,
            "_pytest.python.pytest_pyfunc_call": _pytest.python.pytest_pyfunc_call,
            "pluggy.HookCaller.__call__": pluggy.HookCaller.__call__,
            "torch.allclose": torch.allclose, "torch.equal": torch.equal,
            "torch.testing.assert_close": torch.testing.assert_close,
        }

    def snapshot(items) -> None:
        watched.update(machinery())
        for item in items:
            function = getattr(item, "function", None)
            if function is not None:
                watched[f"{item.nodeid} code"] = (function, function.__code__)

    def tampered() -> list[str]:
        changed = [name for name, obj in machinery().items() if watched.get(name) is not obj]
        for name, value in watched.items():
            if name.endswith(" code"):
                function, code = value
                if function.__code__ is not code:
                    changed.append(name)
        return changed

    class Hooks:
        def pytest_collection_finish(self, session):
            if mode == "collect":
                from tests.grading import Grader
                grader = Grader()
                for item in session.items:
                    grader.register(item)
                limits = {}
                for item in session.items:
                    marker = item.get_closest_marker("timeout")
                    limits[item.nodeid] = float(marker.args[0]) if marker and marker.args else None
                emit({"collected": [{"id": nodeid, "number": r.number, "max_score": r.max_score, "name": r.name,
                                     "visibility": r.visibility, "timeout": limits.get(nodeid)}
                                    for nodeid, r in grader.results.items()]})
            else:
                snapshot(session.items)

        def pytest_runtest_logstart(self, nodeid, location):
            if mode == "run" and nodeid in expect:
                emit({"start": nodeid})

        import pytest as _pytest_module

        @_pytest_module.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_makereport(self, item, call):
            report = yield
            if mode == "run" and item.nodeid in expect:
                passed = call.excinfo is None and report.passed
                text = "" if passed else (report.longreprtext or (call.excinfo.exconly() if call.excinfo else "failed"))
                outcomes.setdefault(item.nodeid, []).append((call.when, passed, text))
                if call.when == "teardown":
                    phases = outcomes.pop(item.nodeid)
                    ok = [p for p in phases if p[1]]
                    status = "passed" if len(ok) == 3 and [p[0] for p in phases] == ["setup", "call", "teardown"] else "failed"
                    output = "\n".join(f"[{when}] {text[-4000:]}" for when, good, text in phases if not good)
                    changes = tampered()
                    if changes:
                        status = "failed"
                        output += "\nthe grading machinery was modified during the test: " + ", ".join(changes)
                    sign(item.nodeid, status, output.strip())
            return report

        del _pytest_module

    return Hooks()


def pytest_configure(config):
    config.pluginmanager.register(_HOOKS, "autograder-child")


_HOOKS = _make_hooks()
