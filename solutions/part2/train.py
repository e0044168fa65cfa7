"""Train the character LSTM on a book: ``python -m solutions.part2.train --book sherlock_holmes``.

    python -m solutions.part2.train --book communist_manifesto --steps 10000 --seed 0 --device cpu
    python -m solutions.part2.train --book my_novel.txt --steps 2000     # any UTF-8 text file
    python -m solutions.part2.train --book sherlock_holmes --steps 20000 --resume   # continue a run

The defaults (``--help`` lists them) are those of 2019, and of Karpathy's char-rnn, where they
come from: a stacked LSTM trained by RMSprop, with a learning rate that decays in steps (StepLR)
and the gradient's global norm clipped. RMSprop is what the 2019 code and char-rnn used; the
course keeps it so that its numbers compare with theirs.

The run folder (``--out``) receives ``checkpoint.pt`` (model,
optimiser, scheduler, every random generator and the history, written atomically) and
``history.json`` (losses, accuracies, validation losses and samples). ``--resume`` continues from
the checkpoint and gives exactly the numbers an uninterrupted run with the same seed gives.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..cli import (Interrupted, StopFlag, UserError, check, check_device, check_memory, check_writable, command,
                   load_checkpoint, parse, resumed_config, run, setting)
from ..common import atomic_torch_save, atomic_write_json, environment, use_default_threads
from .books import ROOT, BookDownloadError, book_names, resolve_text
from .dataset import TextDataset
from .model import TextGenerationModel
from .sampling import random_first_characters, sample_text


# Torch threads of the training commands unless $OMP_NUM_THREADS is set: this model trained 1.4-1.7x
# faster with two than with one on a 2-core machine (common.py's default, one, suits Part 1).
THREADS = 2


def temperature(word: str) -> float:
    """A sampling temperature: 0 (greedy) or at least 1e-3 (below that softmax(logits / tau) overflows,
    and sampling is greedy in all but name)."""
    tau = float(word)
    if tau != 0 and not 1e-3 <= tau < float("inf"):
        raise argparse.ArgumentTypeError(f"{word} is not 0 (greedy) or a finite number of at least 0.001")
    return tau


@dataclass
class Config:
    """Every setting of a Part 2 run and its default: the only place they are written."""
    book: str = setting("sherlock_holmes", "a book name from data/books.json or a path to a .txt file")
    seq_length: int = setting(30, "characters per training sequence", at_least=1)
    hidden: int = setting(128, "LSTM units per layer", at_least=1)
    num_layers: int = setting(2, "LSTM layers", at_least=1)
    dropout: float = setting(0.0, "dropout between the layers", at_least=0, below=1)
    batch_size: int = setting(64, "sequences per step", at_least=1)
    learning_rate: float = setting(2e-3, "RMSprop's learning rate", above=0)
    learning_rate_decay: float = setting(0.96, "the learning rate is multiplied by this ...", above=0, at_most=1)
    learning_rate_step: int = setting(5000, "... every this many steps (StepLR)", at_least=1)
    max_norm: float = setting(5.0, "the gradient is clipped to this global norm", above=0)
    steps: int = setting(10000, "training steps", at_least=1, changeable=True)
    seed: int = setting(0, "seed of the weights, the batches and the samples", at_least=0)
    device: str = setting("cpu", "auto (CUDA when available), cpu or cuda", changeable=True)
    print_every: int = setting(5, "progress-bar update of loss and accuracy", at_least=1, changeable=True)
    sample_every: int = setting(1000, "samples at steps 0, sample_every, 2 * sample_every, ... (0: none)", at_least=0)
    sample_length: int = setting(30, "characters per periodic sample, the first one included", at_least=1)
    samples_per_temperature: int = setting(3, "samples per temperature", at_least=1)
    temperatures: list[float] = setting([0.0, 0.5, 1.0, 2.0], "temperatures of the periodic samples (0 is greedy)",
                                        parse=temperature)
    eval_every: int = setting(1000, "validation loss at these steps (0: never)", at_least=0)
    valid_fraction: float = setting(0.1, "held out from the middle of the text ...", at_least=0, below=1)
    valid_max_chars: int = setting(50_000, "... at most this many characters", at_least=0)
    checkpoint_every: int = setting(1000, "steps between checkpoints", at_least=1, changeable=True)
    out: str = setting("", "run folder (default runs/part2/<book>)", changeable=True)
    mirror: str | None = setting(None, "a folder with the book files (no download; see books.py)", changeable=True)
    progress: bool = setting(True, "a progress bar", changeable=True)


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
    ### BEGIN SOLUTION Question 2.1 (a): implement the training step
    logits, _ = model(inputs)  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.detach(), logits.detach()
    ### END SOLUTION


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
    saved = load_checkpoint(path, ("vocab", "config", "model"), map_location=device)
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


CHECKPOINT_KEYS = ("step", "config", "model", "optimizer", "scheduler", "rng", "history")


def run_folder(config: Config) -> Path:
    return Path(config.out or ROOT / "runs" / "part2" / Path(config.book).stem)


def memory_estimate(config: Config, vocab_size: int = 100) -> int:
    """Bytes of what one step keeps for backpropagation: about 10 floats per unit, layer and character
    in the LSTM and 3 per class for the logits."""
    return 4 * config.batch_size * config.seq_length * (10 * config.hidden * config.num_layers + 3 * vocab_size)


def train(config: Config, stop=None) -> dict:
    """Train (or, with ``resume``, continue) a run; returns the history written to ``history.json``.

    ``stop`` (``cli.StopFlag``, Ctrl-C): when it turns true, the run writes its checkpoint and raises
    ``cli.Interrupted``.
    """
    return _train(config, resume=False, stop=stop)


def _train(config: Config, resume: bool, stop=None) -> dict:
    check(config)  # every setting, before any data is read
    if config.book not in book_names() and not Path(config.book).is_file():
        raise UserError(f"--book {config.book} is neither a book ({', '.join(book_names())}) nor a text file")
    if config.mirror and not Path(config.mirror).is_dir():
        raise UserError(f"--mirror {config.mirror} is not a folder; give the folder that holds the book files")
    device = check_device(config.device)
    out = check_writable(run_folder(config), folder=True)
    check_memory(memory_estimate(config), f"--batch-size {config.batch_size} x --seq-length {config.seq_length}",
                 device)
    checkpoint_path = out / "checkpoint.pt"
    saved = None
    if resume:
        saved = load_checkpoint(checkpoint_path, CHECKPOINT_KEYS)  # RNG states stay CPU tensors
        resumed_config(Config, saved["config"], config, {f.name for f in fields(Config)})  # names what differs
        if saved["step"] > config.steps:
            raise UserError(f"--resume: the checkpoint is at step {saved['step']}, past --steps {config.steps}")
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_text(config.book, mirror=config.mirror)
    dataset = TextDataset(path, config.seq_length, config.valid_fraction, config.valid_max_chars)
    valid = dataset.valid_data().to(device)

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
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"], data_gen, sample_gen, device)
        history = saved["history"]
        history["config"] = asdict(config)  # the settings that may change, as they are now
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
        if stop:
            history["wall_time_s"] += time.perf_counter() - tic
            checkpoint(step)
            bar.close()
            raise Interrupted(f"checkpoint at step {step} in {checkpoint_path}")
    bar.close()
    return history


def resume(config: Config, stop=None) -> dict:
    """Continue the run in ``config.out`` from its checkpoint up to ``config.steps``."""
    return _train(config, resume=True, stop=stop)


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool, set[str]]:
    """The command line -> (settings, --resume, the names of the settings typed)."""
    config, given, options = parse(Config, argv, __doc__, lambda p: p.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint, with its settings"))
    return config, options["resume"], given


def main(argv: list[str] | None = None) -> dict:
    config, resume_run, given = parse_args(argv)
    use_default_threads(THREADS)
    check(config)
    if resume_run:  # the checkpoint's settings, and those typed that may change
        saved = load_checkpoint(run_folder(config) / "checkpoint.pt", CHECKPOINT_KEYS)
        config = resumed_config(Config, saved["config"], config, given)
    try:
        with StopFlag() as stop:
            history = _train(config, resume=resume_run, stop=stop)
    except BookDownloadError as exc:  # offline without a mirror: one line that says what to do
        raise UserError(str(exc)) from None
    except Interrupted as exc:
        again = command(__spec__.name, config, {"book", "out"} & given, ["--resume"])
        raise Interrupted(f"{exc}; resume with: {again}") from None
    tail = history["loss"][-100:]
    print(f"done: {len(history['loss'])} steps, last-100 mean loss {sum(tail) / len(tail):.3f}, "
          f"{history['wall_time_s']:.0f} s; files in {run_folder(config)}")
    return history


if __name__ == "__main__":
    raise SystemExit(run(main))
