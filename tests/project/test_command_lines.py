"""The training commands as a new user tries them: bad input, --help, Ctrl-C and --resume.

Every row of ``BAD_INPUT`` is a command line that must stop with exit status 2 and one line on
stderr, ``error: ...``, that names the option, the value and the rule, before any data is read or
any step trained (nothing is written to ``--out``). Then each command's ``--help`` shows its
defaults, old spellings still work, and a run stopped at Ctrl-C resumes to the numbers of an
uninterrupted one (Part 1, Part 2, the sweep).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from experiments import part1_benchmark, part1_sweep, part2_books, part3_karate
from solutions import cli
from solutions.part1 import sweep as student_sweep
from solutions.part1 import train as part1
from solutions.part2 import train as part2

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"part1": part1.main, "part2": part2.main, "sweep": part1_sweep.main, "books": part2_books.main,
            "student-sweep": student_sweep.main, "karate": part3_karate.main, "benchmark": part1_benchmark.main}
NOT_SETTINGS = ("-h, --help", "--resume", "--rescore")  # switches, without a default to show
BOOK = ["--book", "communist_manifesto"]

# (command, arguments, what the one line says); {tmp} is an empty folder, {garbage} a damaged checkpoint's
# run, {foreign} a folder whose checkpoint.pt is some other torch file.
BAD_INPUT = [
    ("part1", ["--max-norm", "0"], "error: --max-norm 0.0 is too small: it must be above 0"),
    ("part1", ["--max-norm", "-1"], "error: --max-norm -1.0 is too small: it must be above 0"),
    ("part1", ["--num-hidden", "0"], "error: --num-hidden 0 is too small: it must be at least 1"),
    ("part1", ["--eval-batches", "0"], "error: --eval-batches 0 is too small: it must be at least 1"),
    ("part1", ["--eval-every", "0"], "error: --eval-every 0 is too small: it must be at least 1"),
    ("part1", ["--input-length", "0"], "error: --input-length 0 is too small: it must be at least 1"),
    ("part1", ["--learning-rate", "-0.1"], "error: --learning-rate -0.1 is too small: it must be above 0"),
    ("part1", ["--seed", "-1"], "error: --seed -1 is too small: it must be at least 0"),
    ("part1", ["--steps", "0"], "error: --steps 0 is too small: it must be at least 1"),
    ("part1", ["--train-steps", "0"], "error: --steps 0 is too small: it must be at least 1"),  # the old spelling
    ("part1", ["--steps", "ten"], "error: argument --steps: invalid int value: 'ten'"),
    ("part1", ["--model", "gru"], "error: --model gru is not one of rnn, lstm"),
    ("part1", ["--out", "/proc/nope/x.json"], "error: --out /proc/nope/x.json cannot be written"),
    ("part1", ["--out", "{tmp}"], "cannot be written (it is a folder)"),
    ("part1", ["--device", "tpu"], "error: --device tpu is not a device: use auto (CUDA when available), cpu or cuda"),
    ("part1", ["--batch-size", "100000000"], "GiB, more than the"),
    ("part1", ["--resume", "--out", "{tmp}/run.json"], "error: --resume: no checkpoint at"),
    ("part1", ["--resume", "--out", "{garbage}/run.json"], "is damaged or not a checkpoint"),
    ("part1", ["--resume", "--out", "{foreign}/run.json"], "is not a checkpoint of this command"),
    ("part1", ["--no-such-option"], "error: unrecognized arguments: --no-such-option"),
    ("part2", [*BOOK, "--steps", "-5"], "error: --steps -5 is too small: it must be at least 1"),
    ("part2", [*BOOK, "--batch_size", "0"], "error: --batch-size 0 is too small: it must be at least 1"),
    ("part2", [*BOOK, "--temperatures", "-1"], "error: argument --temperatures: -1 is not 0 (greedy) or a finite"),
    ("part2", [*BOOK, "--temperatures", "1e-300"], "error: argument --temperatures: 1e-300 is not 0 (greedy)"),
    ("part2", [*BOOK, "--dropout", "1"], "error: --dropout 1.0 is too large: it must be below 1"),
    ("part2", [*BOOK, "--seq-length", "0"], "error: --seq-length 0 is too small: it must be at least 1"),
    ("part2", [*BOOK, "--learning-rate-decay", "1.5"], "error: --learning-rate-decay 1.5 is too large"),
    ("part2", [*BOOK, "--device", "tpu"], "error: --device tpu is not a device"),
    ("part2", [*BOOK, "--out", "/proc/nope"], "error: --out /proc/nope cannot be written"),
    ("part2", ["--book", "moby_dick"], "error: --book moby_dick is neither a book"),
    ("part2", [*BOOK, "--mirror", "{tmp}/nothing"], "is not a folder"),
    ("part2", [*BOOK, "--batch-size", "1000000", "--seq-length", "10000"], "GiB, more than the"),
    ("part2", [*BOOK, "--resume", "--out", "{tmp}"], "error: --resume: no checkpoint at"),
    ("part2", [*BOOK, "--resume", "--out", "{garbage}"], "is damaged or not a checkpoint"),
    ("part2", [*BOOK, "--resume", "--out", "{foreign}"], "is not a checkpoint of this command"),
    ("sweep", ["--workers", "0"], "error: --workers 0 is too small: it must be at least 1"),
    ("sweep", ["--workers", "99", "--input-lengths", "5", "--seeds", "0"], "--workers must be an integer from 1"),
    ("sweep", ["--input-lengths", "five"], "ranges like 3-9"),
    ("sweep", ["--input-lengths", "9-5"], "must not be empty"),
    ("sweep", ["--models", "gru"], "error: --models gru is not one of rnn, lstm"),
    ("sweep", ["--seeds", "-1"], "error: --seeds -1 is too small"),
    ("sweep", ["--steps", "0"], "error: --steps 0 is too small"),
    ("sweep", ["--max-norm", "-1"], "error: --max-norm -1.0 is too small"),
    ("sweep", ["--device", "tpu"], "error: --device tpu is not a device"),
    ("sweep", ["--out", "/proc/nope"], "error: --out /proc/nope cannot be written"),
    ("sweep", ["--batch-size", "10000000"], "GiB, more than the"),
    ("books", ["--books", "moby_dick"], "error: --books moby_dick is not one of"),
    ("books", ["--steps", "0"], "error: --steps 0 is too small"),
    ("books", ["--sample_every", "-1"], "error: --sample-every -1 is too small"),
    ("books", ["--out", "/proc/nope"], "error: --out /proc/nope cannot be written"),
    ("student-sweep", ["--steps", "0"], "error: --steps 0 is too small: it must be at least 1"),
    ("karate", ["--seeds", "0"], "error: --seeds 0 is too small: it must be at least 1"),
    ("karate", ["--out", "/proc/nope/k.json"], "error: --out /proc/nope/k.json cannot be written"),
    ("benchmark", ["--repeats", "0"], "error: --repeats 0 is too small: it must be at least 1"),
    ("benchmark", ["--device", "tpu"], "error: --device tpu is not a device"),
]


@pytest.fixture
def places(tmp_path) -> dict:
    garbage, foreign, empty = tmp_path / "garbage", tmp_path / "foreign", tmp_path / "empty"
    for folder in (garbage, foreign, empty):
        folder.mkdir()
    for name in ("checkpoint.pt", "run.ckpt.pt"):
        (garbage / name).write_bytes(b"PK\x03\x04 half a checkpoint")
        torch.save({"weights": torch.zeros(2)}, foreign / name)
    return {"tmp": str(empty), "garbage": str(garbage), "foreign": str(foreign)}


def outcome(command: str, argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of a command run in this process, as ``python -m`` would run it."""
    try:
        status = cli.run(COMMANDS[command], argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("command, argv, says", BAD_INPUT,
                         ids=[f"{c}:{' '.join(a)}" for c, a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2_before_any_work(command, argv, says, places, capsys, monkeypatch):
    monkeypatch.chdir(places["tmp"])
    before = {p: sorted(os.listdir(p)) for p in places.values()}
    argv = [a.format(**places) for a in argv]
    tic = time.perf_counter()
    status, err = outcome(command, argv, capsys)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert says in err, err
    assert time.perf_counter() - tic < 10, "checked before any work"
    assert {p: sorted(os.listdir(p)) for p in places.values()} == before, "nothing written"


def test_one_line_and_exit_2_from_the_real_command_line():
    done = subprocess.run([sys.executable, "-m", "solutions.part1.train", "--max-norm", "-1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and done.stderr == "error: --max-norm -1.0 is too small: it must be above 0\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_default_and_dashes_only(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[command](["--help"])
    assert exit_.value.code == 0
    options = capsys.readouterr().out.split("options:\n")[1]
    entries = [" ".join(entry.split()) for entry in ("\n" + options).split("\n  -")[1:]]
    for entry in entries:
        assert "(default: " in entry or entry.startswith(tuple(o[1:] for o in NOT_SETTINGS)), entry
        assert "_" not in entry.split()[0], entry
    assert "--train-steps" not in options and "--steps" in options or command in ("karate", "benchmark")


def test_memory_warning_for_large_runs(capsys):
    cli.check_memory(cli.memory_limit() // 2, "--batch-size 10", torch.device("cpu"))
    assert capsys.readouterr().err.startswith("warning: --batch-size 10 needs about")


@pytest.mark.parametrize("temperature", [-1.0, float("nan"), float("inf"), 1e-300])
def test_sample_next_names_a_temperature_it_cannot_use(temperature):
    from solutions.part2.sampling import sample_next
    with pytest.raises(ValueError, match="temperature") as error:
        sample_next(torch.tensor([[3.0, -2.0, 0.5]]), temperature)
    assert "\n" not in str(error.value) and repr(temperature) in str(error.value)


def test_defaults_are_written_once():
    """Each setting's default lives in one dataclass; the sweep and the student sweep reuse Part 1's."""
    assert {f.name for f in fields(part1.Settings)} <= {f.name for f in fields(part1_sweep.SweepConfig)}
    assert issubclass(part1_sweep.SweepConfig, student_sweep.SweepConfig)  # the grid's options too
    assert set(student_sweep.TRAIN_DEFAULTS) <= {f.name for f in fields(part1.Settings)}
    assert part2_books.BooksConfig().learning_rate == part2.Config().learning_rate


class StopAt:
    """A Ctrl-C that lands after ``n`` checks of the flag (it then stays set), like ``cli.StopFlag``."""

    def __init__(self, n: int):
        self.n = n

    def __bool__(self) -> bool:
        self.n -= 1
        return self.n < 0


TINY1 = dict(model="lstm", input_length=4, num_hidden=6, batch_size=8, train_steps=40, eval_every=10,
             checkpoint_every=15, device="cpu")


def test_part1_stopped_run_resumes_to_the_uninterrupted_one(tmp_path):
    whole = part1.train(progress=False, checkpoint=tmp_path / "a.ckpt.pt", **TINY1)
    with pytest.raises(cli.Interrupted, match="checkpoint at step"):
        part1.train(progress=False, checkpoint=tmp_path / "b.ckpt.pt", stop=StopAt(33), **TINY1)
    assert 0 < torch.load(tmp_path / "b.ckpt.pt", weights_only=True)["step"] < 40
    resumed = part1.train(progress=False, checkpoint=tmp_path / "b.ckpt.pt", resume=True, **TINY1)
    assert resumed["curve"] == whole["curve"] and resumed["settings"] == whole["settings"]
    with pytest.raises(cli.UserError, match="made with --num-hidden 6, not 7"):
        part1.train(progress=False, checkpoint=tmp_path / "b.ckpt.pt", resume=True, **{**TINY1, "num_hidden": 7})


def test_part1_resume_takes_the_settings_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run.json"
    args = ["--model", "lstm", "--input-length", "4", "--num-hidden", "6", "--batch-size", "8", "--eval-every", "10",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    part1.main([*args, "--steps", "20"])
    record = part1.main(["--resume", "--out", str(out), "--steps", "30", "--no-progress"])  # nothing retyped
    assert record["settings"]["num_hidden"] == 6 and record["curve"]["step"] == [10, 20, 30]
    assert record["curve"] == part1.main([*args, "--steps", "30", "--out", str(tmp_path / "whole.json")])["curve"]
    status, err = outcome("part1", ["--resume", "--out", str(out), "--seed", "4"], capsys)
    assert status == 2 and "made with --seed 0, not 4" in err and "only --steps" in err


@pytest.mark.timeout(120)
def test_part1_ctrl_c_writes_a_checkpoint_and_prints_the_command_that_resumes(tmp_path):
    out = tmp_path / "run.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "solutions.part1.train", "--num-hidden", "4", "--batch-size", "4",
                                "--input-length", "3", "--steps", "1000000", "--checkpoint-every", "50",
                                "--device", "cpu", "--no-progress", "--out", str(out)],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.with_suffix(".ckpt.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: checkpoint at step ")
    step = int(last.split("step ")[1].split()[0])
    assert last.endswith(f"resume with: python -m solutions.part1.train --resume --out {out}")
    again = last.split("resume with: python -m ")[1].split()
    done = subprocess.run([sys.executable, "-m", *again, "--steps", str(step + 5), "--no-progress"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["curve"]["step"][-1] == step + 5


@pytest.fixture
def tiny_book(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("The quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    return path


def test_part2_stopped_run_resumes_to_the_uninterrupted_one(tiny_book, tmp_path):
    tiny = dict(book=str(tiny_book), steps=30, hidden=16, batch_size=8, sample_every=10, eval_every=10,
                checkpoint_every=10, progress=False, samples_per_temperature=1)
    whole = part2.train(part2.Config(**tiny, out=str(tmp_path / "a")))
    with pytest.raises(cli.Interrupted, match="checkpoint at step"):
        part2.train(part2.Config(**tiny, out=str(tmp_path / "b")), stop=StopAt(13))
    resumed = part2.resume(part2.Config(**tiny, out=str(tmp_path / "b")))
    for key in ("step", "loss", "accuracy", "lr", "eval", "samples"):
        assert whole[key] == resumed[key], key


def test_sweep_stopped_run_resumes_to_the_uninterrupted_one(tmp_path):
    settings = dict(input_lengths=[3, 5], seeds=[1], num_hidden=5, batch_size=3, train_steps=30, eval_every=10,
                    eval_batches=1, checkpoint_every=100, device="cpu")
    whole = part1_sweep.sweep("lstm", out=str(tmp_path / "a"), progress=False, **settings)
    with pytest.raises(cli.Interrupted, match="checkpoint at step"):
        part1_sweep.sweep("lstm", out=str(tmp_path / "b"), progress=False, stop=StopAt(17), **settings)
    resumed = part1_sweep.sweep("lstm", out=str(tmp_path / "b"), progress=False, **settings)
    assert resumed["runs"] == whole["runs"] and resumed["complete"] and resumed["sessions"] == 2
