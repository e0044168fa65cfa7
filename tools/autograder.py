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
2. A child collects the graded tests (``tests/graded`` and ``tests/hidden``) against the pristine
   stubs, so the list of tests and their points comes from code no student touched.
3. For every test file (or every test, with ``--per test``), a child process runs its graded tests against the submission,
   in a fresh copy of the tests, in its own session (process group), time-limited, with a
   minimal environment, and, when the grader runs as root (as on Gradescope), as the unprivileged
   user ``nobody``, which can neither write the results folder nor touch the parent.
4. The child reports through ``tools/autograder_plugin.py``: the parent sends a fresh random key
   and nonce on the child's stdin, which the plugin reads before any student code is imported;
   each test's outcome comes back as one record HMAC-signed with that key on a file descriptor the
   parent opened. The parent keeps only records with a valid signature, the right nonce and an
   expected test id, exactly one per test; any test without one scores 0 (a crash, ``os._exit``,
   an endless loop or a forged record). If a child dies, the test it was running scores 0 and
   the file's remaining tests run in a new child. The child's exit status is ignored.
5. The parent alone writes results.json (atomically), after the last child has been killed.

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
sandbox. Gradescope keeps each submission's code for review, and the hidden tests check the same
questions from another angle.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository, or /autograder/source in the zip
PACKAGE = "assignment"
TESTS = ("tests/graded", "tests/hidden")
# What the grader needs besides the package: copied into every child's working folder.
GRADER_FILES = ("pytest.ini", "tests/__init__.py", "tests/conftest.py", "tests/grading.py",
                "tools/__init__.py", "tools/autograder_plugin.py")
TEMPLATES = Path(__file__).resolve().parent / "templates"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


# ----------------------------------------------------------------------------- the submission

def _safe_extract(archive: Path, dest: Path) -> None:
    """Unzip, refusing absolute paths and ``..`` (a zip must not write outside ``dest``)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ValueError(f"{archive.name}: refusing the path {info.filename!r} outside the archive")
        zf.extractall(dest)


def find_package(submission: Path, scratch: Path) -> Path:
    """The folder that holds the student's package files inside a submission.

    Accepted: an ``assignment/`` folder, the package's files at the top (``part1/`` ...), or a zip of
    either (also one level down, as Gradescope keeps an uploaded zip as a file).
    """
    submission = Path(submission)
    if submission.is_file() and zipfile.is_zipfile(submission):
        unpacked = scratch / "unzipped"
        unpacked.mkdir(parents=True, exist_ok=True)
        _safe_extract(submission, unpacked)
        return find_package(unpacked, scratch / "inner")
    if not submission.is_dir():
        raise ValueError(f"submission {submission} is neither a folder nor a zip")
    for candidate in [submission / PACKAGE, *sorted(submission.glob(f"*/{PACKAGE}"))]:
        if candidate.is_dir():
            return candidate
    if any(submission.glob("part*/*.py")) or (submission / "__init__.py").is_file():
        return submission
    zips = [p for p in sorted(submission.iterdir()) if p.is_file() and zipfile.is_zipfile(p)]
    if len(zips) == 1:
        return find_package(zips[0], scratch)
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


def _stop(signum, frame) -> None:
    """SIGTERM (a batch's time limit): end the children's sessions too, then exit."""
    for pid in list(_RUNNING):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(128 + signum)


def _can_exec() -> bool:
    """Whether others may execute our Python (every folder above it searchable, the file executable)."""
    path = Path(sys.executable).resolve()
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


class Sandbox:
    """A scratch folder, and the user the children run as (``nobody`` when we are root)."""

    def __init__(self, base: Path, user: str | None) -> None:
        self.base = base
        self.uid = self.gid = None
        os.chmod(base, 0o755)
        if user and os.geteuid() == 0:
            import pwd
            entry = pwd.getpwnam(user)
            probe = subprocess.run([sys.executable, "-c", "import pytest, torch"], user=entry.pw_uid,
                                   group=entry.pw_gid, extra_groups=[], cwd=base, capture_output=True,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}) if _can_exec() else None
            if probe is not None and probe.returncode == 0:
                self.uid, self.gid = entry.pw_uid, entry.pw_gid
            else:  # e.g. a Python under /root: say so, and run the children as ourselves
                print(f"warning: {user} cannot run {sys.executable}; student code runs as root "
                      "(still in child processes, with signed outcomes)", file=sys.stderr)

    def workdir(self, name: str, package: Path) -> Path:
        """A fresh copy of the grader's files and of the package, readable (not writable) by the child."""
        work = self.base / name
        for relative in GRADER_FILES:
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / relative, work / relative)
        for folder in TESTS:
            if (ROOT / folder).is_dir():
                shutil.copytree(ROOT / folder, work / folder, ignore=IGNORE)
        shutil.copytree(package, work / PACKAGE, ignore=IGNORE)
        home = work / ".home"
        home.mkdir()
        for path in [work, *work.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if self.uid is not None:
            os.chown(home, self.uid, self.gid)
        return work

    def run(self, work: Path, args: list[str], handshake: dict, timeout: float) -> tuple[list[dict], str]:
        """Run pytest in ``work`` with the plugin; returns the lines it wrote on our descriptor and its output."""
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
        try:
            output, _ = proc.communicate((json.dumps({**handshake, "fd": fd}) + "\n").encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            output = b"(timed out)"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's whole session, whatever it left behind
            except ProcessLookupError:
                pass
            proc.wait()
            _RUNNING.discard(proc.pid)
        lines = []
        for line in records.read_bytes().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        records.unlink()
        return lines, output.decode(errors="replace")[-4000:]


_COLLECTED: dict[tuple, dict[str, dict]] = {}  # per process: batch grading collects once


def collect(sandbox: Sandbox, pristine: Path, tests: list[str], timeout: float = 600) -> dict[str, dict]:
    """The graded tests and their points, collected against the pristine stubs (no student code)."""
    if tuple(tests) in _COLLECTED:
        return _COLLECTED[tuple(tests)]
    work = sandbox.workdir("collect", pristine)
    lines, output = sandbox.run(work, ["--collect-only", *tests],
                                {"key": secrets.token_hex(32), "nonce": "", "mode": "collect"}, timeout)
    for line in lines:
        if "collected" in line:
            _COLLECTED[tuple(tests)] = {entry["id"]: entry for entry in line["collected"]}
            return _COLLECTED[tuple(tests)]
    raise RuntimeError(f"collecting the graded tests failed:\n{output}")


def run_file(sandbox: Sandbox, package: Path, nodeids: list[str], timeout: float, limits: dict[str, float],
             label: str, extra: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """Outcomes (status, output) of the tests ``nodeids`` of one file; a new child after each crash.

    ``limits`` gives the tests' own ``@pytest.mark.timeout`` seconds, where they have one.
    """
    outcomes: dict[str, tuple[str, str]] = {}
    pending = list(nodeids)
    attempt = 0
    while pending:
        attempt += 1
        key, nonce = secrets.token_bytes(32), secrets.token_hex(16)
        work = sandbox.workdir(f"{label}-{attempt}", package)
        # pytest-timeout stops a test first (its own @pytest.mark.timeout or ours); this stops the child.
        limit = 120 + sum(max(timeout, limits.get(n) or 0) for n in pending)
        lines, output = sandbox.run(work, ["-o", f"timeout={timeout:g}", *extra, *pending],
                                    {"key": key.hex(), "nonce": nonce, "mode": "run", "expect": pending}, limit)
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
            if len(found) == 1:
                outcomes[nodeid] = found[0]
            else:
                outcomes[nodeid] = ("failed", "more than one signed outcome for this test: a forgery attempt")
        unfinished = [n for n in pending if n not in outcomes]
        if not unfinished:
            break
        # The child died (or was killed) during a test: that test scores 0, the others get a new child.
        crashed = next((n for n in reversed(started) if n in unfinished), unfinished[0])
        outcomes[crashed] = ("failed", "the test process ended during this test (an exit, a crash or the "
                                       f"time limit) without a valid outcome:\n{output}")
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
        selected = set(collect(sandbox, pristine, [*tests, "-k", keyword]))
        manifest = {k: v for k, v in manifest.items() if k in selected}
    if cache is not None:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "tests": manifest}, indent=1))
        os.replace(tmp, cache)
    return manifest


def grade(submission: Path, results: Path, *, tests: list[str] | tuple[str, ...] = TESTS, timeout: float = 60,
          keyword: str | None = None, user: str | None = "nobody", manifest_cache: Path | None = None,
          per: str = "file") -> dict:
    """Grade one submission into Gradescope's ``results.json``; returns the report written.

    ``per="file"`` runs each test file in one child (a crash restarts it after the crashed test);
    ``per="test"`` runs every test in its own child: stricter, and slower by one interpreter start
    (and one ``import torch``) per test.
    """
    if per not in ("file", "test"):
        raise ValueError(f"per must be 'file' or 'test', not {per!r}")
    sys.path.insert(0, str(ROOT))
    from tests.grading import Grader, Result
    grader = Grader()
    messages: list[str] = []
    tests = [t for t in tests if (ROOT / t).exists()]
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        sandbox = Sandbox(Path(tmp), user)
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
        for index, (path, nodeids) in enumerate(by_file.items()):
            limits = {n: manifest[n].get("timeout") for n in nodeids}
            for nodeid, (status, output) in run_file(sandbox, package, nodeids, timeout, limits, f"run{index}").items():
                result = grader.results[nodeid]
                result.status = "passed" if status == "passed" else "failed"
                result.output = output
                result.phases = ["setup", "call", "teardown"]
    grader.finish()
    report = grader.gradescope()
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
        report = grade(args.grade, args.results, tests=args.tests, timeout=args.timeout, keyword=args.keyword,
                       user=args.user or None, manifest_cache=args.manifest, per=args.per)
        print(report["output"])
        print(f"wrote {args.results} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
