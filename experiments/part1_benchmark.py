"""How fast is the batched sweep? Per-step times of separate runs and of the batched trainer.

    OMP_NUM_THREADS=2 python -m experiments.part1_benchmark --threads 2 --workers 2 \
        --out data/part1/benchmark_cpu_2threads.json

For each model (RNN, LSTM) and all input lengths at once (by default the sweep's, ``--help``),
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
  step, [M, B, H] @ [M, H, G*H] (G = 1 for the RNN, 4 for the LSTM);
* with ``--workers N``, the separate runs, the batched trainer and the matmul probe once more,
  with the models dealt out to N processes of threads // N threads each (as ``part1_sweep
  --workers`` trains them). On a small CPU the separate runs gain the most from this (their
  products are too small to keep two threads busy), so it is the stronger baseline: the speed-up
  is taken against the faster of the two separate timings, and the share of the matmul rate
  against the higher of the two probe rates.

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

import multiprocessing
import statistics
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields

import torch

from solutions.cli import check, check_device, parse, run, setting
from solutions.common import atomic_write_json, provenance, seed_everything
from solutions.part1.models import MODELS
from solutions.part1.palindrome import NUM_CLASSES, palindrome_batch
from solutions.part1.stacked import GATES, BatchedTrainer, batch_of_all, initial_models, model_slots
from solutions.part1.sweep import parse_lengths
from solutions.part1.train import Settings, train_step

from .part1_sweep import SweepConfig, balanced_shards


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Elsewhere(float):
    """Process time (seconds) that a timed function spent in other processes: its workers'."""


def median_times(fns: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process) time in seconds of each fn(), after warm-up, synchronising the device around each call.

    The functions take turns (one call of each per round), so a machine that speeds up or slows down
    while the benchmark runs (a shared CPU does) changes all of them alike and their ratios stay fair.
    A function whose work runs in other processes returns their process time as an ``Elsewhere``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall, cpu = {name: [] for name in fns}, {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            elsewhere = fn()
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0 + (elsewhere if isinstance(elsewhere, Elsewhere) else 0.0))
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


def summarise(row: dict, flops: float, variants: list[str], rates: list[str], clock: str) -> None:
    """Add the best batched variant, its GFLOP/s, share of the bmm rate and speed-up for one clock.

    ``clock`` is "" for wall time (keys like ``batched_s``) or "_cpu" for process time (``batched_cpu_s``).
    The batched trainer is measured against the best of the separate runs (one process, or as many
    worker processes as it had) and against the best matmul rate the machine showed (the same).
    """
    best = min(variants, key=lambda k: row[f"{k}{clock}_s"])
    machine = max(rates, key=lambda k: row[f"{k}_gflops{clock}"])
    row["best_batched" + clock], row["best_matmul" + clock] = best, machine
    row["achieved_gflops" + clock] = round(flops / max(row[f"{best}{clock}_s"], 1e-9) / 1e9, 1)
    rate = row[f"{machine}_gflops{clock}"]
    row["share_of_matmul_rate" + clock] = round(row["achieved_gflops" + clock] / max(rate, 1e-9), 3)
    separate = [k for k in ("separate", "separate_workers") if f"{k}{clock}_s" in row]
    if separate:
        baseline = min(separate, key=lambda k: row[f"{k}{clock}_s"])
        row["best_separate" + clock] = baseline
        row["speedup_vs_separate" + clock] = round(row[f"{baseline}{clock}_s"] / max(row[f"{best}{clock}_s"], 1e-9), 2)


VARIANTS = {"batched": dict(skip_padding=True), "batched_autograd": dict(skip_padding=True, fused=False),
            "batched_masked": dict(skip_padding=False),
            "batched_compiled": dict(skip_padding=True, fused=False, compile=True)}


def step_functions(kind: str, slots: list[tuple[int, int]], hidden: int, batch: int, device: torch.device,
                   variants: list[str], separate: bool) -> tuple[dict, float]:
    """({name: one training step of these models}, FLOPs of one matmul-probe call; the probe is "matmul").

    "separate/i" is a step of slot i's reference model with its own optimiser, as train() runs it;
    the variants are BatchedTrainer steps of all slots at once.
    """
    generators = [torch.Generator().manual_seed(s) for _, s in slots]
    x, y = batch_of_all(slots, generators, batch, False, torch.float32, device)
    fns = {}
    if separate:
        for i, (t, s) in enumerate(slots):
            seed_everything(s)
            net = MODELS[kind](input_dim=1, num_hidden=hidden).to(device)
            xb, yb = palindrome_batch(batch, t, torch.Generator().manual_seed(s))
            optimizer, xb, yb = torch.optim.RMSprop(net.parameters(), lr=Settings.learning_rate), xb.to(device), yb.to(device)
            fns[f"separate/{i}"] = lambda n=net, o=optimizer, xb=xb, yb=yb: train_step(n, o, xb, yb, Settings.max_norm)
    for name in variants:
        trainer = BatchedTrainer(initial_models(kind, slots, 1, hidden).to(device), **VARIANTS[name])
        if VARIANTS[name].get("compile"):  # compile before the timed rounds
            for _ in range(2):
                trainer.step(x, y)
        fns[name] = lambda trainer=trainer: trainer.step(x, y)
    fns["matmul"], matmul_flops = matmul_probe(len(slots), batch, hidden, len(GATES[kind]) * hidden, device)
    return fns, matmul_flops


def serve(conn, threads: int, *args) -> None:
    """A worker process: build ``step_functions(*args)``, then run the named ones on request.

    A request is a name; "separate" runs every "separate/i" in turn. The reply is the process time spent.
    """
    torch.set_num_threads(threads)
    fns, matmul_flops = step_functions(*args)
    conn.send(matmul_flops)
    while (name := conn.recv()) is not None:
        c0 = time.process_time()
        for key, fn in fns.items():
            if key == name or key.startswith(name + "/"):
                fn()
        conn.send(time.process_time() - c0)


@contextmanager
def worker_steps(workers: int, kind: str, slots: list[tuple[int, int]], hidden: int, batch: int, separate: bool):
    """({name + "_workers": one step of every worker at once}, FLOPs of one matmul-probe round, threads per worker).

    Each of ``workers`` processes (torch.get_num_threads() // workers threads, as ``part1_sweep
    --workers`` runs them) holds one shard of the models (``balanced_shards``). A timed function
    asks every worker for the same step and returns when all have answered, with their summed
    process time.
    """
    context = multiprocessing.get_context("spawn")
    threads = max(1, torch.get_num_threads() // workers)  # as part1_sweep.sweep_in_workers
    pipes, processes = [], []
    names = ["batched", "matmul"] + (["separate"] * separate)
    try:
        for shard in balanced_shards(slots, workers):
            parent, child = context.Pipe()
            proc = context.Process(target=serve, daemon=True, args=(
                child, threads, kind, shard, hidden, batch, torch.device("cpu"), ["batched"], separate))
            proc.start()
            pipes.append(parent)
            processes.append(proc)
        matmul_flops = sum(pipe.recv() for pipe in pipes)

        def every_worker(name: str) -> Elsewhere:
            for pipe in pipes:
                pipe.send(name)
            return Elsewhere(sum(pipe.recv() for pipe in pipes))
        yield {f"{name}_workers": lambda name=name: every_worker(name) for name in names}, matmul_flops, threads
    finally:
        for pipe in pipes:
            pipe.send(None)
        for proc in processes:
            proc.join(timeout=30)


def benchmark_model(kind: str, lengths: list[int], seeds: list[int], hidden: int, batch: int, device: torch.device,
                    warmup: int, repeats: int, compile: bool, separate: bool, workers: int = 1) -> dict:
    if workers > 1 and device.type != "cpu":
        raise ValueError(f"workers split the models over CPU processes; on {device} use workers=1")
    slots = model_slots(lengths, seeds)
    flops = step_flops(kind, [t for t, _ in slots], batch, hidden)
    row = {"model": kind, "models": len(slots), "gflop_per_step": round(flops / 1e9, 3)}
    variants = [name for name in VARIANTS if compile or not VARIANTS[name].get("compile")]
    fns, matmul_flops = step_functions(kind, slots, hidden, batch, device, variants, separate)
    with ExitStack() as stack:
        if workers > 1:
            more, workers_matmul_flops, threads = stack.enter_context(
                worker_steps(workers, kind, slots, hidden, batch, separate))
            fns.update(more)
            variants.append("batched_workers")
            row.update(workers=workers, threads_per_worker=threads)
        timed = median_times(fns, device, warmup, repeats)  # all in turns: see median_times
    if separate:
        timed["separate"] = tuple(map(sum, zip(*(timed.pop(f"separate/{i}") for i in range(len(slots))))))
    rates = {"matmul": tuple(matmul_flops / max(t, 1e-9) / 1e9 for t in timed.pop("matmul"))}
    if workers > 1:
        rates["matmul_workers"] = tuple(workers_matmul_flops / max(t, 1e-9) / 1e9 for t in timed.pop("matmul_workers"))
    clocks = {"": 0, "_cpu": 1} if device.type == "cpu" else {"": 0}  # process time means nothing on a GPU
    for clock, i in clocks.items():
        row.update({f"{name}{clock}_s": round(t[i], 5) for name, t in timed.items()})
        row.update({f"{name}_gflops{clock}": round(rate[i], 1) for name, rate in rates.items()})
        summarise(row, flops, variants, list(rates), clock)
    return row


@dataclass
class BenchmarkConfig(SweepConfig):
    """The sweep's settings that shape a step (their defaults), and how long to time it."""
    warmup: int = setting(2, "untimed steps before the timed ones", at_least=0)
    repeats: int = setting(5, "timed steps", at_least=1)
    separate: bool = setting(True, "also time the separate runs (slow)")
    out: str = setting("", "write the numbers and their provenance to this JSON file (empty: none)")


NOT_TIMED = ("learning_rate", "train_steps", "max_norm", "one_hot", "eval_every", "eval_batches", "checkpoint_every")


def main(argv: list[str] | None = None) -> dict:
    args, _, _ = parse(BenchmarkConfig, argv, __doc__, skip=NOT_TIMED)
    check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    device = check_device(args.device)
    lengths = parse_lengths(args.input_lengths)
    rows = [benchmark_model(kind, lengths, args.seeds, args.num_hidden, args.batch_size, device, args.warmup,
                            args.repeats, args.compile, args.separate, args.workers) for kind in args.models]
    workers = f"; {args.workers} worker processes of {rows[0].get('threads_per_worker')} thread(s)"
    print(f"device {device}, torch threads {torch.get_num_threads()}" + workers * (args.workers > 1))
    timed = ("separate", "separate_workers", "batched", "batched_workers", "batched_autograd", "batched_masked",
             "batched_compiled")
    derived = ("best_separate", "best_batched", "speedup_vs_separate", "achieved_gflops", "matmul_gflops",
               "matmul_workers_gflops", "best_matmul", "share_of_matmul_rate")
    for clock, name in (("", "wall"), ("_cpu", "process")):
        if f"batched{clock}_s" in rows[0]:
            print(f"{name} time: seconds per training step of all models, and what follows")
            print(f"{'':>24}" + "".join(f"{row['model']:>18}" for row in rows))
            for column in ("models", "gflop_per_step") * (clock == "") + timed + derived:
                per_clock = column not in ("models", "gflop_per_step")
                key = f"{column}{clock}_s" if column in timed else column + clock * per_clock
                if any(key in row for row in rows):
                    print(f"{column:>24}" + "".join(f"{str(row.get(key, '-')):>18}" for row in rows))
    settings = {f.name: getattr(args, f.name) for f in fields(args) if f.name not in (*NOT_TIMED, "out")}
    record = {**provenance(settings | {"input_lengths": lengths}, started),
              "device": str(device), "rows": rows}
    if args.out:
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    raise SystemExit(run(main))
