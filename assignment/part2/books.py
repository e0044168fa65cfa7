"""The three books of the 2019 experiments, fetched by name, sha256-checked and cached (pooch).

    >>> from assignment.part2.books import fetch
    >>> fetch("communist_manifesto")            # doctest: +SKIP
    PosixPath('.../.cache/books/communist_manifesto.txt')

The names, immutable URLs and checksums are in ``data/books.json``. A file is downloaded once into
the cache folder (``$COURSE_BOOKS_CACHE``, default ``<repo>/.cache/books``, git-ignored) and its
sha256 is checked every time it is fetched.

Machines without internet read the files from a **mirror folder** that holds them under the
manifest's file names. It is, in this order: the ``mirror`` argument, ``$COURSE_BOOKS_MIRROR``, or
``<repo>/../shared/data/books`` when that folder exists. A mirror file goes through the same
pooch check as a download: a file whose sha256 differs is refused with an error naming it.
Without network and without a mirror, ``fetch`` raises ``BookDownloadError``, whose one-line
message says how to set up the mirror.

Any other UTF-8 ``.txt`` file works too: ``resolve_text("my_book.txt")`` returns its path unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

with warnings.catch_warnings():  # pooch imports tqdm.auto, which warns in Jupyter when ipywidgets is missing
    warnings.filterwarnings("ignore", message="IProgress not found")
    import pooch
import requests  # pooch downloads with requests; its errors are what "no network" looks like

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "data" / "books.json"
DEFAULT_CACHE = ROOT / ".cache" / "books"
DEFAULT_MIRROR = ROOT.parent / "shared" / "data" / "books"
MIRROR_ENV = "COURSE_BOOKS_MIRROR"
CACHE_ENV = "COURSE_BOOKS_CACHE"


class BookDownloadError(OSError):
    """A book could not be downloaded (no network?) and no mirror folder was set: one line says what to do."""


def manifest() -> dict[str, dict]:
    """The books of ``data/books.json`` by name: title, file, url, sha256, bytes."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["books"]


def book_names() -> list[str]:
    return sorted(manifest())


def mirror_folder(mirror: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder to use: the argument, ``$COURSE_BOOKS_MIRROR``, the shared folder, or None."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
        if mirror is None:
            return DEFAULT_MIRROR if DEFAULT_MIRROR.is_dir() else None
    folder = Path(mirror)
    if not folder.is_dir():
        raise FileNotFoundError(f"book mirror folder {folder} does not exist (set by the mirror argument or ${MIRROR_ENV})")
    return folder


def _copy_from(folder: Path):
    """A pooch downloader that copies the file of that name from a mirror folder instead of downloading."""
    def copy(url: str, output_file, pooch_obj=None) -> None:
        source = folder / Path(url).name
        if not source.is_file():
            raise FileNotFoundError(f"book mirror {folder} has no file {source.name}")
        with open(source, "rb") as src:
            if hasattr(output_file, "write"):
                shutil.copyfileobj(src, output_file)
            else:
                with open(output_file, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return copy


def fetch(name: str, mirror: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
          progressbar: bool = False) -> Path:
    """Path of book ``name`` in the cache, downloaded or copied from the mirror if needed, sha256 checked.

    Raises ValueError for an unknown name or a file whose sha256 differs from the manifest, and
    BookDownloadError when the download fails.
    """
    books = manifest()
    if name not in books:
        raise ValueError(f"unknown book {name!r}; the books are {', '.join(sorted(books))} (or pass a path to a .txt file)")
    book = books[name]
    cache = Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    folder = mirror_folder(mirror)
    # The mirror holds the file under its manifest name; point pooch's "URL" at that name.
    url, downloader = book["url"], None
    if folder is not None:
        url, downloader = f"mirror://{book['file']}", _copy_from(folder)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch reports a first fetch on stderr; a notebook's output must not depend on the cache
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{book['sha256']}", fname=book["file"], path=cache,
                              downloader=downloader, progressbar=progressbar)
    except ValueError as exc:  # pooch's hash mismatch
        where = folder / book["file"] if folder is not None else book["url"]
        raise ValueError(f"{where}: sha256 does not match data/books.json for {name!r} "
                         f"(a corrupted or different file); expected {book['sha256']}. ({exc})") from None
    except requests.RequestException as exc:  # only a download gets here: a mirror copy raises OSError
        response = getattr(exc, "response", None)
        reason = f"HTTP {response.status_code}" if response is not None else "no network?"
        raise BookDownloadError(
            f"cannot download {book['file']} from {book['url']} ({reason}): put the three books, named as in "
            f"data/books.json, in a folder and set {MIRROR_ENV}=/that/folder, or pass --mirror /that/folder") from None
    finally:
        logger.setLevel(level)
    return Path(path)


def resolve_text(book: str | os.PathLike, mirror: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None) -> Path:
    """A book name from the manifest, or the path of any existing text file."""
    if isinstance(book, str) and book in manifest():
        return fetch(book, mirror=mirror, cache=cache)
    path = Path(book)
    if path.is_file():
        return path
    raise ValueError(f"{book!r} is neither a book ({', '.join(book_names())}) nor an existing text file")
