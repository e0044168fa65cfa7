"""The sandbox: the worker process that runs a submission's probes, and everything that holds it.

The trusted side (the pytest session of ``grader/autograder.py``) calls ``Sandbox.call`` for each
probe. The sandbox starts a worker when it has none (``grader/worker.py``, in a folder of its own
that holds the submission's package and the public tests), sends the request, and waits for the
answer until the test's deadline. A worker that runs past it, dies, or answers with anything but a
frame of plain data is killed with all its descendants, and that probe's test fails; the next probe
gets a new worker. Every worker is stopped at the end of a test module and of the session.

What holds the worker:

- **Who it runs as.** As root, the worker runs as a dedicated unprivileged user (``--user``,
  ``autograder-student`` by default, created by the autograder's ``setup.sh``). If that user cannot
  run our Python, the grader stops with an error (``RootRefused``) unless ``--allow-root``; then the
  worker runs as root *without any capability*. Not as root, it runs as the grader's own user.
- **What it sees** (as root, where util-linux ``unshare`` works): its own mount, PID, IPC and network
  namespaces,
  shaped by ``grader/jail.py``: the grader's folder, the repository, /tmp, homes, the other
  submissions and the results are covered, every other mount is read-only, and it can
  neither see nor signal a process outside, nor reach a network; its home is a size-limited tmpfs.
- **How long it lives.** The grader is a child subreaper (Linux): a descendant that left the worker's
  session (``setsid``, a double fork) is re-parented to us, and ``reap`` kills and reaps every one of
  them when a worker stops. In a PID namespace the kernel does it too.
- **Limits** (``setrlimit`` before the worker starts, inherited by all it starts): CPU time, 4 GiB of
  address space per process, files of 64 MiB, and answers of 64 MiB; as root, cgroups of its own hold
  the whole worker tree to 4 GiB of memory and 256 processes and threads (root is exempt from
  RLIMIT_NPROC); as the dedicated user without cgroups, RLIMIT_NPROC. Not as root, as the grader's
  own user, there is neither a process limit nor a total memory limit. Its output goes to a file, of which a failure shows
  the last 4000 characters.
"""
from __future__ import annotations

import json
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader.probes import MAX_BYTES, ProbeError, decode, encode
from grader.worker import HEADER

DEFAULT_USER = "autograder-student"
# The address space (RLIMIT_AS): every graded test passes under 1 GiB (import torch alone reserves 0.6 GiB);
# 4 GiB leaves room for another machine's libraries and fails a runaway allocation long before the machine's memory.
MEMORY_LIMIT = 4 * 2**30
FILE_LIMIT = 64 * 2**20  # the largest file the worker may write
PROCESS_LIMIT = 256  # processes and threads beyond what the worker's user has already
OUTPUT_TAIL = 4000  # characters of the worker's output shown with a failure
PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux


class RootRefused(Exception):
    """As root, student code would run as root: the dedicated user cannot run our Python (exit status 2)."""


# ----------------------------------------------------------------------------- who the worker runs as

def can_run_as(user: str) -> bool:
    """Whether ``user`` exists and can run our Python with pytest and torch."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    executable = Path(sys.executable).resolve()
    if not all(p.stat().st_mode & 0o001 for p in [executable, *executable.parents]):
        return False  # e.g. a Python under a 0700 home such as /root
    check = subprocess.run([sys.executable, "-c", "import pytest, torch"], user=entry.pw_uid, group=entry.pw_gid,
                           extra_groups=[], cwd="/", capture_output=True,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return check.returncode == 0


def worker_ids(user: str | None, allow_root: bool) -> tuple[int, int] | None:
    """The (uid, gid) of the worker when we are root; None: as ourselves (as root: without capabilities).

    Raises RootRefused, with the fix, when we are root and ``user`` cannot run our Python, unless ``allow_root``.
    """
    if os.geteuid() != 0:
        return None
    if user and can_run_as(user):
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid
    if allow_root:
        return None
    raise RootRefused(f"error: running as root, and the user {user!r} cannot run {Path(sys.executable).resolve()} "
                      "with pytest and torch, so student code would run as root; create the user (useradd --system "
                      f"--no-create-home {DEFAULT_USER}) and make the Python installation readable by others (not "
                      "under a 0700 home such as /root), or pass --allow-root to run student code as root "
                      "without capabilities")


def can_isolate() -> bool:
    """Whether we can give the worker its own namespaces (root, with util-linux)."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("mount")):
        return False
    return subprocess.run(["unshare", "--mount", "--pid", "--ipc", "--net", "--fork", "true"],
                          capture_output=True).returncode == 0


# ----------------------------------------------------------------------------- descendants

def become_subreaper() -> bool:
    """Adopt our orphaned descendants (Linux), so that ``reap`` finds what left a worker's session."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children() -> set[int]:
    """The processes whose parent we are (zombies included), from ``/proc/*/stat``."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # not a process, or gone
            continue
        if int(fields[1]) == me:
            found.add(int(entry))
    return found


def reap(keep: set[int] | frozenset[int] = frozenset()) -> int:
    """SIGKILL and reap every child of ours but ``keep``, until none is left (a dying process's children
    come to us, a subreaper, in turn); returns how many. Only we reap our children, so a pid we saw
    cannot be reused before we ``waitpid`` it."""
    count = 0
    while orphans := children() - set(keep):
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in orphans:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        count += len(orphans)
    return count


def processes_of(uid: int) -> int:
    """How many processes ``uid`` has now (RLIMIT_NPROC counts them all)."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            count += os.stat(f"/proc/{entry}").st_uid == uid and entry.isdigit()
        except OSError:
            pass
    return count


CGROUP_LIMITS = (("pids", "pids.max", PROCESS_LIMIT),  # (controller, cgroup v1 file, value); v2 names differ
                 ("memory", "memory.limit_in_bytes", MEMORY_LIMIT))
CGROUP_V2_FILES = {"pids.max": "pids.max", "memory.limit_in_bytes": "memory.max"}


def cgroups(name: str) -> list[Path]:
    """As root, new cgroups that hold the worker to PROCESS_LIMIT tasks and MEMORY_LIMIT bytes in all, its
    descendants and its tmpfs files together (RLIMIT_AS counts one process, and root is exempt from
    RLIMIT_NPROC even without capabilities). cgroup v1's pids and memory controllers, or v2; none where
    the machine has neither. A killed grader's empty groups are removed by the next one."""
    if os.geteuid() != 0:
        return []
    groups = []
    v2 = Path("/sys/fs/cgroup")
    for controller, v1_file, value in CGROUP_LIMITS:
        for parent, file in ((v2 / controller, v1_file), (v2, CGROUP_V2_FILES[v1_file])):
            for stale in parent.glob("grader-*"):
                if not Path(f"/proc/{stale.name.split('-')[1]}").exists():
                    try:
                        stale.rmdir()
                    except OSError:
                        pass
            group = parent / name
            try:
                group.mkdir(exist_ok=parent == v2)
            except OSError:
                continue
            try:
                (group / file).write_text(str(value))
            except OSError:
                if not any(g == group for g in groups):
                    group.rmdir()
                continue
            if group not in groups:
                groups.append(group)
            break
    return groups


def rlimits(cpu_seconds: float, uid: int | None) -> dict[int, tuple[int, int]]:
    """The worker's resource limits; ``uid`` is the user whose processes are limited (None: no process limit)."""
    limits = {resource.RLIMIT_CPU: (int(cpu_seconds), int(cpu_seconds) + 5),
              resource.RLIMIT_AS: (MEMORY_LIMIT,) * 2, resource.RLIMIT_FSIZE: (FILE_LIMIT,) * 2}
    if uid is not None:
        limits[resource.RLIMIT_NPROC] = (processes_of(uid) + PROCESS_LIMIT,) * 2
    return limits


# ----------------------------------------------------------------------------- the sandbox

@dataclass
class Sandbox:
    """A worker's folder and how to run it; written to a file by the autograder, read by the plugin."""

    work: str  # the worker's folder: the package, the public tests, the worker's own modules
    package: str  # the import name of the package under test, in ``work``
    log: str  # the worker's output, in a folder it cannot read
    uid: int | None = None  # the dedicated user, or None (see ``worker_ids``)
    gid: int | None = None
    isolate: bool = False  # namespaces (``grader/jail.py``)
    hide: list[str] = field(default_factory=list)  # covered in the jail
    keep: list[str] = field(default_factory=list)  # shown again under a cover: the Python installation, ``work``
    timeout: float = 60.0  # seconds per test, unless its @pytest.mark.timeout says more
    cpu_seconds: float = 3600.0  # CPU time of one worker
    notes: list[str] = field(default_factory=list)  # for the report
    refused: str | None = None  # why the submission cannot be run: every probe fails with this

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._groups: list[Path] = []
        self._fds: tuple[int, int] = (-1, -1)
        become_subreaper()
        self._keep = children()

    @classmethod
    def from_file(cls, path: Path) -> "Sandbox":
        return cls(**json.loads(Path(path).read_text()))

    def to_file(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    # -------------------------------------------------------------- one worker

    def start(self) -> None:
        home = str(Path(self.work) / ".home")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "MPLCONFIGDIR": home,
               "MPLBACKEND": "Agg", "TMPDIR": home, "OMP_NUM_THREADS": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        requests_r, requests_w = os.pipe()
        responses_r, responses_w = os.pipe()
        command = [sys.executable, "-m", "grader.worker", str(requests_r), str(responses_w), self.package]
        if self.isolate:
            jail = {"work": self.work, "hide": self.hide, "keep": self.keep, "uid": self.uid, "gid": self.gid}
            command = ["unshare", "--mount", "--pid", "--ipc", "--net", "--fork", "--kill-child", "--mount-proc",
                       "--propagation", "private", sys.executable, "-m", "grader.jail", json.dumps(jail), "--",
                       *command]
            ids = {}  # the jail drops to the user, after it has shaped the mounts
        else:
            ids = {"user": self.uid, "group": self.gid, "extra_groups": []} if self.uid is not None else {}
        limits = rlimits(self.cpu_seconds, self.uid)
        self._groups = cgroups(f"grader-{os.getpid()}-{requests_w}")
        procs = [str(group / "cgroup.procs") for group in self._groups]

        def confine() -> None:  # in the worker's process, before it runs anything
            for which, value in limits.items():
                resource.setrlimit(which, value)
            for path in procs:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))

        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc = subprocess.Popen(command, cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, pass_fds=(requests_r, responses_w), start_new_session=True,
                                          preexec_fn=confine, **ids)
        finally:
            for fd in (log, requests_r, responses_w):
                os.close(fd)
        self._fds = (requests_w, responses_r)

    def stop(self) -> None:
        """Kill the worker's session and every descendant (``reap``); the next probe starts a new worker."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc = None
            for fd in self._fds:
                os.close(fd)
        reap(self._keep)
        for group in self._groups:
            for _ in range(50):  # empty once the kernel has torn the killed tasks down
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self._groups = []

    def output(self) -> str:
        """The end of the workers' output."""
        with open(self.log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - OUTPUT_TAIL))
            return f.read().decode(errors="replace")

    # -------------------------------------------------------------- one probe

    def call(self, module: str, probe: str, arguments: dict, deadline: float):
        """The data the probe ``module.probe`` returns for ``arguments``; raises ProbeError otherwise
        (``.stopped`` is "timed_out" or "crashed" when the worker had to be stopped)."""
        if self.refused:
            raise ProbeError(self.refused)
        if self._proc is None:
            self.start()
        try:
            self._send(encode({"module": module, "probe": probe, "arguments": arguments}), deadline)
            answer = decode(self._receive(deadline))
        except _Stopped as exc:
            self.stop()
            error = ProbeError(f"{exc}\n{self.output()}".strip())
            error.stopped = exc.kind
            raise error from None
        except ValueError as exc:  # an answer that is not plain data
            self.stop()
            raise ProbeError(f"the worker's answer was not plain data (tensors, numbers, strings, lists, dicts): "
                             f"{exc}") from None
        except BaseException:  # anything else: no worker survives it
            self.stop()
            raise
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise ProbeError(answer["error"])
        if not (isinstance(answer, dict) and "result" in answer):
            self.stop()
            raise ProbeError("the worker's answer was not a probe's result")
        return answer["result"]

    def _wait(self, fd: int, deadline: float, writing: bool) -> None:
        left = deadline - time.monotonic()
        ready = select.select([], [fd], [], max(left, 0))[1] if writing else select.select([fd], [], [], max(left, 0))[0]
        if not ready:
            raise _Stopped("timed_out", "the test ran past its time limit in the student's code; the worker was stopped")

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(HEADER.pack(len(data)) + data)
        while view:
            self._wait(self._fds[0], deadline, writing=True)
            try:
                view = view[os.write(self._fds[0], view[:65536]):]
            except BrokenPipeError:
                raise _Stopped("crashed", "the worker ended before it read the probe's input:") from None

    def _receive(self, deadline: float) -> bytes:
        header = self._read(HEADER.size, deadline)
        (size,) = HEADER.unpack(header)
        if size > MAX_BYTES:
            raise _Stopped("crashed", f"the probe's answer is {size} bytes, more than {MAX_BYTES // 2**20} MiB")
        return self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, left = [], size
        while left:
            self._wait(self._fds[1], deadline, writing=False)
            chunk = os.read(self._fds[1], min(left, 1 << 20))
            if not chunk:
                raise _Stopped("crashed", "the worker ended during this probe (an exit or a crash) without an answer:")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _Stopped(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

