"""Ungraded tests of Part 2's boilerplate: the book downloader, TextDataset, the training command
(checkpoints, exact resume), the experiment command and the committed results."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from solutions.part2 import books
from solutions.part2.dataset import TextDataset, read_text
from solutions.part2.train import Config, load_model, main, resume, train

MIRROR = books.DEFAULT_MIRROR
needs_mirror = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no book mirror at {MIRROR}")
RESULTS = books.ROOT / "data" / "part2"


# ---------------------------------------------------------------- the downloader


def test_manifest_matches_sources():
    entries = books.manifest()
    assert sorted(entries) == ["communist_manifesto", "king_james_bible", "sherlock_holmes"]
    for entry in entries.values():
        assert entry["url"].startswith("https://raw.githubusercontent.com/") and len(entry["sha256"]) == 64


@needs_mirror
def test_fetch_from_mirror_checks_sha256_and_caches(tmp_path):
    path = books.fetch("communist_manifesto", mirror=MIRROR, cache=tmp_path)
    assert path == tmp_path / "communist_manifesto.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == books.manifest()["communist_manifesto"]["sha256"]
    stamp = path.stat().st_mtime_ns
    assert books.fetch("communist_manifesto", mirror=MIRROR, cache=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp, "a cached file with the right sha256 is not fetched again"


@needs_mirror
def test_corrupted_mirror_file_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((MIRROR / "communist_manifesto.txt").read_bytes())
    data[1000] ^= 1  # one flipped bit
    (mirror / "communist_manifesto.txt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"sha256 does not match.*communist_manifesto"):
        books.fetch("communist_manifesto", mirror=mirror, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "communist_manifesto.txt").exists()


@needs_mirror
def test_corrupted_cache_file_is_replaced_from_the_mirror(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "communist_manifesto.txt").write_text("not the book")
    path = books.fetch("communist_manifesto", mirror=MIRROR, cache=cache)
    assert path.stat().st_size == books.manifest()["communist_manifesto"]["bytes"]


def test_mirror_from_environment_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(books.MIRROR_ENV, str(tmp_path))
    assert books.mirror_folder() == tmp_path
    with pytest.raises(FileNotFoundError, match="has no file communist_manifesto.txt"):
        books.fetch("communist_manifesto", cache=tmp_path / "cache")
    monkeypatch.setenv(books.MIRROR_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        books.mirror_folder()
    monkeypatch.delenv(books.MIRROR_ENV)
    assert books.mirror_folder() == (MIRROR if MIRROR.is_dir() else None)


def test_unknown_book_and_user_text(tmp_path):
    with pytest.raises(ValueError, match="unknown book 'moby_dick'"):
        books.fetch("moby_dick")
    with pytest.raises(ValueError, match="neither a book"):
        books.resolve_text("moby_dick")
    mine = tmp_path / "mine.txt"
    mine.write_text("my own text\n")
    assert books.resolve_text(str(mine)) == mine


# ---------------------------------------------------------------- TextDataset


def test_targets_are_inputs_shifted_by_one():
    ds = TextDataset.from_text("abcdefghij", seq_length=4)
    assert ds.vocab == list("abcdefghij") and len(ds) == 6  # offsets 0..5
    for o in range(len(ds)):
        x, y = ds[o]
        assert ds.decode(x) == "abcdefghij"[o:o + 4] and ds.decode(y) == "abcdefghij"[o + 1:o + 5]
    x, y = ds.random_batch(5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 4) and torch.equal(x[:, 1:], y[:, :-1])


def test_bom_and_crlf_and_sorted_vocabulary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffba\r\nc\rd\n".encode("utf-8"))
    assert read_text(path) == "ba\nc\nd\n"
    ds = TextDataset(path, seq_length=2)
    assert ds.vocab == ["\n", "a", "b", "c", "d"]
    assert "\ufeff" not in ds.vocab and "\r" not in ds.vocab


@needs_mirror
def test_books_read_as_documented():
    ds = TextDataset(MIRROR / "sherlock_holmes.txt", seq_length=30)
    # SOURCES.md counts 581,864 characters and 89 distinct ones with the BOM; we drop the BOM.
    assert len(ds.data) == 581_863 and ds.vocab_size == 88 and ds.vocab == sorted(ds.vocab)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextDataset(tmp_path / "missing.txt", seq_length=3)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        TextDataset(tmp_path / "empty.txt", seq_length=3)
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(ValueError, match="too short"):
        TextDataset(tmp_path / "short.txt", seq_length=3)
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text: byte 3"):
        TextDataset(tmp_path / "latin1.txt", seq_length=2)
    with pytest.raises(ValueError, match="seq_length"):
        TextDataset.from_text("abcdef", seq_length=0)
    ds = TextDataset.from_text("abcdef", seq_length=2)
    with pytest.raises(ValueError, match=r"\['z'\] are not in the vocabulary"):
        ds.encode("abz")
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_held_out_block_is_never_trained_on():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    ds = TextDataset.from_text(text, seq_length=10, valid_fraction=0.2)
    start, stop = ds.valid_span
    assert (start, stop) == (400, 600)
    offsets = [ds.offset(i) for i in range(len(ds))]
    assert all(o + 11 <= start or o >= stop for o in offsets)
    assert len(ds) == (start - 10) + (1000 - stop - 10)
    assert ds.decode(ds.valid_data()) == text[400:600]


# ---------------------------------------------------------------- the training command

TINY = dict(hidden=16, batch_size=8, sample_every=10, eval_every=10, checkpoint_every=10, progress=False,
            valid_fraction=0.1, samples_per_temperature=2)


@pytest.fixture
def tiny_book(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("The quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    return path


def test_resume_gives_the_uninterrupted_run(tiny_book, tmp_path):
    whole = train(Config(book=str(tiny_book), steps=40, out=str(tmp_path / "a"), **TINY))
    train(Config(book=str(tiny_book), steps=20, out=str(tmp_path / "b"), **TINY))
    resumed = resume(Config(book=str(tiny_book), steps=40, out=str(tmp_path / "b"), **TINY))
    for key in ("step", "loss", "accuracy", "lr", "eval", "samples"):
        assert whole[key] == resumed[key], key
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert torch.equal(a["rng"]["data"], b["rng"]["data"]) and torch.equal(a["rng"]["sample"], b["rng"]["sample"])


def test_resume_refuses_changed_settings(tiny_book, tmp_path):
    train(Config(book=str(tiny_book), steps=10, out=str(tmp_path), **TINY))
    with pytest.raises(ValueError, match="made with --hidden 16, not 8"):
        resume(Config(book=str(tiny_book), steps=20, out=str(tmp_path), **{**TINY, "hidden": 8}))
    with pytest.raises(ValueError, match="no checkpoint"):
        resume(Config(book=str(tiny_book), steps=20, out=str(tmp_path / "other"), **TINY))


def test_training_command_end_to_end(tiny_book, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--book", str(tiny_book), "--steps", "30", "--hidden", "16", "--batch_size", "8", "--sample_every", "15",
            "--eval_every", "15", "--checkpoint_every", "15", "--out", str(out), "--no-progress", "--seed", "3"]
    main(args)
    assert "done: 30 steps" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.json"]  # no .tmp left behind
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    assert len(history["loss"]) == 30 and [e["step"] for e in history["eval"]] == [0, 15, 30]
    assert {(s["step"], s["temperature"]) for s in history["samples"]} == {
        (step, t) for step in (0, 15, 30) for t in (0.0, 0.5, 1.0, 2.0)}
    assert all(len(t) == 30 for s in history["samples"] for t in s["texts"])
    assert history["loss"][-1] < history["loss"][0]
    main(["--out", str(out), "--steps", "40", "--no-progress", "--resume"])  # the rest from the checkpoint
    assert len(json.loads((out / "history.json").read_text(encoding="utf-8"))["loss"]) == 40


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_an_error(tiny_book, tmp_path):
    with pytest.raises(ValueError, match="CUDA"):
        train(Config(book=str(tiny_book), steps=1, out=str(tmp_path), device="cuda", **TINY))


# ---------------------------------------------------------------- the experiment and its results


def test_novelty_counts_ngrams_absent_from_the_book():
    from experiments.part2_books import novelty
    assert novelty(["abcdefghij"], "xxabcdefghxx", n=8) == pytest.approx(2 / 3)
    assert novelty(["abcdefgh"], "abcdefgh", n=8) == 0.0


def test_samples_and_held_out_text_are_measured_against_the_same_training_text():
    """Both novelty shares count 8-grams absent from the book without its held-out block."""
    from experiments.part2_books import heldout_reference, novelty, training_text
    text = "the cat sat on the mat. " * 4 + "QUITE UNSEEN WORDS HERE" + " the cat sat on the mat." * 4
    span = (96, 96 + len("QUITE UNSEEN WORDS HERE"))
    training = training_text(text, span)
    assert "UNSEEN" not in training and "mat. the" in training
    assert novelty(["QUITE UNSEEN WORDS HERE"], training) == 1.0  # a sample that copies the held-out block is new
    assert heldout_reference(text, span, seed=0, k=50) == 1.0
    assert novelty(["the cat sat on the mat."], training) == 0.0


@needs_mirror
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_experiment_command_on_a_tiny_run(tmp_path):
    from experiments.part2_books import main as experiment
    assert experiment(["--books", "communist_manifesto", "--steps", "20", "--sample-every", "10", "--eval_every", "10",
                       "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "out" / "communist_manifesto.json").read_text(encoding="utf-8"))
    assert [row["temperature"] for row in result["temperature_study"]] == [0.0, 0.5, 1.0, 2.0]
    assert result["settings"]["steps"] == 20 and result["environment"]["torch"] == torch.__version__
    model, vocab = load_model(tmp_path / "out" / "communist_manifesto.pt")
    assert model.vocab_size == len(vocab) == len(result["vocab"])


@pytest.mark.parametrize("book", ["communist_manifesto", "sherlock_holmes", "king_james_bible"])
def test_committed_results_have_provenance(book):
    result = json.loads((RESULTS / f"{book}.json").read_text(encoding="utf-8"))
    for key in ("command", "settings", "seed", "environment", "device", "wall_time_s", "curve", "eval", "samples",
                "temperature_study", "continuations", "final_train_loss", "final_valid_loss"):
        assert key in result, key
    assert result["settings"]["steps"] >= 10000
    steps = {s["step"] for s in result["samples"] if s["temperature"] == 0.0}
    assert {0, 2000, 4000, 6000, 8000, 10000} <= steps
    model, vocab = load_model(RESULTS / f"{book}.pt")
    assert vocab == result["vocab"] and (RESULTS / f"{book}.pt").stat().st_size < 2_000_000
