"""The environment a course user gets without knowing any of it: ``make setup``'s choice of torch
build (tools/install.py), torch's default thread count, and Part 2's one-line error offline.

Nothing here touches the network: the installer's probe and GPU check are injected, and the
offline tests block sockets.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solutions.common import DEFAULT_THREADS
from solutions.part2 import books
from solutions.part2.train import THREADS, parse_args
from tools import install

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"


def no_gpu() -> bool:
    return False


def a_gpu() -> bool:
    return True


def refuse(url: str) -> bool:
    raise AssertionError(f"probed {url}, which this choice needs no probe for")


# ---------------------------------------------------------------- the installer's choice


def test_requirements_pin_torch_and_setup_sh_uses_the_same_index():
    assert install.torch_requirement(ROOT / "requirements.txt") == TORCH
    setup_sh = (ROOT / "grader" / "templates" / "setup.sh").read_text()
    assert f"{TORCH} --index-url {install.CPU_INDEX}" in setup_sh  # the Gradescope image: the CPU build


@pytest.mark.parametrize("requested, gpu", [("auto", no_gpu), ("cpu", no_gpu), ("cpu", a_gpu)])
def test_linux_gets_the_cpu_build_from_pytorchs_index(requested, gpu):
    chosen = install.plan(requested, TORCH, "Linux", gpu, probe=lambda url: True)
    assert (chosen.build, chosen.index, chosen.notice) == ("cpu", install.CPU_INDEX, None)


@pytest.mark.parametrize("requested, gpu", [("auto", a_gpu), ("cuda", no_gpu)])
def test_linux_with_a_gpu_or_asked_gets_pypis_cuda_build(requested, gpu):
    chosen = install.plan(requested, TORCH, "Linux", gpu, probe=refuse)
    assert (chosen.build, chosen.index) == ("cuda", None)
    assert "CUDA build" in chosen.notice and "several GB" in chosen.notice


def test_unreachable_cpu_index_falls_back_to_the_default_index_with_one_line():
    chosen = install.plan("auto", TORCH, "Linux", no_gpu, probe=lambda url: False)
    assert (chosen.build, chosen.index) == ("cpu", None)
    assert chosen.notice == ("setup: PyTorch's CPU index is unreachable; installing torch==2.13.0 from your "
                             "default index (may be the CUDA build on Linux)")


@pytest.mark.parametrize("system", ["Darwin", "Windows"])
@pytest.mark.parametrize("requested", ["auto", "cpu", "cuda"])
def test_macos_and_windows_take_pypis_torch_which_is_the_cpu_build(system, requested):
    chosen = install.plan(requested, TORCH, system, a_gpu, probe=refuse)
    assert (chosen.build, chosen.index) == ("cpu", None)
    assert "is the CPU build" in chosen.notice and "\n" not in chosen.notice
    assert ("CUDA" in chosen.notice) == (requested == "cuda")


def test_probe_gives_up_within_its_timeout_on_a_server_that_never_answers():
    server = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never replies
    try:
        start = time.perf_counter()
        assert not install.reachable(f"http://127.0.0.1:{server.getsockname()[1]}/whl/cpu", timeout=0.5)
        assert time.perf_counter() - start < 3
    finally:
        server.close()
    assert not install.reachable("http://127.0.0.1:9/whl/cpu")  # refused: no timeout needed


@pytest.mark.parametrize("index_up", [True, False])
def test_install_puts_torch_first_alone_then_requirements(monkeypatch, capsys, index_up):
    commands = []
    monkeypatch.setattr(install, "pip", lambda *args, dry_run=False: commands.append(args))
    monkeypatch.setattr(install, "reachable", lambda url: index_up)
    monkeypatch.setattr(install, "nvidia_gpu", no_gpu)
    monkeypatch.setattr(install, "installed_torch", lambda: {"torch": "2.13.0+cpu", "cuda": None})
    monkeypatch.setattr(install.platform, "system", lambda: "Linux")
    install.install("auto", ROOT / "requirements.txt", dry_run=True)
    index = ["--index-url", install.CPU_INDEX, *install.PIP_INDEX_OPTIONS] if index_up else []
    assert commands == [("install", "--quiet", "--upgrade", "pip"),
                        ("install", "--quiet", "--no-deps", TORCH, *index),
                        ("install", "--quiet", "-r", str(ROOT / "requirements.txt"))]
    assert len(capsys.readouterr().out.splitlines()) == (0 if index_up else 1)  # the notice, or nothing


def test_asking_for_another_build_replaces_torch(monkeypatch):
    commands = []
    monkeypatch.setattr(install, "pip", lambda *args, dry_run=False: commands.append(args))
    monkeypatch.setattr(install, "installed_torch", lambda: {"torch": "2.13.0+cpu", "cuda": None})
    monkeypatch.setattr(install.platform, "system", lambda: "Linux")
    install.install("cuda", ROOT / "requirements.txt", dry_run=True)
    assert commands[0] == ("uninstall", "--yes", "--quiet", "torch")


def test_makefiles_run_the_installer_and_need_no_thread_variable():
    for makefile in (ROOT / "Makefile", ROOT / "tools" / "templates" / "Makefile.student"):
        text = makefile.read_text()
        assert "$(BIN)/python tools/install.py --torch $(TORCH)" in text
        assert "OMP_NUM_THREADS" not in text.replace("No OMP_NUM_THREADS needed", "")


# ---------------------------------------------------------------- torch's threads


def threads_after(code: str, omp: str | None) -> int:
    """torch.get_num_threads() after ``code`` in a fresh interpreter, with or without $OMP_NUM_THREADS."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the grader plugin sets it for the tests
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    out = subprocess.run([sys.executable, "-c", f"{code}; import torch; print(torch.get_num_threads())"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out)


PART2_COMMAND = "from solutions.part2.train import THREADS, use_default_threads; use_default_threads(THREADS)"


@pytest.mark.parametrize("code, omp, expected", [
    ("import solutions", None, DEFAULT_THREADS),
    ("import assignment", None, DEFAULT_THREADS),  # the generated package inherits it
    ("import solutions", "2", 2),                  # the user's choice wins
    (PART2_COMMAND, None, min(THREADS, os.cpu_count())),
    (PART2_COMMAND, "1", 1),
], ids=["solutions", "assignment", "OMP_NUM_THREADS=2", "part2-command", "part2-command-OMP_NUM_THREADS=1"])
def test_torch_threads_default_unless_omp_num_threads_is_set(code, omp, expected):
    assert threads_after(code, omp) == expected


# ---------------------------------------------------------------- Part 2 offline

def unreachable(*args, **kwargs):
    raise OSError(101, "Network is unreachable (blocked by the test)")


BLOCK_NETWORK = """
import socket
def unreachable(*args, **kwargs):
    raise OSError(101, "Network is unreachable (blocked by the test)")
socket.getaddrinfo = socket.create_connection = socket.socket.connect = unreachable
"""


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No mirror (argument, variable or shared folder), an empty cache and no network."""
    monkeypatch.delenv(books.MIRROR_ENV, raising=False)
    monkeypatch.setenv(books.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(books, "DEFAULT_MIRROR", tmp_path / "no-shared-mirror")
    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, unreachable)
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    return tmp_path


def test_fetch_offline_raises_one_line_that_names_the_mirror(offline):
    assert parse_args(["--mirror", "somewhere"])[0].mirror == "somewhere"  # the option the message names
    with pytest.raises(books.BookDownloadError) as info:
        books.fetch("communist_manifesto")
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, OSError)
    assert message.startswith("cannot download communist_manifesto.txt from https://")
    assert f"{books.MIRROR_ENV}=/that/folder" in message and "--mirror" in message
    assert info.value.__suppress_context__  # raised "from None": the notebook shows no requests traceback


def test_part2_command_offline_exits_2_with_one_error_line(offline):
    code = BLOCK_NETWORK + f"""
import runpy, sys
from pathlib import Path
import solutions.part2.books as books
books.DEFAULT_MIRROR = Path({str(offline / "no-shared-mirror")!r})
sys.argv = ["train", "--book", "communist_manifesto", "--steps", "1", "--out", {str(offline / "run")!r}]
runpy.run_module("solutions.part2.train", run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download communist_manifesto.txt"), result.stderr
