"""A submission: find the student's package in a folder or a zip, check it, and lay it over the stubs.

Accepted: an ``assignment/`` folder, the package's files at the top (``part1/`` ...), or a zip of either
(also one level down, as Gradescope keeps an uploaded zip as a file). Refused, with the reason
(ValueError): a symlink anywhere (following one would grade other code, a classmate's or the
reference, as the student's), and a zip that is too large (20 MiB unpacked, 2000 files, 3 levels of
zips), holds a symlink, a path outside it, or anything but ``.py`` files. Every check happens before
anything is unpacked.
"""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

PACKAGE = "assignment"
# What a zip submission may hold, nested zips included: about 100 times the package's own size.
MAX_BYTES, MAX_MEMBERS, MAX_ZIPS = 20 * 2**20, 2000, 3
JUNK = ("__MACOSX", "__pycache__", ".DS_Store")  # what zip tools add: skipped, not refused


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
        budget = {"bytes": MAX_BYTES, "members": MAX_MEMBERS, "zips": MAX_ZIPS}
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
