"""Install requirements.txt into the Python that runs this script, torch first, from the right index.

    .venv/bin/python tools/install.py               # auto: CUDA where nvidia-smi works, else CPU
    .venv/bin/python tools/install.py --torch cpu   # force the CPU build
    .venv/bin/python tools/install.py --torch cuda  # force the CUDA build (Linux)
    .venv/bin/python tools/install.py --dry-run     # print what it would do

``make setup`` runs it in a fresh ``.venv`` (``make setup TORCH=cpu`` or ``TORCH=cuda`` to choose),
so it uses the standard library only.

On Linux, PyPI's ``torch`` is the CUDA build: several GB of NVIDIA libraries, useless without a
GPU. The CPU build comes from PyTorch's own index, ``CPU_INDEX``. On macOS and Windows, PyPI's
torch is already CPU-only (with MPS on Apple silicon), so both come from the default index.
A machine that reaches only a PyPI mirror cannot see ``CPU_INDEX``: a probe of a few seconds finds
that out, and the script says so in one line and installs from the default index instead (pip's
own retries take 10 s where the name does not resolve, many minutes where the connection hangs).

torch is installed alone first (``--no-deps``), then ``pip install -r requirements.txt`` installs
everything else, torch's dependencies included, with the pins of requirements.txt, the one list
of versions. The build installed is recorded in ``<venv>/torch-build.json``; a later run that
asks for another build replaces torch.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# PyTorch's CPU wheels. grader/templates/setup.sh (the Gradescope image) installs from the same index;
# tests/project/test_setup_env.py checks that the two agree.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 5                                        # a reachable index answers well within this
PIP_INDEX_OPTIONS = ["--timeout", "15", "--retries", "1"]  # for that index; pip's default: 5 retries
ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(sys.prefix) / "torch-build.json"
BUILDS = ("auto", "cpu", "cuda")


@dataclass
class Plan:
    build: str                 # "cpu" or "cuda": what was asked for (or found)
    index: str | None          # the index for torch, None for pip's default (PyPI or its mirror)
    notice: str | None = None  # one line for the user


def torch_requirement(requirements: Path) -> str:
    """The ``torch==...`` line of requirements.txt (without its comment)."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if re.match(r"torch\s*==", line):
            return line
    raise SystemExit(f"setup: {requirements} has no torch==... line")


def nvidia_gpu() -> bool:
    """Whether ``nvidia-smi`` runs and lists a GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s torch page answers within ``timeout`` seconds (through the usual proxies)."""
    try:
        with urllib.request.urlopen(f"{url}/torch/", timeout=timeout) as response:
            return response.status < 400
    except (OSError, ValueError):  # no DNS, refused, timed out, HTTP error (urllib's errors are OSErrors)
        return False


def plan(requested: str, torch_req: str, system: str, gpu: Callable[[], bool], probe: Callable[[str], bool]) -> Plan:
    """Where torch comes from, given the build asked for ("auto", "cpu" or "cuda") and the machine:
    ``system`` is platform.system(), ``gpu()`` says whether there is an NVIDIA GPU and ``probe(url)``
    whether an index answers (both called only when the choice depends on them)."""
    if system == "Darwin":  # PyPI's torch is the CPU build on macOS and Windows: no other index needed
        notice = "setup: PyPI's torch for macOS is the CPU build (it uses MPS on Apple silicon)"
        return Plan("cpu", None, notice + "; there is no CUDA build for macOS" * (requested == "cuda"))
    if system == "Windows":
        notice = "setup: PyPI's torch for Windows is the CPU build"
        cuda = "; its CUDA build is on PyTorch's own index: https://pytorch.org/get-started/locally/"
        return Plan("cpu", None, notice + cuda * (requested == "cuda"))
    build = requested if requested != "auto" else ("cuda" if gpu() else "cpu")
    if build == "cuda":
        return Plan("cuda", None, f"setup: installing {torch_req}, the CUDA build, from your default index "
                                  "(several GB of NVIDIA libraries)")
    if probe(CPU_INDEX):
        return Plan("cpu", CPU_INDEX)
    return Plan("cpu", None, f"setup: PyTorch's CPU index is unreachable; installing {torch_req} from your "
                             "default index (may be the CUDA build on Linux)")


def pip(*args: str, dry_run: bool = False) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command[2:]), flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def installed_torch() -> dict | None:
    """The torch this Python imports: version and CUDA version (None for the CPU build), or None."""
    code = "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 else None


def build_of(torch: dict) -> str:
    return "cuda" if torch.get("cuda") else "cpu"


def install(requested: str, requirements: Path, dry_run: bool = False) -> Plan:
    torch_req = torch_requirement(requirements)
    chosen = plan(requested, torch_req, platform.system(), nvidia_gpu, reachable)
    if chosen.notice:
        print(chosen.notice, flush=True)
    before = installed_torch()
    if before and build_of(before) != chosen.build and (chosen.index or chosen.build == "cuda"):
        # Switching builds: pip would keep the installed one, as 2.13.0+cpu satisfies torch==2.13.0.
        pip("uninstall", "--yes", "--quiet", "torch", dry_run=dry_run)
    pip("install", "--quiet", "--upgrade", "pip", dry_run=dry_run)
    index = ["--index-url", chosen.index, *PIP_INDEX_OPTIONS] if chosen.index else []
    pip("install", "--quiet", "--no-deps", torch_req, *index, dry_run=dry_run)
    pip("install", "--quiet", "-r", str(requirements), dry_run=dry_run)
    if not dry_run:
        torch = installed_torch() or {}
        record = {"requested": requested, "build": build_of(torch),
                  "index": chosen.index or "default", **torch, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        print(f"setup: torch {torch.get('torch')} ({record['build']} build) from the {record['index']} index; "
              f"recorded in {RECORD}", flush=True)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", choices=BUILDS, default="auto", help="torch's build (default: %(default)s)")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    args = parser.parse_args(argv)
    try:
        install(args.torch, args.requirements, args.dry_run)
    except subprocess.CalledProcessError as exc:
        print(f"setup: failed: {' '.join(exc.cmd[2:])} (exit {exc.returncode}; pip's message is above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
