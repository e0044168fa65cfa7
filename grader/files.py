"""Files that a reader sees whole or not at all: what the grader and the course's tools write.

    with atomic_open(Path("scores.csv"), "w", newline="") as handle:   # streamed, then put in place
        ...
    atomic_write(Path("results.json"), text)                            # or all at once (str or bytes)

The data goes to a temporary file in the same folder, which replaces the target only once it is
complete and on disk; if anything fails, or Ctrl-C comes, the target is untouched and the temporary
file is removed. (The students' package has its own, ``atomic_write_bytes`` in ``common.py``: it must
run without this package.)
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **options) -> Iterator[IO]:
    """A handle to write ``path`` through (``mode`` "w" or "wb", with open()'s ``options``), put in place at the end."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file gets the mode open() would give it
        if mode == "w":
            options.setdefault("encoding", "utf-8")
        with os.fdopen(fd, mode, **options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
    return Path(path)
