"""Small helpers shared by every part: devices, seeds, provenance and atomic files."""
from __future__ import annotations

import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


# Torch's intra-op threads when the user did not choose (measured on the course's 2-core machine):
# Part 1's LSTM (hidden 128, batch 128) trained as fast with one thread as with two when alone, and
# with one far faster when other work shared the cores (once 28-55 it/s against 2 it/s with two).
# Part 2's larger model trains 1.4-1.7x faster with two, so its commands ask for two.
DEFAULT_THREADS = 1


def use_default_threads(threads: int = DEFAULT_THREADS) -> int:
    """Give torch ``threads`` intra-op threads (at most one per core) unless ``$OMP_NUM_THREADS`` is set.

    Torch itself reads ``OMP_NUM_THREADS`` when it starts, so a user who set it keeps it. Importing
    the package calls this (``__init__.py``), so that every command, notebook and test gets one
    thread without knowing about it. Returns torch's thread count.
    """
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    return torch.get_num_threads()


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when it is available, else the CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def command_line() -> str | None:
    """The command that started this process, as one would type it (``python -m pkg.mod ...``)."""
    if not sys.argv or not sys.argv[0] or "ipykernel" in sys.argv[0]:
        return None  # an interactive session or a notebook kernel
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["-m", spec.name] if spec is not None else [sys.argv[0]]
    return shlex.join(["python", *program, *sys.argv[1:]])


VERSION_KEYS = ("python", "torch", "numpy")


def environment() -> dict[str, Any]:
    """The versions and the machine a result was made with (plain str, so that checkpoints holding it
    load with ``torch.load(weights_only=True)``)."""
    return {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
            "platform": platform.platform(), "processor": platform.machine(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads()}


def provenance(settings: dict[str, Any], started: float | None = None) -> dict[str, Any]:
    """What a result file records beside its numbers: the command, the settings and the versions."""
    env = environment()
    record = {
        "command": command_line(),
        "settings": settings,
        "versions": {k: env[k] for k in VERSION_KEYS},
        "machine": {k: v for k, v in env.items() if k not in VERSION_KEYS},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if started is not None:
        record["wall_time_s"] = round(time.perf_counter() - started, 2)
    return record


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file gets the mode open() would give it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save through a temporary file in the same folder, then an atomic rename."""
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
