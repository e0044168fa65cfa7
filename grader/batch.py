"""Grade a folder of submissions without Gradescope: one CSV row of points per question each.

    python -m grader.batch SUBMISSIONS_DIR --out scores.csv [--time-limit 1800] [--jobs 1]
    make batch-grade SUBMISSIONS=path/to/folder

The batch lays the autograder bundle out in a private folder (``grader/bundle.py``: the grader, the
tests and the stubs, never the reference package) and grades every entry of SUBMISSIONS_DIR (a
folder or a zip, named after the student) from there, each by ``grader/autograder.py`` in its own
process, exactly as Gradescope would; the submissions folder and the results are covered in each
sandbox, so student code reads neither a classmate's code nor a score. ``--jobs N`` grades N at once. A
submission that takes longer than ``--time-limit`` seconds in all is stopped and its row says
``timeout``; one that cannot be graded (or is refused: a symlink, a zip too large) says ``error``
and why; one graded with tests that ended without an outcome says ``incomplete`` and names them
(timed out, crashed). None of these stops the batch. Each row has the submission's name (its file
name where a folder ``x`` and a zip ``x.zip`` share one), its status, the points per question, the
total, and the error. The CSV is rewritten (atomically) after every submission, and each one's
results.json is kept beside it in ``<out>.d/`` for the feedback. No process outlives its submission:
each grader kills and reaps every descendant of its children, and the batch, a child subreaper too,
kills and reaps whatever a grader it had to kill left behind.

As root, the batch stops before grading (exit status 2, one line) when student code cannot run as
the dedicated unprivileged ``--user``, unless ``--allow-root`` (passed on to the grader).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grader.autograder import ROOT as REPOSITORY, TESTS
from grader.bundle import build_folder
from grader.files import atomic_open
from grader.report import question_key
from grader.sandbox import DEFAULT_USER, RootRefused, become_subreaper, children, reap, worker_ids

_GRADERS: set[int] = set()  # the grader processes running now (threads of --jobs)
_SPAWN = threading.Lock()  # held while a grader starts, and while orphans are reaped


def submissions(folder: Path) -> list[Path]:
    """The submissions in ``folder``: its sub-folders and zip files (hidden entries skipped)."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of submissions")
    return [p for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() == ".zip")]


def row_names(entries: list[Path]) -> dict[Path, str]:
    """Each submission's row name: its stem, or its whole name where two share a stem (``x``, ``x.zip``)."""
    stems = Counter(p.stem for p in entries)
    return {p: p.stem if stems[p.stem] == 1 else p.name for p in entries}


def grade_one(submission: Path, results: Path, time_limit: float, grader_args: list[str], bundle: Path) -> dict:
    """Grade one submission in its own process, from the bundle; never raises. Returns the row's fields."""
    start = time.monotonic()
    row = {"submission": submission.stem, "status": "ok", "error": ""}
    results.unlink(missing_ok=True)  # never read a previous run's file
    command = [sys.executable, "-m", "grader.autograder", "--grade", str(submission), "--results", str(results),
               *grader_args]
    become_subreaper()  # what a killed grader leaves comes to us
    with _SPAWN:
        before = children()  # the caller's own, kept
        proc = subprocess.Popen(command, cwd=bundle, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        _GRADERS.add(proc.pid)
    try:
        output, _ = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the grader ends its own children and their descendants
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        row.update(status="timeout", error=f"stopped after the time limit of {time_limit:g} s")
    finally:
        with _SPAWN:  # a live grader adopts its own orphans: a child of ours that is no grader has lost its grader
            _GRADERS.discard(proc.pid)
            reap(before | _GRADERS)
    row["seconds"] = round(time.monotonic() - start, 1)
    if row["status"] == "ok":
        try:
            report = json.loads(results.read_text())
        except (OSError, ValueError) as exc:
            tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            row.update(status="error", error=f"no results ({type(exc).__name__}): {tail[0][:300]}")
        else:
            row["report"] = report
            notes = [line for line in report.get("output", "").split("\n\n")[0].splitlines()
                     if line.startswith(("could not read", "ignored"))]  # the grader's notes come first
            extra = report.get("extra_data") or {}
            stopped = [f"{what}: " + ", ".join(n.split("::")[-1] for n in extra[key])
                       for key, what in (("timed_out", "timed out"), ("crashed", "crashed")) if extra.get(key)]
            row["error"] = "; ".join(notes + stopped)[:300]
            if any(n.startswith("could not read") for n in notes):
                row["status"] = "error"
            elif stopped:
                row["status"] = "incomplete"
    return row


def write_csv(rows: list[dict], out: Path) -> None:
    questions: dict[str, None] = {}
    for row in rows:
        for test in row.get("report", {}).get("tests", []):
            questions.setdefault(test["number"], None)
    order = sorted(questions, key=question_key)
    fields = ["submission", "status", *order, "total", "possible", "seconds", "error"]
    with atomic_open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            line = {k: row.get(k, "") for k in ("submission", "status", "seconds", "error")}
            tests = row.get("report", {}).get("tests", [])
            if tests:
                for question in order:
                    line[question] = sum(t["score"] for t in tests if t["number"] == question)
                line["total"] = sum(t["score"] for t in tests)
                line["possible"] = sum(t["max_score"] for t in tests)
            writer.writerow(line)


def batch(folder: Path, out: Path, *, time_limit: float = 1800, jobs: int = 1, tests: list[str] | None = None,
          timeout: float | None = None, user: str | None = None, allow_root: bool = False) -> list[dict]:
    """Grade every submission of ``folder`` into the CSV ``out``; returns the rows.

    Raises RootRefused before grading anything when, as root, student code cannot run as ``user``
    and ``allow_root`` is not given.
    """
    worker_ids(DEFAULT_USER if user is None else user, allow_root)
    entries = submissions(folder)
    names = row_names(entries)
    out = out.resolve()
    details = out.with_name(out.name + ".d")
    details.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    grader_args = ["--tests", *(tests or TESTS), *(["--timeout", f"{timeout:g}"] if timeout else []),
                   *(["--user", user] if user is not None else []), *(["--allow-root"] if allow_root else []),
                   "--hide", str(folder.resolve()), str(details), str(REPOSITORY)]
    with tempfile.TemporaryDirectory(prefix="batch-") as tmp:
        bundle = build_folder(Path(tmp) / "bundle")

        def one(entry: Path) -> None:
            name = names[entry]
            row = grade_one(entry.resolve(), details / f"{name}.json", time_limit, grader_args, bundle)
            row["submission"] = name
            rows[name] = row
            write_csv([rows[names[p]] for p in entries if names[p] in rows], out)
            total = sum(t["score"] for t in row.get("report", {}).get("tests", []))
            print(f"{entry.name}: {row['status']}, {total:g} points, {row['seconds']:.0f} s {row['error']}".rstrip(),
                  flush=True)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, entries))
    return [rows[names[p]] for p in entries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="a folder of submissions (folders or zips)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"))
    parser.add_argument("--time-limit", type=float, default=1800, help="seconds per submission (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default: %(default)s)")
    parser.add_argument("--timeout", type=float, help="seconds per test (default: the grader's, 60)")
    parser.add_argument("--tests", nargs="+", help="test folders or files (default: tests/graded tests/hidden)")
    parser.add_argument("--user", help=f"as root, run student code as this user (default: {DEFAULT_USER})")
    parser.add_argument("--allow-root", action="store_true",
                        help="as root, grade even when --user cannot run our Python (student code runs as root, "
                             "without capabilities)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        rows = batch(args.submissions, args.out, time_limit=args.time_limit, jobs=args.jobs, tests=args.tests,
                     timeout=args.timeout, user=args.user, allow_root=args.allow_root)
    except RootRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:  # not a folder of submissions
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(rows)} submissions in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
