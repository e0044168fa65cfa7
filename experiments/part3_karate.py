"""Karate-club node classification, GCN against MLP, over many seeds and label budgets.

    python -m experiments.part3_karate                      # the defaults of --help -> --out
    python -m experiments.part3_karate --seeds 3 --out /tmp/k.json

For every label budget (the two faction leaders, or k random members per faction) and every
seed it trains a two-layer GCN and an MLP with Kipf and Welling's settings
(``solutions.part3.karate.DEFAULTS``) and records their accuracy on the unlabelled members.
The result file holds the accuracies, their mean and standard deviation, and the command,
settings, versions and wall time that produced them.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import torch

from solutions.cli import check, check_writable, parse, setting
from solutions.cli import run as run_command
from solutions.common import atomic_write_json, provenance
from solutions.part3.karate import DEFAULTS, accuracy_over_seeds, karate_club

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class KarateConfig:
    """The command's settings; the models' own are Kipf and Welling's (``solutions.part3.karate.DEFAULTS``)."""
    seeds: int = setting(100, "seeds 0..N-1 per label budget", at_least=1)
    out: str = setting(str(ROOT / "data" / "part3" / "karate.json"), "the result file")


BUDGETS = {"leaders": None, "1 per faction": 1, "2 per faction": 2, "4 per faction": 4}


def run(seeds: int) -> dict:
    club = karate_club()
    results = {}
    for name, per_class in BUDGETS.items():
        accuracies = accuracy_over_seeds(range(seeds), per_class, club)
        results[name] = {model: {"mean": round(float(np.mean(acc)), 4), "std": round(float(np.std(acc)), 4),
                                 "accuracies": [round(a, 4) for a in acc]}
                         for model, acc in accuracies.items()}
        summary = ", ".join(f"{m} {r['mean']:.3f} ± {r['std']:.3f}" for m, r in results[name].items())
        print(f"{name:>14}: {summary}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args, _, _ = parse(KarateConfig, argv, __doc__)
    check(args)
    check_writable(args.out)
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = run(args.seeds)
    settings = {**DEFAULTS, "seeds": list(range(args.seeds)), "features": "one-hot node identity",
                "budgets": dict(BUDGETS), "test nodes": "every unlabelled member",
                "optimiser": "Adam, full batch", "device": "cpu"}
    record = provenance(settings, started)
    record["command"] = " ".join(["python -m experiments.part3_karate", *(argv if argv is not None else sys.argv[1:])])
    record["versions"]["networkx"] = nx.__version__
    record["results"] = results
    atomic_write_json(args.out, record)
    print(f"wrote {args.out} in {record['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
