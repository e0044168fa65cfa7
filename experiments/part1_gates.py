"""The trained LSTM whose gates chapter 1.5 reads, with its settings and its learning curve.

    python -m experiments.part1_gates                  # -> data/part1/gates/lstm_T10.{pt,json}

It trains one LSTM with ``solutions.part1.train.train`` (``SETTINGS`` below; train()'s defaults for
the others, and the result record lists them all) and saves the
initial and the trained weights (``lstm_T10.pt``, read with ``torch.load(path, weights_only=True)``)
beside the result record (``lstm_T10.json``: command, settings, versions, held-out accuracy curve).

Why a committed model: which unit ends up holding the first digit, and how its forget gate
behaves, depends on the float32 rounding of 700 training steps, so it differs between CPUs (and
between torch's kernel paths on one CPU). The chapter reads this one model, on every machine, and
trains a live one only for what holds everywhere: that the LSTM learns the task.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from solutions.common import atomic_write_json
from solutions.part1.train import train

ROOT = Path(__file__).resolve().parent.parent
# The chapter's settings where they are not train()'s defaults (Config; the result file records all).
SETTINGS = dict(model="lstm", input_length=10, num_hidden=64, learning_rate=1e-2, train_steps=700, device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "part1" / "gates",
                        help="folder for lstm_T10.pt and lstm_T10.json (default: %(default)s)")
    args = parser.parse_args(argv)
    stem = args.out / f"{SETTINGS['model']}_T{SETTINGS['input_length']}"
    record = train(**SETTINGS, progress=False, save_model=stem.with_suffix(".pt"))
    record["model_file"] = stem.with_suffix(".pt").name
    atomic_write_json(stem.with_suffix(".json"), record)
    print(f"held-out accuracy every {record['settings']['eval_every']} steps: {record['curve']['eval_accuracy']}; "
          f"wrote {stem}.pt and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
