"""The committed sweeps of Part 1, read as arrays: what chapters 1.3 and 1.6 tabulate and plot.

    from experiments.part1_results import SWEEPS, lengths, table
    late = table(SWEEPS["sweep"], "rnn", "late")      # [16 input lengths, 5 seeds]

Two sweeps are committed under ``data/part1``: ``sweep/`` (an H100) and its replicate
``sweep_h200_autograd/`` (the same 160 models from the same initial weights on the same batches, on
an H200 with autograd's backward pass), each with the command that made it. They differ only in
float32 rounding. A run's three statistics are its final held-out accuracy, its late one (the
median of the last evaluations, ``solutions.part1.sweep.late_accuracy``) and its best one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from solutions.part1.sweep import late_accuracy

DATA = Path(__file__).resolve().parents[1] / "data" / "part1"
KINDS = ("rnn", "lstm")
SOLVED = 0.99  # late accuracy of a solved run: at most five of the 512 held-out palindromes wrong


def load(folder: str) -> dict:
    """{model kind: the record of data/part1/<folder>/<kind>.json}."""
    return {kind: json.loads((DATA / folder / f"{kind}.json").read_text(encoding="utf-8")) for kind in KINDS}


SWEEPS = {"sweep": load("sweep"), "replicate": load("sweep_h200_autograd")}
lengths = SWEEPS["sweep"]["rnn"]["settings"]["input_lengths"]  # 5..20
STATISTICS = {"final": lambda run: run["final_eval_accuracy"],
              "late": lambda run: late_accuracy(run["curve"]["eval_accuracy"]),
              "best": lambda run: run["best_eval_accuracy"]}


def table(records: dict, kind: str, statistic: str) -> np.ndarray:
    """[len(lengths), seeds] array of one statistic of every run of a sweep, seeds in order."""
    runs = sorted(records[kind]["runs"], key=lambda r: r["seed"])
    return np.array([[STATISTICS[statistic](r) for r in runs if r["input_length"] == t] for t in lengths])


def runs_where(mask: np.ndarray) -> list[tuple[int, int]]:
    """The (input length, seed) of every run where a [len(lengths), seeds] mask is true."""
    return [(lengths[i], int(s)) for i, s in zip(*np.nonzero(mask))]
