"""The atomic writers of solutions/common.py leave a whole file with the usual mode, and nothing else."""
from __future__ import annotations

import os
import stat

from solutions.common import atomic_write_bytes


def test_atomic_write_replaces_the_file_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "sub" / "result.json"
    atomic_write_bytes(path, b"old")
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(path, b"new")
    finally:
        os.umask(umask)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["result.json"], "no temporary file is left behind"
