"""The course's pytest plugin (``pytest.ini`` loads it): which package is graded, the points of each
graded test, Gradescope's results.json, and where a test's probes run.

    pytest tests/graded                          # grade assignment/, the student package
    pytest tests/graded --impl=NAME              # another importable package, or --impl=path/to/package
    pytest tests/graded --results=results.json   # also write Gradescope's results.json

A graded test asks for the ``run`` fixture and calls its probes through it (``grader/probes.py``).
Here they run in this process. The autograder passes ``--sandbox=CONFIG`` instead: every probe then
runs in a sandboxed worker process, this process never imports student code, and a
probe that crashes or runs past the test's time limit fails that test alone.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

from grader.probes import ProbeError, call, loader
from grader.report import Grader

# One torch thread for the test run and every process it starts, the course's default, unless
# OMP_NUM_THREADS is set: through the environment, before a test imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT_LIMIT = 60.0  # seconds per test, unless @pytest.mark.timeout(n) says more (pytest.ini agrees)


def pytest_addoption(parser):
    group = parser.getgroup("grading")
    group.addoption("--impl", default="assignment",
                    help="package under test: an importable package ('assignment', the default) or a path to a package folder")
    group.addoption("--results", default=None, type=Path, help="write Gradescope's results.json here")
    group.addoption("--question", action="append", default=[], metavar="Q",
                    help="only the graded tests of question Q, e.g. --question 1.2 (repeat for more)")
    group.addoption("--sandbox", default=None, type=Path, help=argparse.SUPPRESS)  # the autograder's


def pytest_configure(config):
    global _GRADER
    config.addinivalue_line("markers", "points(n, question, visibility='visible'): a graded test worth n points")
    _GRADER = config._grader = Grader()
    config._sandbox = None
    if config.getoption("sandbox") is not None:
        from grader.sandbox import Sandbox
        config._sandbox = Sandbox.from_file(config.getoption("sandbox"))
        _GRADER.notes = list(config._sandbox.notes)


_GRADER: Grader | None = None


def pytest_unconfigure(config):
    if config._sandbox is not None:
        config._sandbox.stop()


def pytest_collection_modifyitems(config, items):
    questions = config.getoption("question")
    if questions:
        def asked(item) -> bool:
            marker = item.get_closest_marker("points")
            return marker is not None and str(marker.kwargs.get("question")) in questions
        config.hook.pytest_deselected(items=[item for item in items if not asked(item)])
        items[:] = [item for item in items if asked(item)]


def pytest_collection_finish(session):
    for item in session.items:  # after -k and -m have deselected
        session.config._grader.register(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    result = _GRADER.results.get(item.nodeid) if _GRADER is not None else None
    if report.failed and result is not None and result.read:
        report.sections.append(("what to re-read", result.read))  # shown under the failure


def pytest_runtest_logreport(report):
    if _GRADER is not None:
        _GRADER.record(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    grader: Grader = config._grader
    if not grader.results:
        return
    grader.finish()
    terminalreporter.section(f"points ({'the submission' if config._sandbox else config.getoption('impl')})")
    for line in grader.summary_lines():
        terminalreporter.write_line(line)
    path = config.getoption("results")
    if path is not None:
        grader.write(path)
        terminalreporter.write_line(f"wrote {path}")


# With a sandbox, the time limit is the sandbox's: it stops the worker, not this process (pytest-timeout's hooks).
@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    return True if item.config._sandbox is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item):
    return True if item.config._sandbox is not None else None


def time_limit(item) -> float:
    """A test's seconds: its ``@pytest.mark.timeout(n)``, never less than the default (the sandbox's or 60)."""
    marker = item.get_closest_marker("timeout")
    default = item.config._sandbox.timeout if item.config._sandbox is not None else DEFAULT_LIMIT
    return max(default, float(marker.args[0]) if marker and marker.args else 0.0)


def _package_name(impl: str) -> str:
    """Import name of the package under test; a folder path is put first on sys.path."""
    folder = Path(impl).resolve()
    if not (folder / "__init__.py").is_file():
        if impl.isidentifier() and importlib.util.find_spec(impl) is not None:
            return impl  # an importable package: assignment, or the course's reference package
        raise pytest.UsageError(f"--impl={impl!r} is neither an importable package nor a package folder")
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    return folder.name


@pytest.fixture(scope="module", autouse=True)
def _fresh_worker(request):
    """A test module's probes share one worker (one ``import torch``); the next module gets a new one."""
    yield
    if request.config._sandbox is not None:
        request.config._sandbox.stop()


@pytest.fixture
def run(request):
    """``run(probe, **arguments)``: the data the probe returns for the package under test.

    A probe that fails in the student's code fails the test with the student's traceback. With a
    sandbox, all the test's probes share the test's time limit; a probe that runs past it, or whose
    worker dies, fails the test and is named in results.json's ``extra_data``.
    """
    sandbox = request.config._sandbox
    deadline = time.monotonic() + time_limit(request.node)
    load = loader(_package_name(request.config.getoption("impl"))) if sandbox is None else None

    def _run(function, **arguments):
        if not getattr(function, "__probe__", False):
            raise TypeError(f"{function!r} is not a probe (mark it @probe)")
        try:
            if sandbox is None:
                return call(function, load, arguments)
            return sandbox.call(function.__module__, function.__name__, arguments, deadline)
        except ProbeError as exc:
            error = exc
        if getattr(error, "stopped", None):
            request.config._grader.stopped[error.stopped].append(request.node.nodeid)
        pytest.fail(str(error), pytrace=False)  # outside the except: the student's traceback alone
    return _run
