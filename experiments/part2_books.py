"""Train the character LSTM on each book (``--books``) and record what it learned (Part 2).

    python -m experiments.part2_books                        # every book, with the defaults of --help
    python -m experiments.part2_books --books communist_manifesto --steps 2000 --out /tmp/p2

For each book this writes, atomically, to ``--out``:

- ``<book>.json``: the command, settings, seed, versions, device and wall time; the training loss
  and accuracy (means over 50-step windows), the validation loss per character on a held-out block
  of the text; the periodic samples (greedy from a random first character, Table 1, and at
  the other temperatures of ``--temperatures``, Table 2); for each temperature the negative log-likelihood of
  200-character samples under the model and the share of their 8-grams that do not occur in the
  training text (the book without its held-out block), the same measure as the held-out block's own
  share (``heldout_novel_8gram_share``); and long continuations of book-appropriate prompts (Question 2.2).
- ``<book>.pt``: the final weights and vocabulary (about 1 MB), for live generation in the book.

``--rescore`` recomputes the 8-gram shares of committed results from their saved weights (the
samples are drawn again, on the CPU, from the same seeds) without training.

Training runs through ``solutions.part2.train`` with its 2019 defaults; its run folders (checkpoints)
go to ``--runs`` (by default a git-ignored folder), and ``--resume`` continues an interrupted run exactly.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from solutions.cli import check, check_writable, load_checkpoint, parse, run, setting
from solutions.common import atomic_write_json, environment, use_default_threads
from solutions.part2.books import ROOT, resolve_text
from solutions.part2.dataset import encode, read_text
from solutions.part2.sampling import random_first_characters, sample_text
from solutions.part2.train import CHECKPOINT_KEYS, THREADS, Config, char_nll, load_model, resume, save_model, train

BOOKS = ["communist_manifesto", "sherlock_holmes", "king_james_bible"]
TEMPERATURES = Config().temperatures  # those of the periodic samples, for the study too
NGRAM = 8
PROMPTS = {  # book-appropriate beginnings for Question 2.2
    "communist_manifesto": ["The history of all hitherto existing society", "The bourgeoisie has", "Workers of"],
    "sherlock_holmes": ['"My dear Watson," said he', "Sherlock Holmes", "It was a dark"],
    "king_james_bible": ["In the beginning God", "And the LORD said unto Moses,", "3:16 For God so loved"],
}


@dataclass
class BooksConfig(Config):
    """The training settings of ``solutions.part2.train`` (its ``Config``, its defaults), and the books."""
    eval_every: int = setting(500, "validation loss at these steps (0: never)", at_least=0)
    books: list[str] = setting(BOOKS, "the books", choices=tuple(BOOKS))
    out: str = setting(str(ROOT / "data" / "part2"), "the folder of the results (<book>.json, <book>.pt)")
    runs: str = setting(str(ROOT / "runs" / "part2" / "books"), "the folder of the training runs (checkpoints)")


def ngrams(text: str, n: int = NGRAM) -> list[str]:
    return [text[i:i + n] for i in range(len(text) - n + 1)]


def training_text(text: str, span: tuple[int, int]) -> str:
    """The text the model trained on: the book without its held-out block (a NUL where it was, so that
    no n-gram spans the cut)."""
    a, b = span
    return text[:a] + "\0" + text[b:]


def novelty(texts: list[str], book: str, n: int = NGRAM) -> float:
    """The share of the n-grams of ``texts`` (counted with repeats) that occur nowhere in ``book``."""
    grams = [g for t in texts for g in ngrams(t, n)]
    seen = {g: g in book for g in set(grams)}
    return sum(not seen[g] for g in grams) / len(grams)


def temperature_study(model, vocab, training: str, seed: int, n: int = 32, length: int = 200) -> list[dict]:
    """For each temperature: NLL per character of n samples under the model (tau = 1) and their novelty
    against ``training``, the text the model trained on (``training_text``)."""
    rows = []
    for temperature in TEMPERATURES:
        gen = torch.Generator().manual_seed(seed)
        first = random_first_characters(vocab, n, gen)
        texts = sample_text(model, vocab, first, length - 1, temperature, gen)
        ids = torch.stack([encode(vocab, t) for t in texts])
        nll = char_nll(model, ids)  # (n, length - 1), the state carried from the first character
        rows.append({"temperature": temperature, "samples": n, "length": length,
                     "nll_per_char": round(nll.mean().item(), 4),
                     "novel_8gram_share": round(novelty(texts, training), 4),
                     "distinct_8gram_share": round(len(set(g for t in texts for g in ngrams(t))) /
                                                   sum(len(ngrams(t)) for t in texts), 4),
                     "examples": texts[:4]})
    return rows


def heldout_reference(text: str, span: tuple[int, int], seed: int, k: int = 2000) -> float:
    """Novelty of real unseen text: the share of k random 8-grams of the held-out block (counted with
    repeats, as ``novelty`` counts a sample's) absent from the training text."""
    a, b = span
    rest = training_text(text, span)
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(a, b - NGRAM + 1, (k,), generator=gen).tolist()
    return round(sum(text[s:s + NGRAM] not in rest for s in starts) / k, 4)


def continuations(model, vocab, prompts: list[str], seed: int, length: int = 600) -> list[dict]:
    out = []
    for temperature in (0.0, 0.5):
        for prompt in prompts:
            gen = torch.Generator().manual_seed(seed)
            (txt,) = sample_text(model, vocab, [prompt], length, temperature, gen)
            out.append({"prompt": prompt, "temperature": temperature, "text": txt})
    return out


def windows(values: list[float], size: int = 50) -> list[float]:
    return [round(sum(values[i:i + size]) / len(values[i:i + size]), 4) for i in range(0, len(values), size)]


def run_book(book: str, books: BooksConfig, resume_run: bool = False) -> dict:
    run_dir = Path(books.runs) / book
    config = Config(**{f.name: getattr(books, f.name) for f in fields(Config)} | {"book": book, "out": str(run_dir)})
    tic = time.perf_counter()
    if resume_run and (run_dir / "checkpoint.pt").exists():
        history = resume(config)
    else:
        history = train(config)
    train_wall = history["wall_time_s"]
    out = Path(books.out)
    model_path = out / f"{book}.pt"
    model = load_model_from_run(run_dir, config, history["vocab"], model_path)
    vocab = history["vocab"]
    text = read_text(resolve_text(book, mirror=books.mirror))
    study = temperature_study(model, vocab, training_text(text, tuple(history["valid_span"])), books.seed + 2)
    result = {
        "command": "python -m experiments.part2_books " + " ".join(sys.argv[1:]),
        "book": book, "settings": asdict(config), "seed": books.seed, "environment": environment(),
        "device": books.device, "wall_time_s": {"training": round(train_wall, 1),
                                               "total": round(time.perf_counter() - tic + 0.0, 1)},
        "note": "wall_time_s.total excludes training already done before a --resume",
        "chars": history["chars"], "vocab": vocab, "valid_span": history["valid_span"],
        "curve": {"window": 50, "step": [min(s + 49, books.steps) for s in range(1, books.steps + 1, 50)],
                  "loss": windows(history["loss"]), "accuracy": windows(history["accuracy"])},
        "final_train_loss": round(sum(history["loss"][-500:]) / len(history["loss"][-500:]), 4),
        "final_train_accuracy": round(sum(history["accuracy"][-500:]) / len(history["accuracy"][-500:]), 4),
        "eval": history["eval"],
        "final_valid_loss": history["eval"][-1]["valid_loss"],
        "samples": history["samples"],
        "temperature_study": study,
        "heldout_novel_8gram_share": heldout_reference(text, tuple(history["valid_span"]), books.seed),
        "continuations": continuations(model, vocab, PROMPTS.get(book, ["The "]), books.seed + 3),
        "model_file": model_path.name,
    }
    path = out / f"{book}.json"
    atomic_write_json(path, result)
    print(f"{book}: train loss {result['final_train_loss']}, valid loss {result['final_valid_loss']}, "
          f"{train_wall:.0f} s of training; wrote {path}", flush=True)
    return result


def load_model_from_run(run_dir: Path, config: Config, vocab: list[str], model_path: Path):
    """Save the run's final weights as a small model file and load them back for the analysis."""
    saved = load_checkpoint(run_dir / "checkpoint.pt", CHECKPOINT_KEYS)
    from solutions.part2.model import TextGenerationModel
    model = TextGenerationModel(len(vocab), config.hidden, config.num_layers, config.dropout)
    model.load_state_dict(saved["model"])
    save_model(model, vocab, config, model_path)
    return load_model(model_path)[0]


def rescore(book: str, args) -> dict:
    """Recompute the novelty measures of a committed result from its saved weights, without training."""
    path = Path(args.out) / f"{book}.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    model, vocab = load_model(Path(args.out) / result["model_file"])
    text = read_text(resolve_text(book, mirror=args.mirror))
    span = tuple(result["valid_span"])
    study = temperature_study(model, vocab, training_text(text, span), result["seed"] + 2)
    for old, new in zip(result["temperature_study"], study):
        if old["examples"] != new["examples"]:
            raise RuntimeError(f"{book}: the samples at tau = {old['temperature']} differ from the committed ones")
    result["temperature_study"] = study
    result["heldout_novel_8gram_share"] = heldout_reference(text, span, result["seed"])
    result["rescored"] = "python -m experiments.part2_books " + " ".join(sys.argv[1:])
    atomic_write_json(path, result)
    print(f"{book}: novel 8-gram shares " + ", ".join(f"tau {r['temperature']}: {r['novel_8gram_share']}" for r in study)
          + f"; held-out text {result['heldout_novel_8gram_share']}; wrote {path}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    def options(parser):
        parser.add_argument("--resume", action="store_true", help="continue runs from their checkpoints")
        parser.add_argument("--rescore", action="store_true",
                            help="recompute the novelty measures of the committed results in --out from their weights")

    books, _, extra = parse(BooksConfig, argv, __doc__, options, skip=("book",))
    check(books)
    check_writable(books.out, folder=True)
    if not extra["rescore"]:
        check_writable(books.runs, folder=True)
    use_default_threads(THREADS)
    for book in books.books:
        if extra["rescore"]:
            rescore(book, books)
        else:
            run_book(book, books, extra["resume"])
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
