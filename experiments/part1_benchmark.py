"""How fast is the batched sweep? Per-step times of separate runs and of the batched trainer.

    OMP_NUM_THREADS=1 python -m experiments.part1_benchmark --threads 1 --out data/part1/benchmark_cpu.json

For each model (RNN, LSTM) and all input lengths at once (default 5-20, one seed, the 2019 sizes),
prints in one run:

* the time of one training step of all lengths as separate runs (``solutions.part1.train.train_step``
  on each reference model in turn, the sum over lengths);
* the time of one step of the batched trainer (``experiments.part1_sweep``) that skips padding,
  with its hand-written backward pass (``StackedRecurrence``, the sweep's default) and step by step
  under autograd, with the masked update over padding instead, and (``--compile``) the autograd
  version under torch.compile;
* their ratio, and the achieved GFLOP/s: the matrix-product FLOPs of forward and backward over
  the step time;
* the machine's own batched-matrix-product rate on the shape of the recurrent product of that
  step, [M, B, H] @ [M, H, G*H] (G = 1 for the RNN, 4 for the LSTM).

All of these are timed in turns (one call of each per round, the median over ``--repeats`` rounds),
so that a machine whose speed drifts while the benchmark runs slows them all alike. On a CPU shared
with other work, wall time measures the sharing as much as the code: the CPU also
reports process time (``time.process_time``, the core-seconds the process itself used), and with one
thread that is the step's time on a core of its own. Both are recorded (``*_s`` and ``*_cpu_s``).

FLOPs are counted for the matrix products a model needs, whoever computes them. A model of input
length T does, per training step, in the forward pass the input product (2 B d G H per time step),
the recurrent product from its second step on (2 B H G H; its first step has h_0 = 0) and the
output layer (2 B H K); the backward pass does the same products once more for the weight
gradients and once more for the gradient with respect to h (not for the input, whose gradient
nobody needs): 3 (T - 1) 2BHGH + 2 T 2BdGH + 3 2BHK in all. For all 16 lengths of the LSTM that is
9.3 GFLOP. The separate runs compute the zero products of h_0 as well; the batched trainer skips
them, and the count includes neither. The elementwise work (gates, loss, clipping, RMSprop) is not
counted, so the GFLOP/s understate the real work a little.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from solutions.common import atomic_write_json, provenance, resolve_device, seed_everything
from solutions.part1.models import MODELS
from solutions.part1.palindrome import NUM_CLASSES, palindrome_batch
from solutions.part1.train import train_step

from .part1_sweep import GATES, BatchedTrainer, batch_of_all, initial_models, model_slots, parse_lengths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_times(fns: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process) time in seconds of each fn(), after warm-up, synchronising the device around each call.

    The functions take turns (one call of each per round), so a machine that speeds up or slows down
    while the benchmark runs (a shared CPU does) changes all of them alike and their ratios stay fair.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def median_time(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median (wall, process) time of fn() alone (see ``median_times``)."""
    return median_times({"fn": fn}, device, warmup, repeats)["fn"]


def step_flops(kind: str, lengths: list[int], batch: int, hidden: int, input_dim: int = 1) -> float:
    """Matrix-product FLOPs that one forward and backward pass of all models needs (see the module doc)."""
    gh = len(GATES[kind]) * hidden
    recurrent, inputs, output = 2 * batch * hidden * gh, 2 * batch * input_dim * gh, 2 * batch * hidden * NUM_CLASSES
    return float(sum(3 * (t - 1) * recurrent + 2 * t * inputs + 3 * output for t in lengths))


def matmul_probe(m: int, batch: int, hidden: int, gh: int, device: torch.device):
    """(run, flops): about 50 ms of torch.bmm on [m, batch, hidden] @ [m, hidden, gh], random float32 data."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, batch, hidden, generator=g).to(device)
    b = torch.randn(m, hidden, gh, generator=g).to(device)
    out = torch.empty(m, batch, gh, device=device)
    inner = 1

    def run():
        for _ in range(inner):
            torch.bmm(a, b, out=out)
    inner = max(1, round(0.05 / max(median_time(run, device, 1, 3)[0], 1e-7)))  # runs of about 50 ms
    return run, 2.0 * m * batch * hidden * gh * inner


def summarise(row: dict, flops: float, variants: list[str], clock: str) -> None:
    """Add the best batched variant, its GFLOP/s, share of the bmm rate and speed-up for one clock.

    ``clock`` is "" for wall time (keys like ``batched_s``) or "_cpu" for process time (``batched_cpu_s``).
    """
    best = min(variants, key=lambda k: row[f"{k}{clock}_s"])
    row["best_batched" + clock] = best
    row["achieved_gflops" + clock] = round(flops / max(row[f"{best}{clock}_s"], 1e-9) / 1e9, 1)
    row["share_of_matmul_rate" + clock] = round(row["achieved_gflops" + clock] / max(row["matmul_gflops" + clock], 1e-9), 3)
    if f"separate{clock}_s" in row:
        row["speedup_vs_separate" + clock] = round(row[f"separate{clock}_s"] / max(row[f"{best}{clock}_s"], 1e-9), 2)


def benchmark_model(kind: str, lengths: list[int], seeds: list[int], hidden: int, batch: int, device: torch.device,
                    warmup: int, repeats: int, compile: bool, separate: bool) -> dict:
    slots = model_slots(lengths, seeds)
    flops = step_flops(kind, [t for t, _ in slots], batch, hidden)
    generators = [torch.Generator().manual_seed(s) for _, s in slots]
    x, y = batch_of_all(slots, generators, batch, False, torch.float32, device)
    row = {"model": kind, "models": len(slots), "gflop_per_step": round(flops / 1e9, 3)}
    fns = {}  # name -> one training step (or the matmul probe), timed in turns

    if separate:  # one reference model per slot, each with its own optimiser, as train() runs them
        nets = []
        for t, s in slots:
            seed_everything(s)
            net = MODELS[kind](num_hidden=hidden).to(device)
            xb, yb = palindrome_batch(batch, t, torch.Generator().manual_seed(s))
            nets.append((net, torch.optim.RMSprop(net.parameters(), lr=1e-3), xb.to(device), yb.to(device)))
        fns.update({f"separate/{i}": lambda n=n: train_step(n[0], n[1], n[2], n[3], 10.0) for i, n in enumerate(nets)})
    variants = {"batched": dict(skip_padding=True), "batched_autograd": dict(skip_padding=True, fused=False),
                "batched_masked": dict(skip_padding=False)}
    if compile:
        variants["batched_compiled"] = dict(skip_padding=True, fused=False, compile=True)
    for name, options in variants.items():
        trainer = BatchedTrainer(initial_models(kind, slots, 1, hidden).to(device), **options)
        if options.get("compile"):  # compile before the timed rounds
            for _ in range(2):
                trainer.step(x, y)
        fns[name] = lambda trainer=trainer: trainer.step(x, y)
    fns["matmul"], matmul_flops = matmul_probe(len(slots), batch, hidden, len(GATES[kind]) * hidden, device)
    timed = median_times(fns, device, warmup, repeats)  # all in turns: see median_times
    if separate:
        timed["separate"] = tuple(map(sum, zip(*(timed.pop(f"separate/{i}") for i in range(len(nets))))))
    rate = tuple(matmul_flops / max(t, 1e-9) / 1e9 for t in timed.pop("matmul"))
    clocks = {"": 0, "_cpu": 1} if device.type == "cpu" else {"": 0}  # process time means nothing on a GPU
    for clock, i in clocks.items():
        row.update({f"{name}{clock}_s": round(t[i], 5) for name, t in timed.items()})
        row["matmul_gflops" + clock] = round(rate[i], 1)
        summarise(row, flops, list(variants), clock)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["rnn", "lstm"])
    p.add_argument("--input-lengths", nargs="+", default=["5-20"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="one slot per (length, seed)")
    p.add_argument("--num-hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time the batched step under torch.compile")
    p.add_argument("--no-separate", action="store_true", help="skip the separate runs (slow)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (record it!)")
    p.add_argument("--out", type=Path, default=None, help="write the numbers and their provenance here (JSON)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    device = resolve_device(args.device)
    lengths = parse_lengths(args.input_lengths)
    rows = [benchmark_model(kind, lengths, args.seeds, args.num_hidden, args.batch_size, device, args.warmup,
                            args.repeats, args.compile, not args.no_separate) for kind in args.models]
    header = ("model", "models", "gflop_per_step", "separate", "batched", "batched_autograd", "batched_masked",
              "batched_compiled", "speedup_vs_separate", "achieved_gflops", "matmul_gflops", "share_of_matmul_rate")
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    timed = ("separate", "batched", "batched_autograd", "batched_masked", "batched_compiled")

    def key(column: str, clock: str) -> str:
        if column in ("model", "models", "gflop_per_step"):
            return column
        return f"{column}{clock}_s" if column in timed else column + clock

    for clock, name in (("", "wall"), ("_cpu", "process")):
        if f"batched{clock}_s" in rows[0]:
            print(f"{name} time: seconds per training step of all models")
            print(" ".join(f"{h:>12.12}" for h in header))
            for row in rows:
                print(" ".join(f"{str(row.get(key(h, clock), '-')):>12.12}" for h in header))
    record = {**provenance({k: v for k, v in vars(args).items() if k != "out"} | {"input_lengths": lengths}, started),
              "device": str(device), "rows": rows}
    if args.out is not None:
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
