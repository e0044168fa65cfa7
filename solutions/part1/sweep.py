"""Accuracy against input length: train every model, input length and seed with this package's train().

    python -m solutions.part1.sweep                                  # the defaults (see --help)
    python -m solutions.part1.sweep --seeds 0 --steps 3000           # a quick look first
    python -m solutions.part1.sweep --resume                         # finish an interrupted sweep

It trains your own models: each run is one call of ``train()`` from ``train.py`` of the same
package, with the settings of ``python -m solutions.part1.train`` (same options, same defaults).
``--help`` lists the options and their defaults: which models, input lengths and seeds (the grid),
and the training settings. The runs go to ``--workers`` processes of one thread each, the longest
first. All results go to one file, ``--out``, rewritten after every finished run: stop with Ctrl-C
whenever you like, and ``--resume`` (with ``--out`` if you gave one) later trains only the runs
that are missing, with the settings, models, input lengths and seeds in the file; only ``--device``
and ``--workers`` may change. The same command again does the same. Plot the file with
``plot_accuracy_vs_length(load_sweep(path))``.

How long: about 1.5 hours on a 2-core laptop with the defaults (45 minutes on 4 cores); ``--seeds 0
--steps 3000`` takes about 10 minutes on 2 cores. Measured on one core of a small Intel Xeon
with the reference code, a step takes longer the longer the input: 550, 350 and 220 steps/s for
the RNN at T = 5, 10 and 20, and 160, 85 and 47 for the LSTM. All the runs of the defaults are
about 2.6 hours of one core, four fifths of them the LSTM's.

The default grid has several seeds: beyond T = 14 a run of either model either learns the task or
stays near chance, and which one it does depends on the seed, so one seed per length is a coin
toss. With several, the median says where most runs end and the dots show the spread, at the cost
of one sweep per seed.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cli import (Interrupted, StopFlag, UserError, check, check_device, check_writable, command, default_of,
                   done_futures, option, parse, resumed_config, run, setting)
from ..common import atomic_write_json, provenance
from .models import MODELS
from .train import Config, Settings, train

LATE_EVALUATIONS = 10  # the late accuracy of a run is the median of its last 10 held-out accuracies
CHANCE = 1 / 10  # accuracy of a guess: one of ten digits
# The settings of train() (its Config) that are not settings of the sweep: each run's own, and the
# checkpoints of a single run. All the others are options of the command, with train()'s defaults.
NOT_SETTINGS = ("model", "input_length", "seed", "checkpoint_every")
TRAIN_DEFAULTS = {f.name: default_of(f) for f in fields(Config) if f.name not in NOT_SETTINGS}
OPTIONS = {f.name: option(f) for f in fields(Config)}
NOT_COMPARED = ("device",)  # a resumed sweep may run elsewhere: the device changes rounding, not the experiment
GRID = ("models", "input_lengths", "seeds")
DEFAULT_OUT = Path("results/part1/sweep.json")


@dataclass
class SweepConfig(Settings):
    """The settings of a sweep: Part 1's training settings (``Settings``, with their defaults), and which runs."""
    models: list[str] = setting(["rnn", "lstm"], "the networks", choices=tuple(MODELS))
    input_lengths: list[str] = setting(["5-20"], "input lengths T (digits seen; palindromes have T + 1): a range "
                                                 "like 3-9 or a list")
    seeds: list[int] = setting([0, 1, 2], "seeds", at_least=0)


def late_accuracy(eval_accuracy: list[float]) -> float:
    """The median of the last LATE_EVALUATIONS held-out accuracies: where training ended up.

    The final accuracy alone can catch a brief dip of the curve; the median of the last ten does not.
    """
    return round(statistics.median(eval_accuracy[-LATE_EVALUATIONS:]), 5)


def run_one(model: str, input_length: int, seed: int, settings: dict) -> dict:
    """Train one (model, input length, seed) with train() and keep what the sweep needs of its record."""
    record = train(model=model, input_length=input_length, seed=seed, progress=False, **settings)
    curve = record["curve"]
    return {"model": model, "input_length": input_length, "seed": seed,
            "final_eval_accuracy": record["final_eval_accuracy"], "best_eval_accuracy": record["best_eval_accuracy"],
            "late_eval_accuracy": late_accuracy(curve["eval_accuracy"]),
            "wall_time_s": record["wall_time_s"], "device": record["device"],
            "curve": {"step": curve["step"], "eval_accuracy": curve["eval_accuracy"]}}


def run_key(run: dict) -> tuple[str, int, int]:
    return run["model"], run["input_length"], run["seed"]


def load_sweep(path: str | os.PathLike = DEFAULT_OUT) -> dict:
    """The record of a sweep's result file (settings, provenance, and the list of runs)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_results(path: Path, config: SweepConfig, runs: dict, started: float, workers: int) -> None:
    """Rewrite the result file with the settings, the grid and every finished run (atomically: a reader
    never sees half a file)."""
    order = {name: i for i, name in enumerate(MODELS)}
    atomic_write_json(path, {**provenance(training_settings(config), started),
                             "grid": {name: getattr(config, name) for name in GRID}, "workers": workers,
                             "late_evaluations": LATE_EVALUATIONS,
                             "runs": sorted(runs.values(), key=lambda r: (order[r["model"]], *run_key(r)[1:]))})


def start_worker() -> None:
    """Set up a worker process: one torch thread, and a thread lock for tqdm.

    (tqdm's default lock is a semaphore that a worker stopped by Ctrl-C would leave behind, with a warning.)
    """
    torch.set_num_threads(1)
    tqdm.set_lock(threading.RLock())


def parse_lengths(words: list[str]) -> list[int]:
    """['3-9'] or ['5', '7', '9'] (or [5, 7, 9]) -> a sorted list of distinct input lengths (ValueError if invalid)."""
    lengths = set()
    for word in words:
        lo, _, hi = str(word).partition("-")
        try:
            lengths.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ValueError(f"--input-lengths takes integers or ranges like 3-9, got {word!r}") from None
    if not lengths or min(lengths) < 1:
        raise ValueError(f"--input-lengths must be positive and a range must not be empty, got {' '.join(words)}")
    return sorted(lengths)


def usable_cores() -> int:
    """The cores this process may run on (os.sched_getaffinity does not exist on macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_settings(config: SweepConfig) -> dict:
    """The settings every run of the sweep shares: those of train()."""
    return {name: getattr(config, name) for name in TRAIN_DEFAULTS}


def parse_args(argv: list[str] | None) -> tuple[SweepConfig, dict, dict]:
    """The command line -> (the sweep's settings, the other options, the runs already in --out).

    With ``--resume``, the settings and the grid are those of the sweep in --out, and only
    NOT_COMPARED settings may be typed otherwise. Every error is a ``UserError``, before any training.
    """
    def extra(p):
        p.add_argument("--workers", type=int, default=usable_cores(),
                       help="processes that train at the same time, one thread each (default: the usable cores)")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"the result file, also read to resume (default: {DEFAULT_OUT})")
        p.add_argument("--resume", action="store_true",
                       help="finish the sweep in --out with its settings and runs (type only what may change)")

    config, given, options = parse(SweepConfig, argv, __doc__, extra, skip=NOT_SETTINGS)
    try:  # a list of integers, as the result file records it (and compares it on --resume)
        config.input_lengths = parse_lengths(config.input_lengths)
    except ValueError as error:
        raise UserError(str(error)) from None
    out = check_writable(options["out"])
    try:
        record = load_sweep(out) if out.exists() else None
        done = {run_key(run): run for run in record["runs"]} if record else {}
        before = {**record["settings"], **record.get("grid", {})} if record else {}
    except OSError as error:
        raise UserError(f"cannot read --out {out} ({error.strerror or error}); choose another --out") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{out} is not the result file of a sweep; choose another --out") from None
    if options["resume"]:
        if record is None:
            raise UserError(f"--resume: no sweep in {out}; start it without --resume")
        if "grid" not in record:
            raise UserError(f"--resume: {out} does not record its models, input lengths and seeds; "
                            f"resume with its command: {record.get('command')}")
        config = resumed_config(SweepConfig, before, config, given, changeable=NOT_COMPARED, source=str(out))
    check(config)
    check_device(config.device)
    if options["workers"] <= 0:
        raise UserError(f"--workers must be positive, got {options['workers']}")
    for name, value in training_settings(config).items():
        if done and name not in NOT_COMPARED and before.get(name) != value:
            raise UserError(f"{out} holds runs made with {OPTIONS[name]} {before.get(name)}, not {value}; "
                            f"resume with --resume (its settings), or choose another --out")
    return config, {**options, "out": out}, done


def sweep(config: SweepConfig, out: Path, workers: int, runs: dict) -> None:
    """Train every run of the grid that is not in ``runs`` yet, in worker processes, adding it to ``runs``.

    The result file is written at once (the settings and the grid, which --resume reads) and after every run.
    """
    started = time.perf_counter()
    settings = training_settings(config)
    grid = [(m, t, s) for m in config.models for t in config.input_lengths for s in dict.fromkeys(config.seeds)]
    # The longest runs first (an LSTM step costs about four RNN steps), so that the workers finish together.
    todo = sorted((key for key in grid if key not in runs), key=lambda k: (-k[1] * (4 if k[0] == "lstm" else 1), k))
    workers = max(1, min(workers, len(todo)))
    print(f"{len(grid) - len(todo)} of {len(grid)} runs are in {out} already; "
          f"training {len(todo)} in {workers} processes", flush=True)
    write_results(out, config, runs, started, workers)
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), unit="run", desc="sweep")
    before = set(multiprocessing.active_children())
    # The workers start while Ctrl-C is ignored, and keep ignoring it: stopping them is this process's job.
    # spawn: fresh processes (fork would copy this process's torch thread pools).
    default_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker)
    try:
        pending = {pool.submit(run_one, *key, settings) for key in todo}
        signal.signal(signal.SIGINT, default_handler)
        # Ctrl-C only sets a flag, read between polls (cli.done_futures says why they are not waits).
        with StopFlag(quiet=True) as stop:
            while pending and not stop:
                done = done_futures(pending)
                pending -= done
                for future in done:
                    run = future.result()  # a run that failed raises its error here, with the worker's traceback
                    runs[run_key(run)] = run
                    write_results(out, config, runs, started, workers)
                    bar.update()
                    bar.set_postfix_str(f"last: {run['model']} T={run['input_length']} seed {run['seed']}, "
                                        f"late held-out accuracy {run['late_eval_accuracy']:.2f}")
        if pending:
            raise KeyboardInterrupt
        pool.shutdown()  # all done: the workers end
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up below is bounded: let nothing cut it short
        bar.close()
        end_workers(pool, set(multiprocessing.active_children()) - before)
        signal.signal(signal.SIGINT, default_handler)


def end_workers(pool: ProcessPoolExecutor, processes: set, timeout: float = 10.0) -> None:
    """After Ctrl-C or an error: end the worker processes and their runs, then close the pool, in bounded time.

    The pool's thread waits for its workers, and the interpreter waits for that thread at exit, so the
    workers end first: terminated, and killed if still alive after ``timeout`` seconds. The pool then
    finds them gone, fails the runs not finished, and closes its queues (no semaphore is left behind).
    """
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(timeout)
    pool.shutdown(cancel_futures=True)


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    config, options, runs = parse_args(argv)
    out = options["out"]
    try:
        sweep(config, out, options["workers"], runs)
    except KeyboardInterrupt:
        again = command(__spec__.name, config, set(), ["--resume", *(["--out", str(out)] if out != DEFAULT_OUT else [])])
        raise Interrupted(f"{len(runs)} finished runs kept in {out}; resume with: {again}") from None
    for model in config.models:
        late = {t: [r["late_eval_accuracy"] for r in runs.values() if r["model"] == model and r["input_length"] == t]
                for t in config.input_lengths}
        print(f"{model}: median late held-out accuracy by input length: "
              + " ".join(f"{t}:{statistics.median(a):.2f}" for t, a in late.items()))
    print(f"wrote {out}; plot it with {__spec__.name}.plot_accuracy_vs_length(load_sweep({str(out)!r}))")
    return runs


def plot_accuracy_vs_length(record: dict, ax=None, statistic: str = "late_eval_accuracy"):
    """Held-out accuracy against input length, per model: a dot per seed, a line through the median.

    ``statistic`` is a run's ``late_eval_accuracy`` (default), ``final_eval_accuracy`` or
    ``best_eval_accuracy``. Returns (figure, axes).
    """
    import matplotlib.pyplot as plt  # here, so that the command does not need matplotlib to start

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    models = [m for m in MODELS if any(r["model"] == m for r in record["runs"])]
    for i, model in enumerate(models):
        runs = [r for r in record["runs"] if r["model"] == model]
        shift = 0.12 * (i - (len(models) - 1) / 2)  # models side by side, so that their dots do not hide each other
        lengths = sorted({r["input_length"] for r in runs})
        medians = [statistics.median(r[statistic] for r in runs if r["input_length"] == t) for t in lengths]
        line, = ax.plot([t + shift for t in lengths], medians, "-", label=f"{model} (median over seeds)")
        ax.plot([r["input_length"] + shift for r in runs], [r[statistic] for r in runs], "o", ms=4, alpha=0.5,
                color=line.get_color(), label=f"{model} (one dot per seed)")
    ax.axhline(CHANCE, color="grey", ls=":", lw=1, label="chance (0.1)")
    ax.set(xticks=sorted({r["input_length"] for r in record["runs"]}), ylim=(0, 1.05),
           xlabel="input length T (the palindrome has T + 1 digits)",
           ylabel=f"held-out accuracy ({statistic.split('_')[0]})")
    ax.legend(fontsize=8)
    return ax.figure, ax


if __name__ == "__main__":
    raise SystemExit(run(main))
