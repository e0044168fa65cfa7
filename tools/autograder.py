"""The Gradescope autograder: the zip it runs, and the isolated grader inside it.

    python -m tools.autograder --out dist/autograder.zip          # build the zip for Gradescope
    python -m tools.autograder --grade SUBMISSION --results results.json [--tests tests/graded ...]

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once per image, then
``run_autograder`` for every submission; it grades ``/autograder/submission`` (the files of the
``assignment/`` package, at the top or in an ``assignment/`` folder, or a zip of either) into
``/autograder/results/results.json``. Both paths can be changed (``AUTOGRADER_ROOT``, or the options
above), which is how the project's tests run it in a temporary folder.

How a submission is graded
--------------------------
1. The parent (this module, which never imports student code) copies the pristine stubs and
   overlays the student's ``.py`` files onto them (nothing outside the package, no ``conftest.py``).
   A submission with a symlink anywhere, or a zip that is too large (20 MiB unpacked, 2000
   files, nested zips included) or holds a symlink, a path outside it or anything but ``.py``
   files, is refused: it scores 0 and results.json's output says why.
2. A child collects the graded tests (``tests/graded`` and ``tests/hidden``) against the pristine
   stubs, so the list of tests and their points comes from code no student touched.
3. For every test file (or every test, with ``--per test``), a child process runs its graded tests
   against the submission, in a fresh copy of the public tests and of the hidden tests it runs
   (no other), in its own session (process group), with a minimal environment, and, when the
   grader runs as root (as on Gradescope), as the unprivileged user ``nobody``, which can neither
   write the results folder nor touch the parent. If ``nobody`` cannot run our Python, the grader
   stops before grading (exit status 2) unless ``--allow-root``. pytest-timeout stops a slow test;
   the parent kills the child's session when a test runs 10 s past its limit (one that ignores
   SIGALRM, or loops in C code). The parent is a child subreaper (Linux), so a process that left the
   child's session (``setsid``, a double fork) comes back to it: after every child it kills and
   reaps all of its children until none is left. Each child has resource limits, inherited by what
   it starts: CPU time (its time budget plus 60 s), 4 GiB of address space, files of 64 MiB and, when
   it runs as ``nobody``, 256 processes; the parent keeps only the last 8 KB of its output.
4. The child reports through ``tools/autograder_plugin.py``: the parent sends a fresh random key
   and nonce on the child's stdin, which the plugin reads before any student code is imported;
   each test's outcome comes back as one record HMAC-signed with that key on a file descriptor the
   parent opened. The parent keeps only records with a valid signature, the right nonce and an
   expected test id, exactly one per test; any test without one scores 0 (a crash, ``os._exit``,
   an endless loop or a forged record). If a child dies, the test it was running scores 0 and
   the file's remaining tests run in a new child. The child's exit status is ignored.
5. The parent alone writes results.json (atomically), after the last child has been killed; its
   ``extra_data`` names the tests that timed out or crashed, and a visible test's output loses
   every line that quotes a hidden test's source.

Threat model, honestly
----------------------
What this stops: a submission that writes results.json itself (the parent writes it last; as
``nobody`` it cannot write there at all), that exits early with status 0 or crashes the
interpreter (no signed record, no points), that patches pytest's reporting (``TestReport``, the
runner, ``pytest_runtest_makereport``, a test function's code, ``torch.allclose`` /
``assert_close``: the plugin reads outcomes from pytest's CallInfo and checks that these objects
are still the ones it saw before the first student import; any change fails the test), that
ships a ``conftest.py`` (not copied), or that edits the test files (each child gets a fresh
copy). What it cannot stop: student code runs in the same interpreter as the test it is graded
by, so a determined attacker can read the keyed HMAC object from memory and sign its own records,
or patch something we do not watch (a numeric routine a test trusts). Running one child per
test file, with a key per child, and refusing duplicate records raises the bar; it is not a
sandbox. A child as ``nobody`` can read the grader's own files (setup.sh makes them readable),
hidden tests included: only their verbatim lines are kept out of a visible test's output, so
encoded text or another channel would still leak them. Gradescope keeps each submission's code
for review, and the hidden tests check the same questions from another angle.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import pwd
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository, or /autograder/source in the zip
PACKAGE = "assignment"
HIDDEN = "tests/hidden"  # graded tests that students never see
TESTS = ("tests/graded", HIDDEN)
# What the grader needs besides the package: copied into every child's working folder.
GRADER_FILES = ("pytest.ini", "tests/__init__.py", "tests/conftest.py", "tests/grading.py",
                "tools/__init__.py", "tools/autograder_plugin.py")
TEMPLATES = Path(__file__).resolve().parent / "templates"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
# What a zip submission may hold, nested zips included: about 100 times the package's own size.
MAX_BYTES, MAX_MEMBERS = 20 * 2**20, 2000
JUNK = ("__MACOSX", "__pycache__", ".DS_Store")  # what zip tools add: skipped, not refused
GRACE = 10  # seconds past a test's own time limit before the parent kills its child
STARTUP = 120  # seconds a child may take to start (import torch, collect) before its first test
# Each child's resource limits (see ``limit``). The address space (RLIMIT_AS): every graded and hidden test
# passes under 1 GiB (measured; import torch alone reserves 0.6 GiB); 4 GiB leaves room for another machine's
# libraries, and fails a runaway allocation (MemoryError) long before it could take the machine's memory.
MEMORY_LIMIT = 4 * 2**30
FILE_LIMIT = 64 * 2**20  # the largest file a child may write: a student cannot fill the disk
# Processes and threads of the child's user, all of its children together (a batch with --jobs runs
# several); applied only when the children run as a dedicated user, as the count is per user.
PROCESS_LIMIT = 256
CPU_MARGIN = 60  # CPU seconds a child may use beyond its wall-clock budget
PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux


# ----------------------------------------------------------------------------- the submission

def _safe_extract(archive: Path, dest: Path, budget: dict[str, int]) -> None:
    """Unzip a submission after checking every member, since a 130 KB zip can unpack to gigabytes.

    Refused: a path outside ``dest`` (absolute or ``..``), a symlink, a file that is neither ``.py``
    nor a zip, and more members, bytes or nested zips than ``budget`` has left (it is shared with
    the zips inside, and drawn down here). What zip tools add (``__MACOSX/``, ``.DS_Store``,
    ``__pycache__``) is skipped. Raises ValueError with the reason.
    """
    budget["zips"] -= 1
    if budget["zips"] < 0:
        raise ValueError(f"{archive.name}: zips nested too deep")
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            name = info.filename
            if not (dest / name).resolve().is_relative_to(dest.resolve()):
                raise ValueError(f"{archive.name}: refusing the path {name!r} outside the archive")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValueError(f"{archive.name}: refusing the symlink {name!r}")
            budget["members"] -= 1
            budget["bytes"] -= info.file_size
            if budget["members"] < 0 or budget["bytes"] < 0:
                raise ValueError(f"{archive.name}: too large (at most {MAX_MEMBERS} files and "
                                 f"{MAX_BYTES // 2**20} MiB unpacked, zips inside included)")
            if any(part in JUNK for part in Path(name).parts):
                continue
            if not (info.is_dir() or name.lower().endswith((".py", ".zip"))):
                raise ValueError(f"{archive.name}: refusing {name!r}: a submission holds .py files only")
            members.append(info)
        for info in members:
            zf.extract(info, dest)


def _refuse_links(folder: Path) -> None:
    """Refuse a symlink anywhere in ``folder``: following one would grade other code (a classmate's,
    the solutions) as the student's. ``os.walk`` lists a linked folder without entering it."""
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            if (Path(parent) / name).is_symlink():
                raise ValueError(f"refusing the symlink {(Path(parent) / name).relative_to(folder)}: "
                                 "a submission holds plain files only")


def find_package(submission: Path, scratch: Path, budget: dict[str, int] | None = None) -> Path:
    """The folder that holds the student's package files inside a submission.

    Accepted: an ``assignment/`` folder, the package's files at the top (``part1/`` ...), or a zip of
    either (also one level down, as Gradescope keeps an uploaded zip as a file). Refused (ValueError):
    a symlink anywhere, and a zip that ``_safe_extract`` refuses.
    """
    submission = Path(submission)
    if budget is None:
        budget = {"bytes": MAX_BYTES, "members": MAX_MEMBERS, "zips": 3}
    if submission.is_symlink():
        raise ValueError(f"refusing the symlink {submission.name}: a submission is a plain folder or zip")
    if submission.is_file() and zipfile.is_zipfile(submission):
        unpacked = scratch / "unzipped"
        unpacked.mkdir(parents=True, exist_ok=True)
        _safe_extract(submission, unpacked, budget)
        return find_package(unpacked, scratch / "inner", budget)
    if not submission.is_dir():
        raise ValueError(f"submission {submission} is neither a folder nor a zip")
    _refuse_links(submission)
    for candidate in [submission / PACKAGE, *sorted(submission.glob(f"*/{PACKAGE}"))]:
        if candidate.is_dir():
            return candidate
    if any(submission.glob("part*/*.py")) or (submission / "__init__.py").is_file():
        return submission
    zips = [p for p in sorted(submission.iterdir()) if p.is_file() and zipfile.is_zipfile(p)]
    if len(zips) == 1:
        return find_package(zips[0], scratch, budget)
    entries = [p.name for p in sorted(submission.iterdir())]
    raise ValueError(f"no {PACKAGE}/ package in the submission (found: {entries[:20]})")


def overlay(package: Path, target: Path) -> list[str]:
    """Copy the student's ``.py`` files onto the pristine stubs in ``target``; returns notes."""
    notes = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if "__pycache__" in relative.parts or path.is_symlink():
            continue
        if path.name == "conftest.py":
            notes.append(f"ignored {relative}: a submission cannot bring pytest configuration")
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / relative)
    return notes


# ----------------------------------------------------------------------------- the children

_RUNNING: set[int] = set()  # the children's sessions, killed if we are told to stop


def _kill(pid: int) -> None:
    """Kill a child's whole session (``reap`` then finds what left it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def become_subreaper() -> bool:
    """Adopt our orphaned descendants (Linux): a process that leaves the child's session (``setsid``) or
    double-forks is re-parented to us, not to init, so ``reap`` finds it. Returns whether it worked."""
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


def limit(pid: int, seconds: float, dedicated_user: bool) -> None:
    """Set a child's resource limits: CPU time (``seconds``), address space, file size and, only when it runs
    as a dedicated user (the count is per user), processes. Set before the handshake, so before any student
    code runs; its descendants inherit them. Python ignores SIGXFSZ: a write past the limit raises OSError."""
    limits = {resource.RLIMIT_CPU: (int(seconds), int(seconds) + 5), resource.RLIMIT_AS: (MEMORY_LIMIT,) * 2,
              resource.RLIMIT_FSIZE: (FILE_LIMIT,) * 2}
    if dedicated_user:
        limits[resource.RLIMIT_NPROC] = (PROCESS_LIMIT,) * 2
    try:
        for which, value in limits.items():
            resource.prlimit(pid, which, value)
    except ProcessLookupError:  # it died already: nothing to limit
        pass


def _stop(signum, frame) -> None:
    """SIGTERM (a batch's time limit): end the children's sessions and every descendant too, then exit."""
    for pid in list(_RUNNING):
        _kill(pid)
    reap()
    raise SystemExit(128 + signum)


def _can_exec() -> bool:
    """Whether others may execute our Python (every folder above it searchable, the file executable)."""
    path = Path(sys.executable).resolve()
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def can_drop_privileges(user: str) -> bool:
    """Whether the children can run as ``user``: it exists and can run our Python with pytest and torch."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    if not _can_exec():
        return False
    probe = subprocess.run([sys.executable, "-c", "import pytest, torch"], user=entry.pw_uid, group=entry.pw_gid,
                           extra_groups=[], cwd="/", capture_output=True,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return probe.returncode == 0


class RootRefused(Exception):
    """Student code would run as root because the drop to an unprivileged user failed (exit status 2)."""


def child_ids(user: str | None, allow_root: bool) -> tuple[int, int] | None:
    """The (uid, gid) the children run as when we are root; None: as ourselves.

    As root, a failed drop to ``user`` is an error (RootRefused, with the fix) unless ``allow_root``:
    a warning on stderr was easy to miss, and student code would have run as root. ``user`` empty
    (``--user ''``) asks for no drop.
    """
    if os.geteuid() != 0 or not user:
        return None
    if can_drop_privileges(user):
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid
    if allow_root:
        return None
    python = sys.executable + ("" if Path(sys.executable).resolve() == Path(sys.executable) else
                               f" (that is {Path(sys.executable).resolve()})")
    raise RootRefused(f"error: running as root, and the user {user!r} cannot run {python} with pytest "
                      "and torch, so student code would run as root; make the Python installation readable and "
                      "executable by others (chmod -R a+rX the venv, and not under a 0700 home such as /root), "
                      "or pass --allow-root to grade as root anyway")


def _drain(stream, tail: bytearray) -> None:
    """Read a child's output to its end, keeping the last 8 KB (a child may print without end)."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        tail += chunk
        del tail[:-8192]


class Sandbox:
    """A scratch folder, and the user the children run as (``ids``, from ``child_ids``; None: as ourselves)."""

    def __init__(self, base: Path, ids: tuple[int, int] | None) -> None:
        self.base = base
        self.uid, self.gid = ids or (None, None)
        os.chmod(base, 0o755)
        become_subreaper()
        self.keep = children()  # what we had before grading (a caller's own), never reaped

    def workdir(self, name: str, package: Path, tests: list[str]) -> Path:
        """A fresh copy of the grader's files, of the public tests (a hidden test may import their
        helpers), of the ``tests`` the child runs (files or folders) and of the package, readable (not
        writable) by the child: a child never sees a hidden test that it does not run."""
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))
        copies = [*GRADER_FILES, *(folder for folder in TESTS if folder != HIDDEN)]
        for test in tests:  # with the __init__.py and conftest.py of the folders above it
            copies += [str(folder / shared) for folder in Path(test).parents
                       for shared in ("__init__.py", "conftest.py")]
            copies.append(test)
        for relative in [c for c in dict.fromkeys(copies) if (ROOT / c).exists()]:
            if (ROOT / relative).is_dir():
                shutil.copytree(ROOT / relative, work / relative, ignore=IGNORE, dirs_exist_ok=True)
            else:
                (work / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / relative, work / relative)
        shutil.copytree(package, work / PACKAGE, ignore=IGNORE)
        home = work / ".home"
        home.mkdir()
        for path in [work, *work.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if self.uid is not None:
            os.chown(home, self.uid, self.gid)
        return work

    def run(self, work: Path, args: list[str], handshake: dict, limits: dict[str, float],
            startup: float = STARTUP) -> tuple[list[dict], str, bool]:
        """Run pytest in ``work`` with the plugin; returns the lines it wrote on our descriptor, its output,
        and whether we killed it for running past a time limit.

        The limits are ours, not the child's: ``startup`` seconds until its first test starts, then
        ``limits[test] + GRACE`` from the line that says the test started. So a test that ignores
        pytest-timeout (SIGALRM ignored, a loop in C code) costs its own limit, not the file's. Each
        test starts once: forged 'start' lines cannot stretch a child past the sum of its limits.
        """
        records = self.base / f"{work.name}.records"
        fd = os.open(records, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / ".home"),
               "MPLCONFIGDIR": str(work / ".home"), "MPLBACKEND": "Agg", "TMPDIR": str(work / ".home"),
               "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        command = [sys.executable, "-m", "pytest", "-p", "tools.autograder_plugin", "-p", "no:cacheprovider",
                   f"--impl={work / PACKAGE}", "-q", "--no-header", "-rN", *args]
        extra = {"user": self.uid, "group": self.gid, "extra_groups": []} if self.uid is not None else {}
        proc = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True, **extra)
        _RUNNING.add(proc.pid)
        os.close(fd)
        limit(proc.pid, startup + sum(limits.values()) + GRACE * len(limits) + CPU_MARGIN, self.uid is not None)
        tail = bytearray()
        reader = threading.Thread(target=_drain, args=(proc.stdout, tail), daemon=True)
        reader.start()
        lines: list[dict] = []
        started: set[str] = set()
        deadline, overdue, pending = time.monotonic() + startup, False, b""
        try:
            try:
                proc.stdin.write((json.dumps({**handshake, "fd": fd}) + "\n").encode())
                proc.stdin.close()
            except OSError:  # it died before reading
                pass
            with records.open("rb") as log:
                while not overdue:
                    try:
                        proc.wait(timeout=0.2)
                        exited = True
                    except subprocess.TimeoutExpired:
                        exited = False
                    *complete, pending = (pending + log.read()).split(b"\n")
                    for raw in complete:
                        try:
                            line = json.loads(raw)
                        except (ValueError, RecursionError):  # not ours: ours are flat JSON lines
                            continue
                        if not isinstance(line, dict):
                            continue
                        lines.append(line)
                        test = line.get("start")
                        if isinstance(test, str) and test in limits and test not in started:
                            started.add(test)
                            deadline = time.monotonic() + limits[test] + GRACE
                    if exited:
                        break
                    overdue = time.monotonic() > deadline
        finally:
            _kill(proc.pid)
            proc.wait()
            _RUNNING.discard(proc.pid)
            reap(self.keep | _RUNNING)  # what left its session, or was orphaned, and may hold its output open
            reader.join(timeout=5)
            records.unlink()
        return lines, bytes(tail).decode(errors="replace")[-4000:], overdue


_COLLECTED: dict[tuple, dict[str, dict]] = {}  # per process: batch grading collects once


def collect(sandbox: Sandbox, pristine: Path, tests: list[str], keyword: str | None = None,
            timeout: float = 600) -> dict[str, dict]:
    """The graded tests and their points, collected against the pristine stubs (no student code)."""
    key = (*tests, keyword)
    if key in _COLLECTED:
        return _COLLECTED[key]
    work = sandbox.workdir("collect", pristine, tests)
    lines, output, _ = sandbox.run(work, ["--collect-only", *tests, *(["-k", keyword] if keyword else [])],
                                   {"key": secrets.token_hex(32), "nonce": "", "mode": "collect"}, {}, timeout)
    shutil.rmtree(work, ignore_errors=True)
    for line in lines:
        if "collected" in line:
            _COLLECTED[key] = {entry["id"]: entry for entry in line["collected"]}
            return _COLLECTED[key]
    raise RuntimeError(f"collecting the graded tests failed:\n{output}")


def run_file(sandbox: Sandbox, package: Path, nodeids: list[str], timeout: float, limits: dict[str, float],
             label: str, extra: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """Outcomes (status, output) of the tests ``nodeids`` of one file; a new child after each crash.

    ``limits`` gives the tests' own ``@pytest.mark.timeout`` seconds, where they have one. The status
    is ``passed``, ``failed``, ``timeout`` (stopped by pytest-timeout, or killed by us for ignoring
    it) or ``crashed`` (the child ended during the test without a valid outcome).
    """
    outcomes: dict[str, tuple[str, str]] = {}
    pending = list(nodeids)
    files = list(dict.fromkeys(n.split("::")[0] for n in nodeids))
    attempt = 0
    while pending:
        attempt += 1
        key, nonce = secrets.token_bytes(32), secrets.token_hex(16)
        work = sandbox.workdir(f"{label}-{attempt}", package, files)
        # pytest-timeout stops a test first (its own @pytest.mark.timeout or ours); we stop a test that ignores it.
        seconds = {n: max(timeout, limits.get(n) or 0) for n in pending}
        lines, output, overdue = sandbox.run(work, ["-o", f"timeout={timeout:g}", *extra, *pending],
                                             {"key": key.hex(), "nonce": nonce, "mode": "run", "expect": pending},
                                             seconds)
        shutil.rmtree(work, ignore_errors=True)
        signed: dict[str, list[tuple[str, str]]] = {}
        started = []
        for line in lines:
            if line.get("start") in pending:
                started.append(line["start"])
            record, mac = line.get("record"), line.get("mac")
            if not (isinstance(record, list) and len(record) == 4 and isinstance(mac, str)):
                continue
            expected = hmac.new(key, json.dumps(record).encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, mac) and record[0] == nonce and record[1] in pending:
                signed.setdefault(record[1], []).append((str(record[2]), str(record[3])))
        for nodeid, found in signed.items():
            if len(found) != 1:
                outcomes[nodeid] = ("failed", "more than one signed outcome for this test: a forgery attempt")
            elif found[0][0] == "failed" and "from pytest-timeout" in found[0][1]:
                outcomes[nodeid] = ("timeout", found[0][1])
            else:
                outcomes[nodeid] = found[0]
        unfinished = [n for n in pending if n not in outcomes]
        if not unfinished:
            break
        # The child died (or was killed) during a test: that test scores 0, the others get a new child.
        crashed = next((n for n in reversed(started) if n in unfinished), unfinished[0])
        if overdue:
            outcomes[crashed] = ("timeout", f"the test process was stopped during this test: it ran past the time "
                                            f"limit ({seconds[crashed]:g} s) and ignored pytest-timeout:\n{output}")
        else:
            outcomes[crashed] = ("crashed", "the test process ended during this test (an exit or a crash) "
                                            f"without a valid outcome:\n{output}")
        pending = [n for n in unfinished if n != crashed]
    return outcomes


# ----------------------------------------------------------------------------- grading

def graded_tests(sandbox: Sandbox, tests: list[str], keyword: str | None, cache: Path | None) -> dict[str, dict]:
    """The graded tests to run, with their points; ``cache`` keeps them between grader processes (a batch)."""
    key = [tests, keyword]
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["tests"]
    pristine = ROOT / PACKAGE
    manifest = collect(sandbox, pristine, tests)
    if keyword:
        selected = set(collect(sandbox, pristine, tests, keyword))
        manifest = {k: v for k, v in manifest.items() if k in selected}
    if cache is not None:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "tests": manifest}, indent=1))
        os.replace(tmp, cache)
    return manifest


def hidden_lines() -> set[str]:
    """The telling lines of the hidden tests' source: 20 characters or more, in no public file."""
    def lines(paths) -> set[str]:
        return {line.strip() for path in paths for line in Path(path).read_text(errors="replace").splitlines()
                if len(line.strip()) >= 20}
    public = [*GRADER_FILES, *(path for folder in (*TESTS, PACKAGE) if folder != HIDDEN
                               for path in (ROOT / folder).rglob("*.py"))]
    return lines((ROOT / HIDDEN).rglob("*.py")) - lines(ROOT / path for path in public)


def withhold(output: str, secret: set[str]) -> str:
    """``output`` less the lines that quote ``secret`` lines: a visible test's child may read the grader's
    own copy of the hidden tests (Gradescope's setup makes it readable) and print it in a failure."""
    return "\n".join("[withheld: a line of a hidden test]" if any(s in line for s in secret) else line
                     for line in output.splitlines())


def grade(submission: Path, results: Path, *, tests: list[str] | tuple[str, ...] = TESTS, timeout: float = 60,
          keyword: str | None = None, user: str | None = "nobody", allow_root: bool = False,
          manifest_cache: Path | None = None, per: str = "file") -> dict:
    """Grade one submission into Gradescope's ``results.json``; returns the report written.

    ``per="file"`` runs each test file in one child (a crash restarts it after the crashed test);
    ``per="test"`` runs every test in its own child: stricter, and slower by one interpreter start
    (and one ``import torch``) per test. As root, raises RootRefused before grading when the children
    cannot run as ``user``, unless ``allow_root``. The tests that ended without an outcome are listed
    in the report's ``extra_data`` (``timed_out``, ``crashed``).
    """
    if per not in ("file", "test"):
        raise ValueError(f"per must be 'file' or 'test', not {per!r}")
    sys.path.insert(0, str(ROOT))
    from tests.grading import Grader, Result
    grader = Grader()
    messages: list[str] = []
    ids = child_ids(user, allow_root)
    if ids is None and os.geteuid() == 0:
        messages.append("note: student code ran as root (" + ("--allow-root" if user else "--user ''") + ")")
    stopped: dict[str, list[str]] = {"timeout": [], "crashed": []}
    tests = [t for t in tests if (ROOT / t).exists()]
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        sandbox = Sandbox(Path(tmp), ids)
        pristine = ROOT / PACKAGE
        manifest = graded_tests(sandbox, tests, keyword, manifest_cache)
        for nodeid, entry in manifest.items():
            grader.results[nodeid] = Result(name=entry["name"], number=entry["number"], max_score=entry["max_score"],
                                            visibility=entry["visibility"], status="failed", output="not run")
        package = Path(tmp) / "package"
        shutil.copytree(pristine, package, ignore=IGNORE)
        by_file: dict[str, list[str]] = {}
        try:
            found = find_package(Path(submission), Path(tmp) / "submission")
            messages += overlay(found, package)
            for nodeid in manifest:
                by_file.setdefault(nodeid.split("::")[0] if per == "file" else nodeid, []).append(nodeid)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:  # nothing of the student's to run
            messages.append(f"could not read the submission: {exc}; no test was run")
            for result in grader.results.values():
                result.output = "not run: the submission could not be read"
        secret = hidden_lines()
        for index, (path, nodeids) in enumerate(by_file.items()):
            limits = {n: manifest[n].get("timeout") for n in nodeids}
            for nodeid, (status, output) in run_file(sandbox, package, nodeids, timeout, limits, f"run{index}").items():
                result = grader.results[nodeid]
                result.status = "passed" if status == "passed" else "failed"
                result.output = output if nodeid.startswith(f"{HIDDEN}/") else withhold(output, secret)
                result.phases = ["setup", "call", "teardown"]
                stopped.get(status, []).append(nodeid)
    grader.finish()
    report = grader.gradescope()
    report["extra_data"] = {"timed_out": stopped["timeout"], "crashed": stopped["crashed"]}
    if messages:
        report["output"] = "\n".join(messages) + "\n\n" + report["output"]
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = results.with_name(results.name + ".tmp")
    tmp_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_path, results)
    return report


# ----------------------------------------------------------------------------- the zip

def build_zip(out: Path) -> list[str]:
    """Write Gradescope's autograder zip; returns its file names."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {
        "setup.sh": TEMPLATES / "setup.sh",
        "run_autograder": TEMPLATES / "run_autograder",
        "requirements.txt": ROOT / "requirements.txt",
        "tools/autograder.py": Path(__file__).resolve(),
    }
    for relative in GRADER_FILES:
        files[relative] = ROOT / relative
    for folder in (*TESTS, PACKAGE):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[str(path.relative_to(ROOT))] = path
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # reproducible bytes
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    os.replace(tmp, out)
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="build the autograder zip here")
    parser.add_argument("--grade", type=Path, metavar="SUBMISSION", help="grade this folder or zip")
    autograder = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    parser.add_argument("--results", type=Path, default=autograder / "results" / "results.json")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="test folders or files (default: %(default)s)")
    parser.add_argument("-k", dest="keyword", help="only the graded tests matching this pytest -k expression")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per test (default: %(default)s)")
    parser.add_argument("--user", default="nobody", help="run student code as this user when root ('' = as us)")
    parser.add_argument("--allow-root", action="store_true",
                        help="as root, grade even when --user cannot run our Python (student code runs as root)")
    parser.add_argument("--manifest", type=Path, help="keep the collected graded tests in this file (a batch)")
    parser.add_argument("--per", choices=("file", "test"), default="file",
                        help="one child process per test file (default) or per test")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    if args.out is None and args.grade is None:
        parser.error("give --out (build the zip) or --grade SUBMISSION")
    if args.out is not None:
        names = build_zip(args.out)
        print(f"wrote {args.out}: {len(names)} files")
    if args.grade is not None:
        start = time.monotonic()
        try:
            report = grade(args.grade, args.results, tests=args.tests, timeout=args.timeout, keyword=args.keyword,
                           user=args.user or None, allow_root=args.allow_root, manifest_cache=args.manifest,
                           per=args.per)
        except RootRefused as exc:
            print(exc, file=sys.stderr)
            return 2
        print(report["output"])
        print(f"wrote {args.results} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
