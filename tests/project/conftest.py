"""Fixtures shared by the project's tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Path:
    """The student edition, built once per test session by ``python -m tools.release``."""
    out = tmp_path_factory.mktemp("release") / "student"
    subprocess.run([sys.executable, "-m", "tools.release", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=900)
    return out
