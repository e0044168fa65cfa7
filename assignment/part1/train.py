"""Train a VanillaRNN or an LSTM on the palindrome task.

    python -m assignment.part1.train --model lstm --input-length 15 --seed 0
    python -m assignment.part1.train --resume --model lstm --input-length 15 --steps 20000   # continue it

``--input-length`` is the number of digits the model sees; the palindromes are one digit longer.
The defaults (``--help`` lists them) are the settings of 2019: RMSprop, and the gradient's global
norm clipped. Accuracy is measured on held-out palindromes (``--eval-batches`` batches drawn once
from a stream with another seed, the same at every evaluation), not only on the training batch.
The result file (JSON) records every setting, the seed, the versions and the curves. Beside it,
``<result>.ckpt.pt`` holds the checkpoint (written atomically every ``--checkpoint-every`` steps, at
the end and at Ctrl-C): ``--resume`` continues from it with its settings (type only what changes,
such as ``--steps``) and gives the numbers of an uninterrupted run.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..cli import (Interrupted, StopFlag, UserError, check, check_device, check_memory, check_writable, command,
                   load_checkpoint, parse, resumed_config, run, setting)
from ..common import atomic_torch_save, atomic_write_json, provenance, seed_everything
from .models import MODELS
from .palindrome import NUM_CLASSES, palindrome_batch

HELD_OUT_SEED_OFFSET = 1_000_003  # the held-out stream never shares a seed with a training stream


@dataclass
class Settings:
    """The training settings of every Part 1 run and their defaults: the only place they are written.

    ``Config`` adds which run; a sweep adds which runs.
    """
    num_hidden: int = setting(128, "hidden units", at_least=1)
    batch_size: int = setting(128, "palindromes per step", at_least=1)
    learning_rate: float = setting(1e-3, "RMSprop's learning rate", above=0)
    train_steps: int = setting(10_000, "training steps", at_least=1, flag="steps", changeable=True)
    max_norm: float = setting(10.0, "the gradient is clipped to this global norm", above=0)
    one_hot: bool = setting(False, "one-hot digits (input_dim 10) instead of scalars")
    eval_every: int = setting(100, "held-out accuracy every this many steps", at_least=1)
    eval_batches: int = setting(4, "held-out batches (each of --batch-size palindromes)", at_least=1)
    device: str = setting("auto", "auto (CUDA when available), cpu or cuda", changeable=True)
    checkpoint_every: int = setting(500, "steps between checkpoints (commands only)", at_least=1, changeable=True)


@dataclass
class Config(Settings):
    """Every setting of one Part 1 run: the training settings, and which model, input length and seed."""
    model: str = setting("rnn", "the network", choices=tuple(MODELS))
    input_length: int = setting(10, "digits the model sees (T); the palindrome has T + 1 digits", at_least=1)
    seed: int = setting(0, "seed of the initial weights and of the training batches", at_least=0)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               max_norm: float) -> tuple[float, float]:
    """One update on the batch (x [B, T], y [B]); returns (loss, accuracy) on that batch as floats.

    Compute the logits, the mean cross-entropy of the last step, the gradients; clip the gradients'
    global norm at ``max_norm`` with ``torch.nn.utils.clip_grad_norm_``; take one optimizer step.
    Clear the old gradients first.
    """
    raise NotImplementedError("Question 1.2: implement train_step")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows whose largest logit is the target class."""
    return (logits.argmax(dim=1) == y).float().mean().item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Mean loss and accuracy over held-out batches."""
    model.eval()
    losses, accuracies = zip(*((F.cross_entropy(model(x), y).item(), accuracy(model(x), y)) for x, y in batches))
    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)


def memory_estimate(config: Config) -> int:
    """Bytes of the activations one step keeps for backpropagation (about 3 [B, H] floats per RNN
    step, 10 per LSTM step) and of the held-out batches."""
    per_step = (3 if config.model == "rnn" else 10) * config.batch_size * config.num_hidden
    inputs = config.batch_size * config.input_length * (NUM_CLASSES if config.one_hot else 1)
    return 4 * (per_step * config.input_length + inputs * (1 + config.eval_batches))


CHECKPOINT_KEYS = ("config", "step", "model", "optimizer", "generator", "curve", "initial", "wall_time_s")


def train(config: Config | None = None, *, progress: bool = True, save_model: str | os.PathLike | None = None,
          checkpoint: str | os.PathLike | None = None, resume: bool = False, stop=None, **settings) -> dict:
    """Train one model and return its result record (settings, provenance and curves).

    ``train(model="lstm", input_length=15)`` or ``train(Config(...))``: the keywords are the fields of
    ``Config``, whose defaults they override. With ``save_model``, the initial and the trained
    weights are also saved there (``torch.save`` of ``{"initial": state_dict, "trained": state_dict}``;
    read it with ``torch.load(path, weights_only=True)``).
    With ``checkpoint`` (a path), the run is saved there every ``checkpoint_every`` steps, at the end,
    and when ``stop`` turns true (``cli.StopFlag``, Ctrl-C), after which ``cli.Interrupted`` is
    raised; with ``resume``, the run continues from that checkpoint, to the same numbers as an
    uninterrupted run.
    """
    config = check(replace(config or Config(), **settings))
    dev = check_device(config.device)
    check_memory(memory_estimate(config), f"--batch-size {config.batch_size} (x {config.input_length} steps)", dev)
    started = time.perf_counter()
    seed_everything(config.seed)
    net = MODELS[config.model](input_dim=NUM_CLASSES if config.one_hot else 1, num_hidden=config.num_hidden,
                               num_classes=NUM_CLASSES).to(dev)
    initial = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.RMSprop(net.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)  # the batches of palindrome_stream(..., seed)
    held_out_generator = torch.Generator().manual_seed(config.seed + HELD_OUT_SEED_OFFSET)
    held_out = [tuple(t.to(dev) for t in palindrome_batch(config.batch_size, config.input_length, held_out_generator,
                                                           config.one_hot)) for _ in range(config.eval_batches)]
    curve = {"step": [], "train_loss": [], "train_accuracy": [], "eval_loss": [], "eval_accuracy": []}
    start, before = 0, 0.0
    if resume:
        saved = load_checkpoint(checkpoint, CHECKPOINT_KEYS)
        resumed_config(Config, saved["config"], config, {f.name for f in fields(Config)})  # names what differs
        if saved["step"] > config.train_steps:
            raise UserError(f"--resume: {checkpoint} is at step {saved['step']}, past --steps {config.train_steps}")
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        curve, start, before, initial = saved["curve"], saved["step"], saved["wall_time_s"], saved["initial"]

    def save(step: int) -> None:
        atomic_torch_save(checkpoint, {
            "config": asdict(config), "step": step, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "curve": curve, "initial": initial,
            "wall_time_s": before + time.perf_counter() - started})

    bar = tqdm(range(start + 1, config.train_steps + 1), initial=start, total=config.train_steps,
               desc=f"{config.model} T={config.input_length}", disable=not progress, mininterval=1)
    for step in bar:
        x, y = (t.to(dev) for t in palindrome_batch(config.batch_size, config.input_length, generator, config.one_hot))
        loss, acc = train_step(net, optimizer, x, y, config.max_norm)
        if step % config.eval_every == 0 or step == config.train_steps:
            eval_loss, eval_acc = evaluate(net, held_out)
            for key, value in zip(curve, (step, loss, acc, eval_loss, eval_acc)):
                curve[key].append(round(value, 5) if isinstance(value, float) else value)
            bar.set_postfix(loss=f"{loss:.3f}", held_out_acc=f"{eval_acc:.3f}")
        stopping = bool(stop)  # read once: a Ctrl-C between two reads would skip the checkpoint
        if checkpoint is not None and (step % config.checkpoint_every == 0 or step == config.train_steps or stopping):
            save(step)
        if stopping:
            bar.close()
            raise Interrupted(f"checkpoint at step {step} in {checkpoint}")
    if save_model is not None:
        atomic_torch_save(save_model, {"initial": initial,
                                       "trained": {k: v.cpu() for k, v in net.state_dict().items()}})
    record = {**provenance(asdict(config), started), "device": str(dev),
              "final_eval_accuracy": curve["eval_accuracy"][-1], "best_eval_accuracy": max(curve["eval_accuracy"]),
              "curve": curve}
    record["wall_time_s"] = round(before + record["wall_time_s"], 2)
    return record


def default_out(config: Config) -> Path:
    return Path("results/part1") / f"{config.model}_T{config.input_length}_seed{config.seed}.json"


def checkpoint_path(out: Path) -> Path:
    """The checkpoint beside a result file: rnn_T10_seed0.json -> rnn_T10_seed0.ckpt.pt."""
    return out.with_suffix(".ckpt.pt")


def main(argv: list[str] | None = None) -> dict:
    def extra(p):
        p.add_argument("--out", type=Path, default=None,
                       help="result file (default: results/part1/<model>_T<input-length>_seed<seed>.json)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                       help="a progress bar (default: True)")

    config, given, options = parse(Config, argv, __doc__, extra)
    out = check_writable(options.get("out") or default_out(config))
    ckpt = checkpoint_path(out)
    if options["resume"]:
        config = resumed_config(Config, load_checkpoint(ckpt, CHECKPOINT_KEYS)["config"], config, given)
    with StopFlag() as stop:
        try:
            record = train(config, progress=options["progress"], checkpoint=ckpt, resume=options["resume"], stop=stop)
        except Interrupted as exc:
            raise Interrupted(f"{exc}; resume with: "
                              f"{command(__spec__.name, config, set(), ['--resume', '--out', str(out)])}") from None
    atomic_write_json(out, record)
    print(f"held-out accuracy {record['final_eval_accuracy']:.3f} (best {record['best_eval_accuracy']:.3f}); "
          f"wrote {out}")
    return record


if __name__ == "__main__":
    raise SystemExit(run(main))
