"""Grade one submission into Gradescope's results.json: what ``run_autograder`` calls.

    python -m grader.autograder --grade SUBMISSION --results results.json [--tests ...] [-k EXPR]

1. The student's ``.py`` files are laid over the pristine stubs (``grader/submission.py``).
2. The worker's folder gets that package, the public tests (where the probes live) and the worker's
   own modules; never the hidden tests, never the reference package.
3. The graded tests (``tests/graded`` and ``tests/hidden``) run here, in this process, which never
   imports student code: each test's probes run in the sandbox (``grader/sandbox.py``), each check
   here. The points and results.json are written here, by the plugin, after the last worker is killed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from grader.sandbox import DEFAULT_USER, RootRefused, Sandbox, can_isolate, reap, worker_ids
from grader.submission import PACKAGE, find_package, overlay

ROOT = Path(__file__).resolve().parent.parent  # the repository, or the unpacked bundle (/autograder/source)
TESTS = ("tests/graded", "tests/hidden")
# The worker's folder: the package, and the public modules its probes need (no hidden test, no reference).
WORKER_FILES = ("tests/__init__.py", "tests/graded", "grader/__init__.py", "grader/probes.py", "grader/worker.py",
                "grader/jail.py")
# Covered in the worker's mount namespace, besides the grader's folder, the submission and the results: where
# the other graders' folders, copies of the course and personal files live. The Python installation is kept.
COVERED = ("/tmp", "/var/tmp", "/home", "/root", "/run", "/mnt", "/media", "/srv", "/opt")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def worker_folder(work: Path, package: Path, uid: int | None) -> None:
    """The worker's folder: a copy of ``WORKER_FILES`` and of ``package``, and a home it may write."""
    for relative in WORKER_FILES:
        source, target = ROOT / relative, work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORE)
        else:
            shutil.copyfile(source, target)
    shutil.copytree(package, work / PACKAGE, ignore=IGNORE)
    (work / ".home").mkdir()
    for path in [work, *work.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if uid is not None:
        os.chown(work / ".home", uid, -1)


def python_paths() -> list[Path]:
    """What the worker's Python needs: the environment, the installation it was made from, the executable."""
    return sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve()})


def grade(submission: Path, results: Path, *, tests: list[str] | tuple[str, ...] = TESTS, timeout: float = 60,
          keyword: str | None = None, user: str | None = DEFAULT_USER, allow_root: bool = False,
          hide: list[Path] | tuple[Path, ...] = ()) -> int:
    """Grade ``submission`` into ``results`` (written atomically); returns pytest's exit status.

    Raises RootRefused before anything runs when we are root and ``user`` cannot run our Python,
    unless ``allow_root``. ``hide`` adds paths the worker must not see (a batch's other submissions).
    """
    import pytest
    ids = worker_ids(user, allow_root)
    submission, results = Path(submission).resolve(), Path(results).resolve()
    notes = []
    if ids is None and os.geteuid() == 0:
        notes.append("note: student code ran as root without capabilities (--allow-root)")
    isolate = can_isolate()
    if not isolate and os.geteuid() == 0:
        notes.append("note: no namespaces for the sandbox (util-linux unshare failed)")
    with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as tmp:
        base = Path(tmp)
        os.chmod(base, 0o711)  # the worker may reach its folder, not list ours
        private = base / "private"
        private.mkdir(mode=0o700)
        package = private / PACKAGE
        shutil.copytree(ROOT / PACKAGE, package, ignore=IGNORE)
        refused = None
        try:
            notes += overlay(find_package(submission, private / "submission"), package)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            notes.append(f"could not read the submission: {exc}; no test was run")
            refused = "not run: the submission could not be read"
        work = base / "work"
        worker_folder(work, package, ids and ids[0])
        limits = timeout * 60  # the CPU time of one worker: a module's tests at most
        sandbox = Sandbox(work=str(work), package=PACKAGE, log=str(private / "worker.log"),
                          uid=ids and ids[0], gid=ids and ids[1], isolate=isolate,
                          hide=sorted({str(p) for p in [ROOT, private, submission, results.parent, *map(Path, hide),
                                                                      *map(Path, COVERED)]}),
                          keep=[str(work), *map(str, python_paths())],
                          timeout=timeout, cpu_seconds=limits, notes=notes, refused=refused)
        sandbox.to_file(private / "sandbox.json")
        args = [*(str(ROOT / t) for t in tests), f"--sandbox={private / 'sandbox.json'}", f"--results={results}",
                f"--rootdir={ROOT}", "-c", str(ROOT / "pytest.ini"), "-p", "no:cacheprovider", "-p", "no:nbval", "-q", "--no-header",
                *(["-k", keyword] if keyword else [])]
        try:
            status = pytest.main(args)
        finally:
            reap()
    if not results.is_file():
        raise RuntimeError(f"the graded tests did not run (pytest exit status {status}); see the output above")
    return int(status)


def _stop(signum, frame) -> None:
    """SIGTERM (a batch's time limit): kill every worker and its descendants, then exit."""
    reap()
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grade", type=Path, metavar="SUBMISSION", required=True, help="a folder or a zip")
    autograder = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    parser.add_argument("--results", type=Path, default=autograder / "results" / "results.json")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="test folders or files (default: %(default)s)")
    parser.add_argument("-k", dest="keyword", help="only the graded tests matching this pytest -k expression")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per test (default: %(default)s)")
    parser.add_argument("--user", default=DEFAULT_USER, help="as root, run student code as this user (default: %(default)s)")
    parser.add_argument("--allow-root", action="store_true",
                        help="as root, grade even when --user cannot run our Python (student code runs as root, "
                             "without capabilities)")
    parser.add_argument("--hide", type=Path, nargs="*", default=[], help="more paths student code must not see")
    args = parser.parse_args(argv)
    missing = [t for t in args.tests if not (ROOT / t).exists()]
    if missing:
        parser.error(f"no such tests: {', '.join(missing)}")
    if not args.grade.exists() and not args.grade.is_symlink():
        parser.error(f"no such submission: {args.grade}")
    signal.signal(signal.SIGTERM, _stop)
    start = time.monotonic()
    try:
        grade(args.grade, args.results, tests=args.tests, timeout=args.timeout, keyword=args.keyword,
              user=args.user or None, allow_root=args.allow_root, hide=args.hide)
    except RootRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {args.results} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
