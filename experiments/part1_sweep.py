"""Accuracy against input length: train every (model, input_length, seed) of Part 1 at once.

    python -m experiments.part1_sweep --seeds 0 1 2 3 4 --device cuda     # five seeds; the rest as --help shows
    OMP_NUM_THREADS=2 python -m experiments.part1_sweep --seeds 0 --device cpu --threads 2 --workers 2 \\
        --out data/part1/sweep_cpu

With the defaults (``--help``), the separate runs of one seed (every model and input length) take
about an hour on a small CPU with ``solutions.part1.train``. Here the M models of one kind (all
lengths, all seeds) are trained together by the batched engine of ``solutions/part1/stacked.py``,
and each one is exactly the model that a separate ``train()`` run would train.

**Worker processes on a small CPU.** ``--workers 2`` deals the models out to two processes of one
thread each, with equal work (``balanced_shards``), and merges their results. In short runs on the
2-core CPU this trained 8-16% faster than one process of two threads: the products of one time step
are too small to keep two threads busy between the gate arithmetic, and batch generation and
evaluation are split as well.

Results go to ``<out>/<model>.json`` (every curve, every setting, versions, wall time, device),
written atomically at every checkpoint and at the end; ``<out>/<model>.ckpt.pt`` holds the
checkpoint from which a rerun of the same command resumes (Ctrl-C writes it, and prints that
command). ``tests/project/test_part1_sweep.py`` checks that a killed or stopped sweep resumes to the
same result.
"""
from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from solutions.cli import (Interrupted, StopFlag, UserError, check, check_device, check_memory, check_writable,
                           command, done_futures, load_checkpoint, parse, run, setting)
from solutions.common import atomic_torch_save, atomic_write_bytes, provenance
from solutions.part1.models import MODELS
from solutions.part1.palindrome import NUM_CLASSES
from solutions.part1.stacked import BatchedTrainer, batch_of_all, held_out_batches, initial_models, model_slots
from solutions.part1.sweep import SweepConfig as StudentsSweepConfig, parse_lengths  # the students' grid and rule
from solutions.part1.train import Config, Settings, memory_estimate


@dataclass
class SweepConfig(StudentsSweepConfig):
    """The sweep's settings: those of the students' sweep (Part 1's training settings and which runs, their
    defaults) with a default of its own for the seeds, and how the batched engine runs."""
    seeds: list[int] = setting([0], "seeds", at_least=0)
    compile: bool = setting(False, "torch.compile the autograd version of the forward pass instead of the "
                                   "hand-written recurrence (CPU: minutes to compile)")
    threads: int = setting(0, "torch.set_num_threads (0: as it is); with --workers, shared out among the workers",
                           at_least=0)
    workers: int = setting(1, "CPU processes that each train a share of the models (2 is fastest on 2 cores)",
                           at_least=1)
    out: str = setting("data/part1/sweep", "the folder of the results and the checkpoints")


# The settings a result records and a resumed run must share (and, written out, the optimiser and dtype).
RECORDED = ("num_hidden", "batch_size", "learning_rate", "train_steps", "max_norm", "one_hot", "eval_every",
            "eval_batches")
CHECKPOINT_KEYS = ("settings", "step", "stack", "optimizer", "generators", "curves", "elapsed_s", "sessions")


def balanced_shards(slots: list[tuple[int, int]], workers: int) -> list[list[tuple[int, int]]]:
    """Deal the slots out to ``workers`` processes so that each has about the same work.

    A model's step costs about its input length T, so the longest model goes next to the worker with
    the least work so far (longest processing time first). Each shard stays longest first.
    >>> balanced_shards(model_slots([5, 6, 7, 8], [0]), 2)
    [[(8, 0), (5, 0)], [(7, 0), (6, 0)]]
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= len(slots):
        raise UserError(f"--workers must be an integer from 1 to the number of models ({len(slots)}), got {workers!r}")
    shards, work = [[] for _ in range(workers)], [0] * workers
    for slot in sorted(slots, key=lambda slot: -slot[0]):  # stable: seeds stay in order
        i = work.index(min(work))
        shards[i].append(slot)
        work[i] += slot[0]
    return shards


def write_results(path: Path, record: dict) -> None:
    """The result JSON, one run per line (compact curves, readable diffs), written atomically."""
    head = json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=1)[:-2]
    runs = ",\n".join("  " + json.dumps(run, separators=(",", ":")) for run in record["runs"])
    atomic_write_bytes(path, f'{head},\n "runs": [\n{runs}\n ]\n}}\n'.encode("utf-8"))


def shard_stem(model: str, i: int, workers: int) -> str:
    """The file stem of shard i (from 0) of a sweep split over ``workers`` processes: rnn.shard1of2."""
    return f"{model}.shard{i + 1}of{workers}"


def differences(before: dict, now: dict) -> str:
    """The settings that differ, with both values: 'num_hidden 5 (now 7)'."""
    changed = [k for k in {**before, **now} if before.get(k) != now.get(k)]
    return ", ".join(f"{k} {before.get(k)} (now {now.get(k)})" for k in changed)


def finished(stem: Path, settings: dict) -> dict | None:
    """The finished record in ``<stem>.json`` (None if there is none, or a checkpoint to resume); a
    ``UserError`` if it holds results of other settings."""
    result = Path(f"{stem}.json")
    if not result.exists() or Path(f"{stem}.ckpt.pt").exists():
        return None
    done = json.loads(result.read_text())
    if done.get("settings") != settings:
        raise UserError(f"{result} holds results of other settings ({differences(done.get('settings', {}), settings)})"
                        f"; delete it or use another --out")
    return done if done.get("complete") else None


def plan(model: str, config: SweepConfig) -> tuple[dict, list[tuple[int, int]], torch.device]:
    """Check everything about a sweep of one model kind before any work: (settings, slots, device).

    A ``UserError`` for a bad setting, an unwritable --out, finished results of other settings in it,
    or a checkpoint of the same run made with another number of workers.
    """
    check(config)
    if model not in MODELS:
        raise UserError(f"--models {model} is not one of {', '.join(MODELS)}")
    try:
        lengths, seeds = parse_lengths(config.input_lengths), sorted(set(config.seeds))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    dev = check_device(config.device)
    out = check_writable(config.out, folder=True)
    slots = model_slots(lengths, seeds)
    balanced_shards(slots, config.workers)  # checks workers
    if config.workers > 1 and dev.type != "cpu":
        raise UserError(f"--workers {config.workers}: workers split the models over CPU processes; on {dev} use 1")
    one = Config(**{f.name: getattr(config, f.name) for f in fields(Settings)}, model=model, input_length=lengths[-1])
    check_memory(memory_estimate(one) * len(slots), f"{len(slots)} models of --batch-size {config.batch_size}", dev)
    settings = {"model": model, "input_lengths": lengths, "seeds": seeds, **{k: getattr(config, k) for k in RECORDED},
                "optimizer": "RMSprop (torch defaults: alpha 0.99, eps 1e-8)", "dtype": "float32"}
    finished(out / model, settings)  # never overwrite finished results of other settings
    ckpt = out / f"{model}.ckpt.pt"
    workers = config.workers  # a checkpoint made with another number of workers would be silently left behind
    mine = {f"{shard_stem(model, i, workers)}.ckpt.pt" for i in range(workers)} if workers > 1 else {ckpt.name}
    for other in sorted({*out.glob(f"{model}.ckpt.pt"), *out.glob(f"{model}.shard*of*.ckpt.pt")}):
        if other.name not in mine:
            n = other.name.split("of")[-1].split(".")[0] if ".shard" in other.name else "1"
            raise UserError(f"{other} is the checkpoint of this run with {n} worker(s); resume it with "
                            f"--workers {n}, or delete it")
    return settings, slots, dev


def sweep(model: str = "rnn", config: SweepConfig | None = None, *, progress: bool = True,
          stop_after: int | None = None, stop=None, **options) -> dict:
    """Train every (input_length, seed) of one model kind at once; write and return the result record.

    ``sweep("lstm", input_lengths=[5, 6], train_steps=500)`` or ``sweep("lstm", SweepConfig(...))``.
    Resumes from ``<out>/<model>.ckpt.pt`` when it exists and was made with the same settings; returns
    the finished result of the same settings without training again; refuses to overwrite a result of
    other settings. ``workers`` > 1 runs ``sweep_in_workers``. ``stop_after`` ends the run after that
    step as an interruption would (for tests); ``stop`` (``cli.StopFlag``) turning true writes the
    checkpoint and raises ``cli.Interrupted``.
    """
    config = replace(config or SweepConfig(), **options)
    settings, slots, dev = plan(model, config)
    done = finished(Path(config.out) / model, settings)
    if done is not None:
        return done
    if config.workers > 1:
        return sweep_in_workers(model, config, settings, slots, progress=progress, stop_after=stop_after)
    return train_slots(model, config, settings, slots, Path(config.out) / model, dev, progress=progress,
                       stop_after=stop_after, stop=stop)


def train_slots(model: str, config: SweepConfig, settings: dict, slots: list[tuple[int, int]], stem: Path,
                dev: torch.device, progress: bool = True, stop_after: int | None = None, stop=None,
                position: int = 0) -> dict:
    """Train the stacked models of ``slots`` in this process: results in ``<stem>.json``, checkpoint in
    ``<stem>.ckpt.pt``, resumed from it when it exists (the work of a single process or of one worker)."""
    started = time.perf_counter()
    result_path, ckpt_path = Path(f"{stem}.json"), Path(f"{stem}.ckpt.pt")
    done = finished(stem, settings)
    if done is not None:
        return done
    stack = initial_models(model, slots, NUM_CLASSES if config.one_hot else 1, config.num_hidden).to(dev)
    trainer = BatchedTrainer(stack, config.learning_rate, config.max_norm, compile=config.compile)
    generators = [torch.Generator().manual_seed(s) for _, s in slots]
    held_out = held_out_batches(slots, config.batch_size, config.eval_batches, config.one_hot, torch.float32, dev)
    curves = {key: [] for key in ("step", "train_loss", "train_accuracy", "eval_loss", "eval_accuracy")}
    step, elapsed_before, sessions = 0, 0.0, 1
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, CHECKPOINT_KEYS)  # generator states stay on the CPU
        fixed = {k: v for k, v in settings.items() if k != "train_steps"}  # --steps may change, as in Part 1
        if {k: v for k, v in ckpt["settings"].items() if k != "train_steps"} != fixed:
            raise UserError(f"{ckpt_path} was made with other settings ({differences(ckpt['settings'], settings)}); "
                            f"delete it or use another --out")
        if ckpt["step"] > config.train_steps:
            raise UserError(f"{ckpt_path} is at step {ckpt['step']}, past --steps {config.train_steps}")
        stack.load_state_dict(ckpt["stack"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        for g, state in zip(generators, ckpt["generators"]):
            g.set_state(state)
        curves, step = ckpt["curves"], ckpt["step"]
        elapsed_before, sessions = ckpt["elapsed_s"], ckpt["sessions"] + 1

    def record(complete: bool) -> dict:
        rec = {**provenance(settings), "device": str(dev), "compile": config.compile, "complete": complete,
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None,
               "steps_done": step, "wall_time_s": round(elapsed_before + time.perf_counter() - started, 1),
               "sessions": sessions, "workers": 1, "eval_steps": curves["step"], "runs": []}
        for m, (t, s) in enumerate(slots):
            curve = {k: [round(v[m], 4) for v in curves[k]] for k in curves if k != "step"}
            acc = curve["eval_accuracy"] or [None]
            rec["runs"].append({"model": model, "input_length": t, "palindrome_length": t + 1, "seed": s,
                                "final_eval_accuracy": acc[-1], "best_eval_accuracy": max(acc, key=lambda a: a or 0),
                                "curve": curve})
        rec["runs"].sort(key=lambda r: (r["input_length"], r["seed"]))
        return rec

    def checkpoint() -> None:
        atomic_torch_save(ckpt_path, {
            "settings": settings, "step": step, "stack": stack.state_dict(),
            "optimizer": trainer.optimizer.state_dict(), "generators": [g.get_state() for g in generators],
            "curves": curves, "elapsed_s": elapsed_before + time.perf_counter() - started, "sessions": sessions})
        write_results(result_path, record(complete=False))

    bar = tqdm(range(step + 1, config.train_steps + 1), initial=step, total=config.train_steps, disable=not progress,
               desc=f"{stem.name} x{len(slots)}", mininterval=2, position=position)
    for step in bar:
        x, y = batch_of_all(slots, generators, config.batch_size, config.one_hot, torch.float32, dev)  # [M, B, T, d]
        loss, acc = trainer.step(x, y)  # [M], [M]
        if step % config.eval_every == 0 or step == config.train_steps:
            eval_loss, eval_acc = trainer.evaluate(held_out)
            for key, value in zip(curves, (step, loss, acc, eval_loss, eval_acc)):
                curves[key].append(value if key == "step" else value.tolist())
            bar.set_postfix(mean_held_out_acc=f"{eval_acc.mean().item():.3f}")
        stopping = bool(stop)  # read once: a Ctrl-C between two reads would skip the checkpoint
        if (step % config.checkpoint_every == 0 and step < config.train_steps) or stopping:
            checkpoint()
        if stopping:
            bar.close()
            raise Interrupted(f"{stem.name}: checkpoint at step {step} in {ckpt_path}")
        if stop_after is not None and step >= stop_after:
            bar.close()
            return record(complete=False)
    final = record(complete=True)
    write_results(result_path, final)
    ckpt_path.unlink(missing_ok=True)
    return final


def train_shard(*args, **kwargs) -> dict:
    """``train_slots`` in a worker process, where Ctrl-C (sent to the whole process group) also lands."""
    with StopFlag(quiet=True) as stop:
        return train_slots(*args, **kwargs, stop=stop)


def sweep_in_workers(model: str, config: SweepConfig, settings: dict, slots: list[tuple[int, int]],
                     progress: bool = True, stop_after: int | None = None) -> dict:
    """Train the slots as ``config.workers`` processes, one shard each (``balanced_shards``), and merge.

    Each process has torch.get_num_threads() // workers threads, checkpoints its shard
    (``<out>/<model>.shard<i>of<workers>.*``) and resumes it. The merged record is the one a single
    process would write (the same settings, every run), plus the shards' slots and times. Its wall
    time is the longest shard's (over all sessions, as a single process counts it);
    ``launch_wall_time_s`` adds the start of the processes, for this session only. Shard files are
    removed once merged.
    """
    started, workers, out = time.perf_counter(), config.workers, Path(config.out)
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = []
        for i, shard in enumerate(balanced_shards(slots, workers)):
            shard_settings = {**settings, "shard": [i + 1, workers], "slots": [list(slot) for slot in shard]}
            futures.append(pool.submit(train_shard, model, config, shard_settings, shard,
                                       out / shard_stem(model, i, workers), torch.device("cpu"), progress=progress,
                                       stop_after=stop_after, position=i))
        pending = set(futures)
        while pending:  # polled (cli.done_futures): a second Ctrl-C here must not leave a future's lock held
            pending -= done_futures(pending)
        stopped = [future.exception() for future in futures]
        if any(isinstance(exc, Interrupted) for exc in stopped):
            steps = [str(exc).split("step ")[1].split()[0] for exc in stopped if isinstance(exc, Interrupted)]
            raise Interrupted(f"{model}: checkpoints of the {workers} shards (steps {', '.join(steps)}) in {out}")
        shards = [future.result() for future in futures]
    complete = all(rec["complete"] for rec in shards)
    merged = {**provenance(settings), **{k: shards[0][k] for k in ("device", "compile", "tf32_matmul")},
              "complete": complete, "steps_done": min(rec["steps_done"] for rec in shards),
              "wall_time_s": max(rec["wall_time_s"] for rec in shards),
              "launch_wall_time_s": round(time.perf_counter() - started, 1),
              "sessions": max(rec["sessions"] for rec in shards), "workers": workers, "threads_per_worker": threads,
              "shards": [{k: rec[k] for k in ("wall_time_s", "sessions")} | {"slots": rec["settings"]["slots"]}
                         for rec in shards],
              "eval_steps": shards[0]["eval_steps"],
              "runs": sorted((run for rec in shards for run in rec["runs"]),
                             key=lambda r: (r["input_length"], r["seed"]))}
    merged["machine"]["torch_threads"] = threads
    if complete:
        write_results(out / f"{model}.json", merged)
        for i in range(workers):
            (out / f"{shard_stem(model, i, workers)}.json").unlink(missing_ok=True)
    return merged


def main(argv: list[str] | None = None) -> list[dict]:
    config, given, _ = parse(SweepConfig, argv, __doc__)
    for model in config.models:  # every check of every model kind before any work
        plan(model, config)
    if config.threads:
        torch.set_num_threads(config.threads)
    records = []
    with StopFlag() as stop:
        for model in config.models:
            try:
                rec = sweep(model, config, stop=stop)
            except Interrupted as exc:
                raise Interrupted(f"{exc}; resume with: {command(__spec__.name, config, given)}") from None
            records.append(rec)
            accs = {}
            for r in rec["runs"]:
                accs.setdefault(r["input_length"], []).append(r["final_eval_accuracy"])
            print(f"{model}: {rec['wall_time_s']} s on {rec['device']}; mean final held-out accuracy by input length: "
                  + " ".join(f"{t}:{sum(a) / len(a):.2f}" for t, a in sorted(accs.items())), flush=True)
    return records


if __name__ == "__main__":
    raise SystemExit(run(main))
