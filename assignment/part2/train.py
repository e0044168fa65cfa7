"""Train the character LSTM on a book: ``python -m assignment.part2.train --book sherlock_holmes``.

    python -m assignment.part2.train --book communist_manifesto --steps 10000 --seed 0 --device cpu
    python -m assignment.part2.train --book my_novel.txt --steps 2000     # any UTF-8 text file
    python -m assignment.part2.train --book sherlock_holmes --steps 20000 --resume   # continue a run

Defaults are those of 2019 (and of Karpathy's char-rnn, where they come from): seq_length 30,
hidden 128, 2 layers, batch 64, RMSprop with learning rate 2e-3 multiplied by 0.96 every 5000
steps (StepLR), gradients clipped to a global norm of 5. RMSprop is what the 2019 code and
char-rnn used; the course keeps it so that its numbers compare with theirs.

The run folder (``--out``, default ``runs/part2/<book>``) receives ``checkpoint.pt`` (model,
optimiser, scheduler, every random generator and the history, written atomically) and
``history.json`` (losses, accuracies, validation losses and samples). ``--resume`` continues from
the checkpoint and gives exactly the numbers an uninterrupted run with the same seed gives.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..common import atomic_torch_save, atomic_write_json, environment, resolve_device, use_default_threads
from .books import ROOT, BookDownloadError, resolve_text
from .dataset import TextDataset
from .model import TextGenerationModel
from .sampling import random_first_characters, sample_text


# Torch threads of the training commands unless $OMP_NUM_THREADS is set: this model trained 1.4-1.7x
# faster with two than with one on a 2-core machine (common.py's default, one, suits Part 1).
THREADS = 2


@dataclass
class Config:
    book: str = "sherlock_holmes"      # a book name from data/books.json or a path to a .txt file
    seq_length: int = 30
    hidden: int = 128
    num_layers: int = 2
    dropout: float = 0.0
    batch_size: int = 64
    learning_rate: float = 2e-3
    learning_rate_decay: float = 0.96
    learning_rate_step: int = 5000
    max_norm: float = 5.0
    steps: int = 10000
    seed: int = 0
    device: str = "cpu"
    print_every: int = 5               # progress-bar update of loss and accuracy
    sample_every: int = 1000           # samples at steps 0, sample_every, 2 * sample_every, ...
    sample_length: int = 30            # characters per periodic sample, the first one included
    samples_per_temperature: int = 3
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])
    eval_every: int = 1000             # validation loss at these steps
    valid_fraction: float = 0.1        # held out from the middle of the text ...
    valid_max_chars: int = 50_000      # ... at most this many characters
    checkpoint_every: int = 1000
    out: str = ""                      # run folder; default runs/part2/<book>
    mirror: str | None = None          # folder with the books (see books.py)
    progress: bool = True


# Settings that must match for --resume (the number of steps may grow).
RESUME_KEYS = ("book", "seq_length", "hidden", "num_layers", "dropout", "batch_size", "learning_rate",
               "learning_rate_decay", "learning_rate_step", "max_norm", "seed", "sample_every",
               "sample_length", "samples_per_temperature", "temperatures", "eval_every",
               "valid_fraction", "valid_max_chars")


def train_step(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor,
               max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One update on a batch; returns (loss, logits), both detached.

    Args:
        inputs, targets: LongTensors (B, T); ``targets[:, t]`` is the character after ``inputs[:, t]``.

    The loss is the cross-entropy of every one of the B*T predictions, averaged over batch and
    time (reshape the logits (B, T, V) to (B*T, V)). Clear old gradients, back-propagate, rescale
    the whole gradient to a global norm of at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``)
    and take the optimiser step.
    """
    raise NotImplementedError("Question 2.1 (a): implement the training step")


@torch.no_grad()
def char_nll(model, ids: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Negative log-likelihood (nats) of each character after the first: ids (B, T+1) -> (B, T).

    Each row is run from the zero state, so ``char_nll(model, x)[:, t]`` is -log p(x[t+1] | x[:t+1]).
    """
    was_training = model.training
    model.eval()
    out = []
    for rows in ids.split(batch_size):
        logits, _ = model(rows[:, :-1])
        out.append(F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none"))
    model.train(was_training)
    return torch.cat(out)


def validation_loss(model, ids: torch.Tensor, seq_length: int) -> float:
    """Mean NLL per character (nats) of held-out text ``ids`` (N,), in non-overlapping windows of
    ``seq_length`` predictions, each from the zero state as in training."""
    n = (len(ids) - 1) // seq_length
    if n < 1:
        raise ValueError(f"the held-out text needs at least {seq_length + 1} characters, has {len(ids)}")
    windows = ids[: n * seq_length + 1].unfold(0, seq_length + 1, seq_length)  # (n, L+1)
    return char_nll(model, windows).mean().item()


def save_model(model: TextGenerationModel, vocab: list[str], config: Config, path: str | os.PathLike) -> None:
    """The weights and vocabulary only (no optimiser): what generation needs, about 1 MB."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(path, {"vocab": vocab, "config": asdict(config), "model": state})


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[TextGenerationModel, list[str]]:
    """A model saved by ``save_model`` (or a checkpoint), in eval mode, and its vocabulary."""
    saved = torch.load(path, map_location=device, weights_only=False)
    config = saved["config"]
    model = TextGenerationModel(len(saved["vocab"]), config["hidden"], config["num_layers"], config["dropout"])
    model.load_state_dict(saved["model"])
    return model.to(device).eval(), saved["vocab"]


def _rng_state(data_gen, sample_gen, device) -> dict:
    state = {"data": data_gen.get_state(), "sample": sample_gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state, data_gen, sample_gen, device) -> None:
    data_gen.set_state(state["data"])
    sample_gen.set_state(state["sample"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(config: Config) -> dict:
    """Train (or, with ``resume``, continue) a run; returns the history written to ``history.json``."""
    return _train(config, resume=False)


def _train(config: Config, resume: bool) -> dict:
    device = resolve_device(config.device)
    path = resolve_text(config.book, mirror=config.mirror)
    dataset = TextDataset(path, config.seq_length, config.valid_fraction, config.valid_max_chars)
    valid = dataset.valid_data().to(device)
    out = Path(config.out or ROOT / "runs" / "part2" / Path(config.book).stem)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"

    torch.manual_seed(config.seed)
    model = TextGenerationModel(dataset.vocab_size, config.hidden, config.num_layers, config.dropout).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.learning_rate_step, config.learning_rate_decay)
    data_gen = torch.Generator().manual_seed(config.seed)                    # batch offsets (CPU)
    sample_gen = torch.Generator(device=device).manual_seed(config.seed + 1)  # sampling
    history = {"config": asdict(config), "text": str(path), "vocab": dataset.vocab, "chars": len(dataset.data),
               "valid_span": list(dataset.valid_span), "environment": environment(),
               "step": [], "loss": [], "accuracy": [], "lr": [], "eval": [], "samples": [], "wall_time_s": 0.0}
    start = 0
    if resume:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # RNG states stay CPU tensors
        changed = [k for k in RESUME_KEYS if saved["config"][k] != asdict(config)[k]]
        if changed:
            raise ValueError(f"--resume: settings {changed} differ from the checkpoint's; only --steps may change")
        if saved["step"] > config.steps:
            raise ValueError(f"--resume: the checkpoint is at step {saved['step']}, past --steps {config.steps}")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"], data_gen, sample_gen, device)
        history = saved["history"]
        history["config"]["steps"] = config.steps
        start = saved["step"]

    def checkpoint(step: int) -> None:
        atomic_torch_save(checkpoint_path, {
            "step": step, "config": asdict(config), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(data_gen, sample_gen, device), "history": history})
        atomic_write_json(out / "history.json", history)

    def observe(step: int, bar) -> None:
        """Samples and validation loss at their scheduled steps (they use only sample_gen)."""
        if config.eval_every and step % config.eval_every == 0 and len(valid) > config.seq_length:
            loss = validation_loss(model, valid, config.seq_length)
            history["eval"].append({"step": step, "valid_loss": round(loss, 5)})
            bar.write(f"step {step}: validation loss {loss:.3f} nats/char")
        if config.sample_every and step % config.sample_every == 0:
            for temperature in config.temperatures:
                first = random_first_characters(dataset.vocab, config.samples_per_temperature, sample_gen)
                texts = sample_text(model, dataset.vocab, first, config.sample_length - 1, temperature, sample_gen)
                history["samples"].append({"step": step, "temperature": temperature, "texts": texts})
                bar.write(f"step {step} tau={temperature}: " + " | ".join(repr(t) for t in texts))

    bar = tqdm(total=config.steps, initial=start, desc=f"{Path(config.book).stem}", disable=not config.progress,
               dynamic_ncols=True)
    tic = time.perf_counter()
    if start == 0:
        observe(0, bar)
    model.train()
    for step in range(start + 1, config.steps + 1):
        inputs, targets = (t.to(device) for t in dataset.random_batch(config.batch_size, data_gen))
        loss, logits = train_step(model, optimizer, inputs, targets, config.max_norm)
        history["lr"].append(scheduler.get_last_lr()[0])
        scheduler.step()
        accuracy = (logits.argmax(-1) == targets).float().mean().item()
        history["step"].append(step)
        history["loss"].append(round(loss.item(), 5))
        history["accuracy"].append(round(accuracy, 5))
        bar.update(1)
        if step % config.print_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{accuracy:.3f}")
        observe(step, bar)
        if step % config.checkpoint_every == 0 or step == config.steps:
            history["wall_time_s"] += time.perf_counter() - tic
            tic = time.perf_counter()
            checkpoint(step)
    bar.close()
    return history


def resume(config: Config) -> dict:
    """Continue the run in ``config.out`` from its checkpoint up to ``config.steps``."""
    return _train(config, resume=True)


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(defaults).items():
        if name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        elif name == "temperatures":
            parser.add_argument("--temperatures", type=float, nargs="+", default=value,
                                help="temperatures of the periodic samples (0 is greedy)")
        elif name == "mirror":
            parser.add_argument("--mirror", default=None, help="a folder with the book files (no download)")
        else:
            parser.add_argument(f"--{name}", type=type(value), default=value, help=f"(default: {value!r})")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    args = vars(parser.parse_args(argv))
    resume_run = args.pop("resume")
    return Config(**args), resume_run


def main(argv: list[str] | None = None) -> int:
    config, resume_run = parse_args(argv)
    use_default_threads(THREADS)
    try:
        history = _train(config, resume=resume_run)
    except BookDownloadError as exc:  # offline without a mirror: one line that says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tail = history["loss"][-100:]
    print(f"done: {len(history['loss'])} steps, last-100 mean loss {sum(tail) / max(len(tail), 1):.3f}, "
          f"{history['wall_time_s']:.0f} s; files in {config.out or ROOT / 'runs' / 'part2' / Path(config.book).stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
