"""The autograder bundle: everything the grader needs, and nothing of the reference package.

    python -m grader.bundle --out dist/autograder.zip     # Gradescope's "zipped autograder" (make autograder)

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once per image (it creates
the unprivileged user that runs student code) and ``run_autograder`` for every submission. Batch
grading (``grader/batch.py``) unpacks the same files into a private folder and grades from there.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from grader.files import atomic_open

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
FOLDERS = ("grader", "tests/graded", "tests/hidden", "assignment")  # the grader, the tests, the stubs
FILES = ("requirements.txt", "pytest.ini", "tests/__init__.py")
SCRIPTS = ("setup.sh", "run_autograder")  # at the top, executable


def contents() -> dict[str, Path]:
    """The bundle's files: their names in it, and where they come from."""
    files = {name: TEMPLATES / name for name in SCRIPTS}
    files.update({name: ROOT / name for name in FILES})
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" \
                    and TEMPLATES not in path.parents:
                files[str(path.relative_to(ROOT))] = path
    return files


def build_zip(out: Path) -> list[str]:
    """Write the zip (reproducible bytes, atomically); returns its file names."""
    files = contents()
    with atomic_open(out, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in SCRIPTS else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return sorted(files)


def build_folder(dest: Path) -> Path:
    """Lay the bundle out in ``dest`` (a new folder, readable by its owner alone); returns it."""
    dest = Path(dest)
    dest.mkdir(mode=0o700)
    for name, path in contents().items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / name)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    args = parser.parse_args(argv)
    names = build_zip(args.out)
    print(f"wrote {args.out}: {len(names)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
