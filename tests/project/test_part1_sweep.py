"""The batched engine (solutions/part1/stacked.py) of the sweep (experiments/part1_sweep.py) trains the same
models as separate runs would.

In float64, for the RNN and the LSTM and several input lengths (and seeds) at once, the stacked
models' losses, accuracies, clipped gradients and updated weights equal, step by step, those of
separately trained reference models (solutions.part1.models, solutions.part1.train.train_step with
its own RMSprop) from the same initial weights on the same batches. Then: a sweep that is killed
and rerun ends with the same result as one that ran without interruption.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.part1_sweep import balanced_shards, sweep
from solutions.part1.stacked import (BatchedTrainer, StackedModels, StackedRecurrence, batch_of_all, held_out_batches,
                                     initial_models, left_pad, model_slots)
from solutions.part1.sweep import parse_lengths
from solutions.common import seed_everything
from solutions.part1.models import MODELS
from solutions.part1.palindrome import palindrome_stream
from solutions.part1.train import HELD_OUT_SEED_OFFSET, evaluate, train_step

ROOT = Path(__file__).resolve().parents[2]
TIGHT = {"rtol": 1e-10, "atol": 1e-12}
# the sweep runs on a GPU when one is present: its arithmetic is checked there too, where there is one
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


@pytest.mark.parametrize("skip_padding, fused", [(True, True), (True, False), (False, False)],
                         ids=["skip-padding-fused", "skip-padding-autograd", "masked"])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("device", DEVICES)
def test_batched_models_equal_separate_models_float64(kind, skip_padding, fused, device):
    slots = model_slots([5, 9, 7, 6], [0, 3])  # 8 models, longest first
    hidden, batch, steps, lr = 12, 6, 4, 0.01
    max_norm = {"rnn": 2.0, "lstm": 0.9}[kind]  # between the models' gradient norms: some are clipped
    stack = initial_models(kind, slots, input_dim=1, num_hidden=hidden, dtype=torch.float64).to(device)
    trainer = BatchedTrainer(stack, learning_rate=lr, max_norm=max_norm, skip_padding=skip_padding, fused=fused)
    references = []
    for t, seed in slots:  # exactly what solutions.part1.train.train builds
        seed_everything(seed)
        net = MODELS[kind](input_dim=1, num_hidden=hidden, num_classes=10).double()
        references.append((net, torch.optim.RMSprop(net.parameters(), lr=lr), palindrome_stream(t, batch, seed=seed)))
    for m, (net, _, _) in enumerate(references):
        for name, value in stack.reference_tensors(m).items():
            assert torch.equal(value.cpu(), dict(net.named_parameters())[name].detach()), f"initial {name} of model {m}"

    generators = [torch.Generator().manual_seed(seed) for _, seed in slots]
    clipped, unclipped = 0, 0
    for step in range(steps):
        x, y = batch_of_all(slots, generators, batch, False, torch.float64, device)
        losses, accuracies = trainer.step(x, y)
        x, y = x.cpu(), y.cpu()
        clipped += int((trainer.grad_norms > max_norm).sum())
        unclipped += int((trainer.grad_norms <= max_norm).sum())
        for m, ((t, _), (net, optimizer, stream)) in enumerate(zip(slots, references)):
            x_ref, y_ref = next(stream)
            assert torch.equal(x[m, :, -t:, 0], x_ref.double()) and torch.equal(y[m], y_ref), "same batches"
            assert not x[m, :, :-t].any(), "left padding is zeros"
            loss, acc = train_step(net, optimizer, x_ref.double(), y_ref, max_norm)
            torch.testing.assert_close(losses[m].item(), loss, **TIGHT)
            assert accuracies[m].item() == pytest.approx(acc)
            grads, weights = (stack.reference_tensors(m, grad=grad) for grad in (True, False))
            for name, p in net.named_parameters():
                where = f"model {m}, step {step}"
                torch.testing.assert_close(grads[name].cpu(), p.grad, **TIGHT, msg=f"clipped grad {name}, {where}")
                torch.testing.assert_close(weights[name].cpu(), p.detach(), **TIGHT, msg=f"{name}, {where}")
    assert clipped and unclipped, "the check must see clipped and unclipped models"

    held_out = held_out_batches(slots, batch, 2, False, torch.float64, device)
    eval_losses, eval_accs = trainer.evaluate(held_out)
    for m, ((t, seed), (net, _, _)) in enumerate(zip(slots, references)):
        stream = palindrome_stream(t, batch, seed=seed + HELD_OUT_SEED_OFFSET)
        loss, acc = evaluate(net, [(x.double(), y) for x, y in (next(stream), next(stream))])
        torch.testing.assert_close(eval_losses[m].item(), loss, **TIGHT)
        assert eval_accs[m].item() == pytest.approx(acc)


def logits_and_grads(stack: StackedModels, x: torch.Tensor, fused: bool) -> list[torch.Tensor]:
    """The stack's logits on x (cast to its dtype) and its parameters' gradients of a fixed weighted sum of them."""
    stack.zero_grad()
    logits = stack(x.to(stack.b.dtype), fused=fused)
    weights = torch.linspace(-1, 1, logits.numel(), dtype=torch.float64).view_as(logits).to(logits)
    (logits * weights).sum().backward()
    return [logits.detach()] + [p.grad.clone() for p in stack.parameters()]


@pytest.mark.parametrize("input_dim", [1, 3])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("device", DEVICES)
def test_stacked_recurrence_gradcheck(kind, input_dim, device):
    """The hand-written backward pass of StackedRecurrence against finite differences, and its
    forward pass and gradients against the autograd loop, in float64 on tiny sizes."""
    lengths, hidden, batch = [4, 3, 3, 1], 3, 2
    torch.manual_seed(0)
    stack = StackedModels(kind, lengths, input_dim=input_dim, num_hidden=hidden, dtype=torch.float64)
    for p in stack.parameters():
        torch.nn.init.normal_(p, std=0.7)
    stack.to(device)
    x = torch.randn(len(lengths), batch, lengths[0], input_dim, dtype=torch.float64).to(device)
    for m, t in enumerate(lengths):
        x[m, :, :lengths[0] - t] = 0  # left padding
    weights = [stack.W_x, stack.W_h, stack.b]
    recurrence = lambda W_x, W_h, b: StackedRecurrence.apply(x, W_x, W_h, b, stack.active, kind == "lstm")  # noqa: E731
    assert torch.autograd.gradcheck(recurrence, weights)

    for fused, plain in zip(logits_and_grads(stack, x, fused=True), logits_and_grads(stack, x, fused=False)):
        torch.testing.assert_close(fused, plain, **TIGHT)


def test_tanh_as_a_sigmoid_keeps_float32_accuracy():
    """StackedRecurrence computes tanh(a) as 2 sigmoid(2a) - 1 (the same function, faster on a CPU). In float32
    that is within 2 units in the last place of 1 of the exact tanh (torch.tanh: 0.3), and the logits and gradients of
    the hand-written recurrence stay within float32 rounding of the float64 ones, as those of the autograd loop
    (torch.tanh) do."""
    a = torch.linspace(-12, 12, 240_001)
    as_sigmoid = torch.add(torch.tensor(-1.0), torch.sigmoid(2 * a), alpha=2)
    assert (as_sigmoid.double() - torch.tanh(a.double())).abs().max() <= 2 * 2.0 ** -23

    for kind in ("rnn", "lstm"):
        torch.manual_seed(2)
        stack64 = StackedModels(kind, [20, 13, 5], input_dim=1, num_hidden=32, dtype=torch.float64)
        for p in stack64.parameters():
            torch.nn.init.normal_(p, std=0.25)
        x = torch.randint(0, 10, (3, 16, 20, 1)).double()
        exact = logits_and_grads(stack64, x, fused=False)
        stack32 = StackedModels(kind, [20, 13, 5], input_dim=1, num_hidden=32)
        with torch.no_grad():
            for p32, p64 in zip(stack32.parameters(), stack64.parameters()):
                p32.copy_(p64)
        for fused, plain, truth in zip(logits_and_grads(stack32, x, True), logits_and_grads(stack32, x, False), exact):
            # both are float32 rounding away from float64: measured 0.5e-7 to 4e-7 of the largest value
            fused, plain, scale = fused.double(), plain.double(), truth.abs().max()
            assert (fused - truth).abs().max() <= 1e-6 * scale and (plain - truth).abs().max() <= 1e-6 * scale


def test_stacked_recurrence_reuses_its_buffers_only_once_they_are_free():
    torch.manual_seed(1)
    stack = StackedModels("lstm", [4, 2], input_dim=1, num_hidden=3, dtype=torch.float64)
    for p in stack.parameters():
        torch.nn.init.normal_(p)
    x1, x2 = torch.randn(2, 2, 2, 4, 1, dtype=torch.float64)

    def grads(fused: bool) -> list[torch.Tensor]:
        stack.zero_grad()
        first = stack(x1, fused=fused)
        stack(x2, fused=fused).sum().backward()  # while the graph of the first call is alive
        first.pow(2).sum().backward()
        return [p.grad.clone() for p in stack.parameters()]

    for fused, plain in zip(grads(True), grads(False)):
        torch.testing.assert_close(fused, plain, **TIGHT)
    buffers = [b.data_ptr() for b in stack._workspace["buffers"]]
    stack(x1).sum().backward()
    with torch.no_grad():
        stack(x2)
    assert [b.data_ptr() for b in stack._workspace["buffers"]] == buffers, "free buffers are reused"


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="longest first"):
        StackedModels("rnn", [5, 7], input_dim=1, num_hidden=4)
    with pytest.raises(ValueError, match="kind"):
        StackedModels("gru", [5], input_dim=1, num_hidden=4)
    with pytest.raises(ValueError, match="expected input"):
        StackedModels("lstm", [7, 5], input_dim=1, num_hidden=4)(torch.zeros(2, 3, 6, 1))
    with pytest.raises(ValueError, match="ranges like 3-9"):
        parse_lengths(["five"])
    assert parse_lengths(["5-8", "12"]) == [5, 6, 7, 8, 12]
    assert left_pad([torch.ones(2, 3), torch.ones(2, 1)], 3)[1, :, :, 0].tolist() == [[0, 0, 1], [0, 0, 1]]


TINY = ["--models", "rnn", "lstm", "--input-lengths", "3-5", "--seeds", "0", "1", "--num-hidden", "6",
        "--batch-size", "4", "--eval-every", "10", "--eval-batches", "2", "--device", "cpu"]


def run_sweep(out: Path, steps: int, checkpoint_every: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "experiments.part1_sweep", *TINY, "--steps", str(steps),
                             "--checkpoint-every", str(checkpoint_every), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def results(out: Path) -> dict:
    """What must not depend on interruptions: every curve and final number of every run."""
    return {kind: json.loads((out / f"{kind}.json").read_text())["runs"] for kind in ("rnn", "lstm")}


@pytest.mark.timeout(180)  # three fresh interpreters that import torch; slow on a busy machine
def test_a_killed_sweep_resumes_to_the_same_result(tmp_path):
    steps = 200
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_sweep(whole, steps, 20).wait(timeout=600) == 0
    proc = run_sweep(killed, steps, 20)
    deadline = time.time() + 300
    while not (killed / "rnn.json").exists() and time.time() < deadline and proc.poll() is None:  # after a checkpoint
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((killed / "rnn.json").read_text())
    assert not partial["complete"] and 0 < partial["steps_done"] < steps, "the kill must land mid-run"
    assert run_sweep(killed, steps, 20).wait(timeout=600) == 0
    done = json.loads((killed / "rnn.json").read_text())
    assert done["complete"] and done["sessions"] == 2 and not (killed / "rnn.ckpt.pt").exists()
    assert results(killed) == results(whole)


def test_a_stopped_sweep_resumes_in_process_and_refuses_other_settings(tmp_path):
    settings = dict(input_lengths=[4, 6], seeds=[2], num_hidden=5, batch_size=3, train_steps=40, eval_every=10,
                    eval_batches=1, checkpoint_every=10, device="cpu", progress=False)
    whole = sweep("lstm", out=tmp_path / "a", **settings)
    part = sweep("lstm", out=tmp_path / "b", stop_after=25, **settings)
    assert not part["complete"] and part["steps_done"] == 25
    with pytest.raises(ValueError, match="other settings"):
        sweep("lstm", out=tmp_path / "b", **{**settings, "num_hidden": 7})
    resumed = sweep("lstm", out=tmp_path / "b", **settings)
    assert resumed["runs"] == whole["runs"] and resumed["complete"]
    assert sweep("lstm", out=tmp_path / "b", **settings) == json.loads((tmp_path / "b" / "lstm.json").read_text())
    with pytest.raises(ValueError, match="other settings"):  # finished results are never overwritten
        sweep("lstm", out=tmp_path / "b", **{**settings, "train_steps": 20})
    assert whole["eval_steps"] == [10, 20, 30, 40]


def test_shards_deal_out_every_model_once_with_equal_work():
    slots = model_slots(range(5, 21), [0, 1])
    shards = balanced_shards(slots, 2)
    assert sorted(slot for shard in shards for slot in shard) == sorted(slots)
    assert [sum(t for t, _ in shard) for shard in shards] == [200, 200]
    assert all(shard == sorted(shard, key=lambda slot: -slot[0]) for shard in shards), "each shard longest first"
    for bad in (0, 33, 1.5):
        with pytest.raises(ValueError, match="workers must be"):
            balanced_shards(slots, bad)


@pytest.mark.timeout(240)  # each sweep starts two interpreters that import torch
def test_workers_train_the_same_models_and_resume_their_shards(tmp_path):
    settings = dict(input_lengths=[3, 4, 5], seeds=[0, 1], num_hidden=5, batch_size=3, train_steps=40,
                    eval_every=10, eval_batches=1, checkpoint_every=10, device="cpu", progress=False)
    whole = sweep("rnn", out=tmp_path / "one", **settings)
    part = sweep("rnn", out=tmp_path / "two", workers=2, stop_after=25, **settings)
    assert not part["complete"] and part["steps_done"] == 25
    assert sorted(p.name for p in (tmp_path / "two").glob("*.ckpt.pt")) == ["rnn.shard1of2.ckpt.pt",
                                                                            "rnn.shard2of2.ckpt.pt"]
    for workers in (1, 3):  # the shards' checkpoints are not left behind by a run split otherwise
        with pytest.raises(ValueError, match="resume it with --workers 2"):
            sweep("rnn", out=tmp_path / "two", workers=workers, **settings)
    done = sweep("rnn", out=tmp_path / "two", workers=2, **settings)
    assert done["complete"] and done["sessions"] == 2 and done["workers"] == 2
    assert done["runs"] == whole["runs"] and done["settings"] == whole["settings"]
    dealt = [tuple(slot) for shard in done["shards"] for slot in shard["slots"]]
    assert sorted(dealt) == sorted(model_slots([3, 4, 5], [0, 1]))
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["rnn.json"]
    assert sweep("rnn", out=tmp_path / "two", workers=2, **settings) == done  # finished: not trained again


def test_the_benchmark_runs_and_records_both_clocks(tmp_path, capsys):
    from experiments.part1_benchmark import main, step_flops
    # T = 2, B = H = d = G = 1, K = 10: one recurrent product (h_0 = 0 needs none) forward, for dW_h and for dh_1;
    # two input products forward and for dW_x; the output layer forward, for dW_ph and for dh_T
    assert step_flops("rnn", [2], batch=1, hidden=1) == 3 * 2 + 2 * 2 * 2 + 3 * 2 * 10
    record = main(["--input-lengths", "3-4", "--num-hidden", "4", "--batch-size", "2", "--warmup", "0",
                   "--repeats", "1", "--device", "cpu", "--workers", "2", "--out", str(tmp_path / "b.json")])
    assert "process time" in capsys.readouterr().out
    for row in record["rows"]:
        assert row["models"] == 2 and row["workers"] == 2 and row["batched_cpu_s"] > 0
        assert row["separate_workers_cpu_s"] > 0 and row["batched_workers_cpu_s"] > 0, "the workers' time is counted"
        # against the best of the baselines, in one process and in workers, and the best matmul rate
        baseline = min(row["separate_s"], row["separate_workers_s"])
        assert row["speedup_vs_separate"] == round(baseline / max(row[row["best_batched"] + "_s"], 1e-9), 2)
        assert row[row["best_matmul"] + "_gflops"] == max(row["matmul_gflops"], row["matmul_workers_gflops"])
    assert json.loads((tmp_path / "b.json").read_text())["rows"] == record["rows"]
