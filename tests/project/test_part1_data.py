"""The palindrome data and the Part 1 training command (boilerplate: ungraded, complete in both packages)."""
from __future__ import annotations

import json

import pytest
import torch

from solutions.part1.palindrome import palindrome_batch, palindrome_stream, palindromes
from solutions.part1 import train as train_module


@pytest.mark.parametrize("length", [2, 3, 4, 5, 6, 11, 21])
def test_palindromes_read_the_same_both_ways(length):
    digits = palindromes(64, length, torch.Generator().manual_seed(length))
    assert digits.shape == (64, length) and digits.dtype == torch.int64
    assert torch.equal(digits, digits.flip(1))
    assert digits.min() >= 0 and digits.max() <= 9


def test_odd_length_does_not_repeat_the_middle_digit():
    g = torch.Generator().manual_seed(0)
    half = torch.randint(10, (1, 3), generator=torch.Generator().manual_seed(0))
    digits = palindromes(1, 5, g)
    assert digits.tolist() == [half[0].tolist() + half[0, :2].flip(0).tolist()]


def test_batch_is_the_first_input_length_digits_and_the_last_digit():
    """input_length T: the model sees T digits; the palindrome has T + 1 digits."""
    x, y = palindrome_batch(256, input_length=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (256, 10) and x.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64
    full = torch.cat([x.long(), y[:, None]], dim=1)
    assert torch.equal(full, full.flip(1)), "x followed by y is a palindrome of length input_length + 1"
    assert torch.equal(y, x[:, 0].long()), "the target is the first digit"
    assert len(y.unique()) == 10, "targets cover all ten digits"


def test_one_hot_inputs():
    x, y = palindrome_batch(8, 4, torch.Generator().manual_seed(0), one_hot=True)
    assert x.shape == (8, 4, 10)
    assert torch.equal(x.sum(-1), torch.ones(8, 4))
    assert torch.equal(x[:, 0].argmax(-1), y)


def test_stream_is_endless_and_reproducible():
    a, b, c = palindrome_stream(5, 4, seed=1), palindrome_stream(5, 4, seed=1), palindrome_stream(5, 4, seed=2)
    for _ in range(50):
        (xa, ya), (xb, yb), (xc, _) = next(a), next(b), next(c)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0, "input_length": 5}, "batch_size"),
    ({"batch_size": 4, "input_length": 0}, "input_length"),
    ({"batch_size": 4, "input_length": 2.5}, "input_length"),
])
def test_bad_sizes_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        palindrome_batch(**kwargs)


def test_models_reject_wrong_input_shapes():
    from solutions.part1.models import LSTM, VanillaRNN
    with pytest.raises(ValueError, match=r"\[B, T, 3\]"):
        VanillaRNN(input_dim=3, num_hidden=4)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="length 0"):
        LSTM(input_dim=1, num_hidden=4)(torch.zeros(2, 0))


def test_train_command_records_settings_versions_and_curves(tmp_path):
    out = tmp_path / "run.json"
    train_module.main(["--model", "lstm", "--input-length", "4", "--train-steps", "20", "--eval-every", "10",
                       "--num-hidden", "8", "--batch-size", "16", "--device", "cpu", "--seed", "3", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["settings"]["input_length"] == 4 and record["settings"]["seed"] == 3
    assert record["settings"]["model"] == "lstm" and record["device"] == "cpu"
    assert record["versions"]["torch"] == torch.__version__
    assert record["curve"]["step"] == [10, 20]
    assert 0 <= record["final_eval_accuracy"] <= 1
    assert "wall_time_s" in record and record["command"]


def test_train_is_reproducible():
    kwargs = dict(model="rnn", input_length=4, train_steps=30, eval_every=10, num_hidden=8, batch_size=16,
                  device="cpu", progress=False, seed=5)
    assert train_module.train(**kwargs)["curve"] == train_module.train(**kwargs)["curve"]


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="--model gru is not one of"):
        train_module.train(model="gru", train_steps=1, progress=False)
