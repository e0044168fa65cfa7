"""Generate the student package ``assignment/`` from the reference package ``solutions/``.

A solution region is a block of lines between two marker comments (the nbgrader convention)::

    ### BEGIN SOLUTION Question 1.2: implement VanillaRNN.forward
    h = ...
    ### END SOLUTION

Each region becomes ``raise NotImplementedError("Question 1.2: implement VanillaRNN.forward")``
at the indentation of its BEGIN marker. Lines between ``### BEGIN INSTRUCTOR`` and
``### END INSTRUCTOR`` (notes for the course team) are dropped. Mentions of the package by its
dotted or slashed name (``python -m solutions.part1.train``, ``solutions/part3/gcn.py``) name
``assignment`` instead, so the student package speaks of itself. Everything else is copied as it is.

    python -m tools.make_assignment            # (re)write assignment/
    python -m tools.make_assignment --check    # exit 1 if assignment/ differs from what it would write
"""
from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?P<message>.*)$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
BEGIN_ANYWHERE = re.compile(r"^\s*### BEGIN SOLUTION", re.MULTILINE)
INSTRUCTOR_BEGIN = re.compile(r"^\s*### BEGIN INSTRUCTOR\s*$")
INSTRUCTOR_END = re.compile(r"^\s*### END INSTRUCTOR\s*$")
# "solutions.part1.train", "solutions/part3/gcn.py", "solutions.common": the package named in prose and commands
PACKAGE_MENTION = re.compile(r"\bsolutions(?=[./](?:part\d|common)\b)")
ABSOLUTE_IMPORT = re.compile(r"^\s*(from|import)\s+(solutions|assignment)\b", re.MULTILINE)
# Files and folders that never reach the student package: caches, and the batched engine of the
# instructor's sweep (part1/stacked.py), which holds the LSTM's equations.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "stacked.py")


class MarkerError(ValueError):
    """A solution region is malformed (unclosed, nested, or without a question message)."""


def strip_solutions(text: str, filename: str = "<string>") -> str:
    """Return ``text`` with every solution region replaced by a NotImplementedError stub."""
    out: list[str] = []
    region_start = instructor_start = None
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        begin, end = BEGIN.match(line.rstrip("\n")), END.match(line)
        if INSTRUCTOR_BEGIN.match(line):
            if instructor_start is not None or region_start is not None:
                raise MarkerError(f"{filename}:{lineno}: BEGIN INSTRUCTOR inside another region")
            instructor_start = lineno
        elif INSTRUCTOR_END.match(line):
            if instructor_start is None:
                raise MarkerError(f"{filename}:{lineno}: END INSTRUCTOR without a BEGIN INSTRUCTOR")
            instructor_start = None
        elif instructor_start is not None:
            continue
        elif begin:
            if region_start is not None:
                raise MarkerError(f"{filename}:{lineno}: BEGIN SOLUTION inside the region opened at line {region_start}")
            message = begin["message"].strip()
            if not message:
                raise MarkerError(f"{filename}:{lineno}: BEGIN SOLUTION needs a message, e.g. 'Question 1.2: implement f'")
            out.append(f'{begin["indent"]}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})\n')
            region_start = lineno
        elif end:
            if region_start is None:
                raise MarkerError(f"{filename}:{lineno}: END SOLUTION without a BEGIN SOLUTION")
            region_start = None
        elif region_start is None:
            out.append(line)
    if region_start is not None:
        raise MarkerError(f"{filename}:{region_start}: BEGIN SOLUTION is never closed by END SOLUTION")
    if instructor_start is not None:
        raise MarkerError(f"{filename}:{instructor_start}: BEGIN INSTRUCTOR is never closed by END INSTRUCTOR")
    return PACKAGE_MENTION.sub("assignment", "".join(out))


def build(source: Path, target: Path) -> int:
    """Write the stripped copy of package ``source`` to ``target`` (replaced whole). Returns #regions."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=IGNORE)
    regions = 0
    for path in sorted(target.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        stripped = strip_solutions(text, str(path.relative_to(target.parent)))
        if ABSOLUTE_IMPORT.search(text):
            raise MarkerError(f"{path}: import from {source.name} relatively ('from .models import X'), "
                              f"so that the same file works in {target.name}")
        regions += len(BEGIN_ANYWHERE.findall(text))
        path.write_text(stripped, encoding="utf-8")
    return regions


def differences(left: Path, right: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on either side, or different bytes)."""
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__", ".pytest_cache"])
    found: list[str] = []

    def walk(c: filecmp.dircmp, prefix: str) -> None:
        found.extend(prefix + name for name in c.left_only + c.right_only)
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        found.extend(prefix + name for name in mismatch + errors)
        for name, sub in c.subdirs.items():
            walk(sub, prefix + name + "/")

    walk(cmp, "")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT / "solutions")
    parser.add_argument("--target", type=Path, default=ROOT / "assignment")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / args.target.name
            build(args.source, fresh)
            diff = differences(fresh, args.target) if args.target.exists() else [str(args.target)]
        if diff:
            print(f"{args.target} is out of date with {args.source}; run `python -m tools.make_assignment`.")
            print("Differs: " + ", ".join(diff))
            return 1
        print(f"{args.target} matches {args.source}.")
        return 0
    regions = build(args.source, args.target)
    print(f"wrote {args.target} from {args.source}: {regions} solution regions stubbed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
