"""Shared pytest set-up: choose the package under test and grade the marked tests.

    pytest tests/graded                      # grade the student package, assignment/
    pytest tests/graded --impl=NAME          # another importable package, or --impl=path/to/package
    pytest tests/graded --results=results.json   # also write Gradescope's results.json
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

import pytest

from tests.grading import Grader

# One torch thread for the test run and every process it starts, the course's default
# (common.py's use_default_threads), unless OMP_NUM_THREADS is set. Through the environment, before
# a test imports torch: a student's assignment/__init__.py may not set it, and conftest must not import
# the package under test to call the function.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    group = parser.getgroup("grading")
    group.addoption("--impl", default="assignment",
                    help="package under test: an importable package ('assignment', the default) or a path to a package folder")
    group.addoption("--results", default=None, type=Path, help="write Gradescope's results.json here")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, question): a graded test worth n points for question")
    config._grader = Grader()


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        config._grader.register(item)


def pytest_runtest_logreport(report):
    grader = getattr(pytest_runtest_logreport, "grader", None)
    if grader is not None:
        grader.record(report)


def pytest_sessionstart(session):
    pytest_runtest_logreport.grader = session.config._grader


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    grader: Grader = config._grader
    if not grader.results:
        return
    grader.finish()
    terminalreporter.section(f"points ({config.getoption('impl')})")
    for line in grader.summary_lines():
        terminalreporter.write_line(line)
    path = config.getoption("results")
    if path is not None:
        grader.write(path)
        terminalreporter.write_line(f"wrote {path}")


def _package_name(impl: str) -> str:
    """Import name of the package under test; a folder path is put first on sys.path."""
    folder = Path(impl).resolve()
    if not (folder / "__init__.py").is_file():
        if impl.isidentifier() and importlib.util.find_spec(impl) is not None:
            return impl  # an importable package: assignment, or the course's reference package
        raise pytest.UsageError(f"--impl={impl!r} is neither an importable package nor a package folder")
    sys.path.insert(0, str(folder.parent))
    return folder.name


@pytest.fixture(scope="session")
def package(pytestconfig) -> str:
    return _package_name(pytestconfig.getoption("impl"))


@pytest.fixture
def load(package):
    """``load("part1.models")`` imports that module from the package under test.

    An import that fails (a syntax error, an exception or sys.exit at import time) fails the
    test that needs it, with the error shown, and nothing else.
    """
    def _load(module: str):
        name = f"{package}.{module}"
        try:
            return importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - a student's SystemExit must not end the run
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"importing {name} failed:\n{traceback.format_exc(limit=-3)}", pytrace=False)
    return _load
