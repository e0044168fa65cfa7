"""The students' sweep command, solutions/part1/sweep.py (assignment/part1/sweep.py in their package).

With tiny settings: every (model, input length, seed) lands in one result file, each run is exactly
what train() returns for its settings, a rerun trains only the missing runs, other settings or bad
input stop it with one line and exit 2 before any work, Ctrl-C keeps the finished runs and prints
the command that resumes, ``--resume`` alone finishes a sweep with the settings and grid of its
file, and the command runs from the generated assignment package, where it trains the package's own
code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from solutions import cli
from solutions.part1 import sweep as sweep_module
from solutions.part1.train import Config, train

ROOT = Path(__file__).resolve().parents[2]
TINY = {"train_steps": 30, "num_hidden": 8, "eval_every": 10}
TINY_ARGS = ["--steps", "30", "--num-hidden", "8", "--eval-every", "10", "--input-lengths", "3-4", "--seeds", "0"]
GRID = {(m, t, 0) for m in ("rnn", "lstm") for t in (3, 4)}


def command(*args: str, module: str = "solutions.part1.sweep", cwd: Path = ROOT, timeout: float = 120):
    """Run the sweep as students do, ``python -m <module> ...``, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def runs_by_key(path: Path) -> dict:
    return {sweep_module.run_key(run): run for run in json.loads(path.read_text())["runs"]}


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    """One sweep of both models, T = 3 and 4, seed 0, in two worker processes."""
    out = tmp_path_factory.mktemp("sweep") / "sweep.json"
    done = command(*TINY_ARGS, "--workers", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.timeout(300)  # its fixture runs the sweep: a minute on two idle cores
def test_every_run_is_what_train_returns(full):
    record = json.loads(full.read_text())
    assert record["settings"] == {**sweep_module.TRAIN_DEFAULTS, **TINY}
    assert record["grid"] == {"models": ["rnn", "lstm"], "input_lengths": [3, 4], "seeds": [0]}
    assert record["workers"] == 2 and record["command"].startswith("python -m solutions.part1.sweep")
    runs = runs_by_key(full)
    assert set(runs) == GRID
    for (model, t, seed), run in runs.items():
        reference = train(model=model, input_length=t, seed=seed, progress=False, **TINY)
        assert run["curve"] == {k: reference["curve"][k] for k in ("step", "eval_accuracy")}, (model, t)
        assert run["final_eval_accuracy"] == reference["final_eval_accuracy"]
        assert run["best_eval_accuracy"] == reference["best_eval_accuracy"]
        assert run["late_eval_accuracy"] == sweep_module.late_accuracy(reference["curve"]["eval_accuracy"])


def test_late_accuracy_is_the_median_of_the_last_evaluations():
    assert sweep_module.LATE_EVALUATIONS == 10
    assert sweep_module.late_accuracy([0.0] * 5 + [1.0] * 9 + [0.2]) == 1.0  # one dip at the end is ignored
    assert sweep_module.late_accuracy([0.1, 0.3]) == 0.2


def test_the_options_and_defaults_are_those_of_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, options, done = sweep_module.parse_args([])
    settings = sweep_module.training_settings(config)
    assert settings == {k: v for k, v in asdict(Config()).items() if k not in sweep_module.NOT_SETTINGS}
    assert (config.models, config.input_lengths, config.seeds) == (["rnn", "lstm"], list(range(5, 21)), [0, 1, 2])
    assert options["workers"] == sweep_module.usable_cores() and done == {} and not options["resume"]
    assert options["out"] == Path("results/part1/sweep.json")


def test_a_rerun_trains_only_the_missing_runs(full, tmp_path):
    out = tmp_path / "sweep.json"
    record = json.loads(full.read_text())
    kept = [dict(run, wall_time_s=-1.0) for run in record["runs"] if run["model"] == "rnn"]  # -1: a marker
    out.write_text(json.dumps({**record, "runs": kept}, indent=1))
    done = command(*TINY_ARGS, "--workers", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 of 4 runs are in" in done.stdout and "training 2 in 2 processes" in done.stdout
    after, before = runs_by_key(out), runs_by_key(full)
    assert set(after) == GRID
    for key, run in after.items():
        if key[0] == "rnn":
            assert json.dumps(run) == json.dumps(next(r for r in kept if sweep_module.run_key(r) == key))
        else:  # trained again, to the same curve
            assert run["wall_time_s"] >= 0 and run["curve"] == before[key]["curve"]
    again = command(*TINY_ARGS, "--out", str(out))
    assert again.returncode == 0 and "4 of 4 runs are in" in again.stdout and "training 0" in again.stdout
    assert runs_by_key(out) == after


def one_line_error(capsys, argv: list[str]) -> str:
    """stderr of the command, as ``python -m`` runs it, which must be one line ``error: ...`` and exit status 2."""
    try:
        status = cli.run(sweep_module.main, argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_other_settings_stop_before_any_work(full, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    shutil.copy(full, out)
    text = out.read_text()
    err = one_line_error(capsys, [*TINY_ARGS, "--train-steps", "31", "--out", str(out)])  # the old spelling, hidden
    assert "--steps 30, not 31" in err and "--resume" in err and "another --out" in err
    err = one_line_error(capsys, [*TINY_ARGS, "--learning-rate", "0.01", "--out", str(out)])
    assert "--learning-rate 0.001, not 0.01" in err
    assert out.read_text() == text


def test_resume_takes_the_settings_and_the_grid_from_the_file(full, tmp_path):
    out = tmp_path / "sweep.json"
    record = json.loads(full.read_text())
    out.write_text(json.dumps({**record, "runs": [run for run in record["runs"] if run["model"] == "rnn"]}))
    done = command("--resume", "--out", str(out), "--workers", "2", "--device", "cpu")  # nothing else retyped
    assert done.returncode == 0, done.stderr
    assert "2 of 4 runs are in" in done.stdout and "training 2 in 2 processes" in done.stdout
    after = json.loads(out.read_text())
    assert after["settings"] == {**record["settings"], "device": "cpu"} and after["grid"] == record["grid"]
    before = runs_by_key(full)
    assert {key: run["curve"] for key, run in runs_by_key(out).items()} == {k: r["curve"] for k, r in before.items()}


@pytest.mark.parametrize("argv, says", [
    (["--steps", "31"], "--resume: {out} was made with --steps 30, not 31; only --device may change"),
    (["--seeds", "0", "1"], "--resume: {out} was made with --seeds 0, not 0 1; only --device may change"),
    (["--input-lengths", "3-5"], "was made with --input-lengths 3 4, not 3 4 5"),
    (["--one-hot"], "was made with --one-hot False, not True"),
])
def test_resume_refuses_other_settings(argv, says, full, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    shutil.copy(full, out)
    text = out.read_text()
    assert says.format(out=out) in one_line_error(capsys, ["--resume", "--out", str(out), *argv])
    assert out.read_text() == text
    # the same values typed again are no change
    config, _, _ = sweep_module.parse_args(["--resume", "--out", str(out), "--input-lengths", "3-4", "--steps", "30"])
    assert config.train_steps == 30 and config.input_lengths == [3, 4] and config.num_hidden == 8


def test_resume_needs_a_sweep_that_records_its_grid(full, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert one_line_error(capsys, ["--resume", "--out", str(out)]).startswith(f"error: --resume: no sweep in {out}")
    record = json.loads(full.read_text())
    del record["grid"]  # a file of the sweep before --resume
    out.write_text(json.dumps(record))
    err = one_line_error(capsys, ["--resume", "--out", str(out)])
    assert "does not record its models" in err and record["command"] in err


@pytest.mark.parametrize("argv, says", [
    (["--models", "gru"], "--models gru is not one of rnn, lstm"),
    (["--input-lengths", "5-3"], "must not be empty"),
    (["--input-lengths", "five"], "ranges like 3-9"),
    (["--input-lengths", "0-4"], "must be positive"),
    (["--seeds"], "expected at least one"),
    (["--steps", "0"], "--steps 0 is too small: it must be at least 1"),
    (["--learning-rate", "0"], "--learning-rate 0.0 is too small: it must be above 0"),
    (["--workers", "0"], "--workers must be positive"),
    (["--device", "tpu"], "device"),
    (["--out", "{file}/sweep.json"], "cannot be written"),
    (["--out", "{tmp}"], "cannot be written (it is a folder)"),
    (["--out", "{file}"], "not the result file of a sweep"),
])
def test_bad_input_is_one_line_and_exit_2(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a sweep\n")
    argv = [a.format(file=tmp_path / "notes.txt", tmp=tmp_path) for a in argv]
    assert says in one_line_error(capsys, [*TINY_ARGS, *argv])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written, not even a folder


def test_bad_input_from_the_command_line():
    done = command(*TINY_ARGS, "--workers", "0")
    assert done.returncode == 2 and done.stderr == "error: --workers must be positive, got 0\n"


def test_ctrl_c_keeps_the_finished_runs_and_says_how_to_resume(tmp_path):
    out = tmp_path / "sweep.json"
    # T = 1 finishes in a second, T = 1000 would take a minute
    args = ["--models", "rnn", "--input-lengths", "1", "1000", "--seeds", "0", "--steps", "1000",
            "--num-hidden", "8", "--workers", "2", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "solutions.part1.sweep", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and json.loads(out.read_text())["runs"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: 1 finished runs kept in")
    assert last.endswith(f"resume with: python -m solutions.part1.sweep --resume --out {out}")
    assert set(runs_by_key(out)) == {("rnn", 1, 0)}
    assert json.loads(out.read_text())["grid"] == {"models": ["rnn"], "input_lengths": [1, 1000], "seeds": [0]}


def test_it_runs_in_the_student_package_on_the_students_code(full, tmp_path):
    package = tmp_path / "assignment"
    shutil.copytree(ROOT / "assignment", package, ignore=shutil.ignore_patterns("__pycache__"))
    # the pristine stubs: the sweep runs the package's own train(), which stops at the first stub
    stubs = command(*TINY_ARGS, "--workers", "1", "--out", "stubs.json", module="assignment.part1.sweep", cwd=tmp_path)
    assert stubs.returncode == 1 and "NotImplementedError: Question 1." in stubs.stderr
    assert "solutions" not in stubs.stderr  # no reference code was imported
    # the stubs filled in (with the reference): the same runs as the reference package's sweep
    for source in (ROOT / "solutions").rglob("*.py"):
        shutil.copy(source, package / source.relative_to(ROOT / "solutions"))
    done = command(*TINY_ARGS, "--workers", "2", "--out", "results/sweep.json", module="assignment.part1.sweep",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "sweep.json"
    assert json.loads(out.read_text())["command"].startswith("python -m assignment.part1.sweep")
    after, before = runs_by_key(out), runs_by_key(full)
    assert set(after) == GRID and all(after[key]["curve"] == before[key]["curve"] for key in GRID)


def test_plot_accuracy_vs_length(full):
    import matplotlib
    matplotlib.use("Agg")
    fig, ax = sweep_module.plot_accuracy_vs_length(sweep_module.load_sweep(full))
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["rnn (median over seeds)", "rnn (one dot per seed)", "lstm (median over seeds)",
                      "lstm (one dot per seed)", "chance (0.1)"]
    assert "input length" in ax.get_xlabel() and "held-out accuracy" in ax.get_ylabel()
    import matplotlib.pyplot as plt
    plt.close(fig)
