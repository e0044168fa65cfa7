"""Train a VanillaRNN or an LSTM on the palindrome task.

    python -m assignment.part1.train --model lstm --input-length 15 --seed 0

``--input-length`` is the number of digits the model sees; the palindromes are one digit longer.
The defaults are those of 2019: hidden 128, batch 128, RMSprop with learning rate 1e-3, 10,000
steps, gradient norm clipped at 10. Accuracy is measured on held-out palindromes (four batches drawn
once from a stream with another seed, the same at every evaluation), not only on the training batch. The result file (JSON) records every setting, the
seed, the versions and the curves.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..common import atomic_torch_save, atomic_write_json, provenance, resolve_device, seed_everything
from .models import MODELS
from .palindrome import NUM_CLASSES, palindrome_stream

HELD_OUT_SEED_OFFSET = 1_000_003  # the held-out stream never shares a seed with a training stream


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


def train(model: str = "rnn", input_length: int = 10, num_hidden: int = 128, batch_size: int = 128,
          learning_rate: float = 1e-3, train_steps: int = 10_000, max_norm: float = 10.0, seed: int = 0,
          one_hot: bool = False, eval_every: int = 100, eval_batches: int = 4, device: str = "auto",
          progress: bool = True, save_model: str | os.PathLike | None = None) -> dict:
    """Train one model and return its result record (settings, provenance and curves).

    With ``save_model``, the initial and the trained weights are also saved there (``torch.save`` of
    ``{"initial": state_dict, "trained": state_dict}``; read it with ``torch.load(path, weights_only=True)``).
    """
    settings = {k: v for k, v in locals().items() if k not in ("progress", "save_model")}
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    if eval_every < 1 or train_steps < 1:
        raise ValueError("train_steps and eval_every must be positive")
    started = time.perf_counter()
    dev = resolve_device(device)
    seed_everything(seed)
    net = MODELS[model](input_dim=NUM_CLASSES if one_hot else 1, num_hidden=num_hidden, num_classes=NUM_CLASSES).to(dev)
    initial = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.RMSprop(net.parameters(), lr=learning_rate)
    stream = palindrome_stream(input_length, batch_size, seed=seed, one_hot=one_hot)
    held_out = palindrome_stream(input_length, batch_size, seed=seed + HELD_OUT_SEED_OFFSET, one_hot=one_hot)
    held_out = [tuple(t.to(dev) for t in next(held_out)) for _ in range(eval_batches)]

    curve = {"step": [], "train_loss": [], "train_accuracy": [], "eval_loss": [], "eval_accuracy": []}
    bar = tqdm(range(1, train_steps + 1), desc=f"{model} T={input_length}", disable=not progress, mininterval=1)
    for step in bar:
        x, y = (t.to(dev) for t in next(stream))
        loss, acc = train_step(net, optimizer, x, y, max_norm)
        if step % eval_every == 0 or step == train_steps:
            eval_loss, eval_acc = evaluate(net, held_out)
            for key, value in zip(curve, (step, loss, acc, eval_loss, eval_acc)):
                curve[key].append(round(value, 5) if isinstance(value, float) else value)
            bar.set_postfix(loss=f"{loss:.3f}", held_out_acc=f"{eval_acc:.3f}")
    if save_model is not None:
        atomic_torch_save(save_model, {"initial": initial, "trained": {k: v.cpu() for k, v in net.state_dict().items()}})
    return {**provenance(settings, started), "device": str(dev),
            "final_eval_accuracy": curve["eval_accuracy"][-1], "best_eval_accuracy": max(curve["eval_accuracy"]),
            "curve": curve}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="rnn")
    p.add_argument("--input-length", type=int, default=10,
                   help="digits the model sees (T); the palindrome has T + 1 digits (default 10)")
    p.add_argument("--num-hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--train-steps", type=int, default=10_000)
    p.add_argument("--max-norm", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one-hot", action="store_true", help="one-hot digits (input_dim 10) instead of scalars")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--out", type=Path, default=None,
                   help="result file (default results/part1/<model>_T<input-length>_seed<seed>.json)")
    args = p.parse_args(argv)
    out = args.out or Path("results/part1") / f"{args.model}_T{args.input_length}_seed{args.seed}.json"
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    record = train(**settings)
    atomic_write_json(out, record)
    print(f"held-out accuracy {record['final_eval_accuracy']:.3f} (best {record['best_eval_accuracy']:.3f}); wrote {out}")
    return record


if __name__ == "__main__":
    main()
