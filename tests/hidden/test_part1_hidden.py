"""Hidden graded tests: not in the student release, counted by the autograder (3 points).

They check the same questions as the public suite from another angle, so that code fitted to the
public tests alone does not collect every point. Gradescope shows them after the due date. They run
the student's code only through the public probes of ``tests/graded/test_part1.py``.
"""
from __future__ import annotations

import pytest
import torch

import torch.nn.functional as F

from tests.graded.test_part1 import (close, gradients_by_hand, logits, lstm_shapes, random_weights, rnn_shapes,
                                     step_states, torch_lstm, torch_rnn)

B, T, N, K = 4, 6, 7, 10


@pytest.mark.points(1, question="1.6", visibility="after_due_date")
def test_lstm_on_one_hot_digits_matches_torch(run):
    """LSTM with one-hot digit input (input_dim 10, length 6) gives torch.nn.LSTM's logits"""
    weights = random_weights(lstm_shapes(d=K, n=N, k=K), seed=3)
    g = torch.Generator().manual_seed(5)
    digits = torch.randint(K, (B, T), generator=g)
    x = torch.nn.functional.one_hot(digits, K).double()  # [B, T, 10]
    states = run(step_states, cls_name="LSTM", weights=weights, x=x)
    assert len(states) == T and all(len(state) == 2 for state in states), "LSTM.step returns the pair (h(t), c(t))"
    # A one-hot input selects one column of each W_zx: check the first step by hand.
    h, c = states[0]
    col = {z: weights[f"W_{z}x"][:, digits[:, 0]].T + weights[f"b_{z}"] for z in "gifo"}  # [B, N]
    c_ref = torch.tanh(col["g"]) * torch.sigmoid(col["i"])
    torch.testing.assert_close(c, c_ref, msg=close("c(1) from h(0) = c(0) = 0 is not tanh(g) * sigmoid(i)"))
    torch.testing.assert_close(h, torch.tanh(c_ref) * torch.sigmoid(col["o"]),
                               msg=close("h(1) is not tanh(c(1)) * sigmoid(o)"))
    with torch.no_grad():
        hidden, _ = torch_lstm(weights)(x)  # [B, T, N]
    for t, (h, _) in enumerate(states):
        torch.testing.assert_close(h, hidden[:, t], msg=close(f"hidden state h({t + 1}) differs from torch.nn.LSTM's"))
    torch.testing.assert_close(run(logits, cls_name="LSTM", weights=weights, x=x),
                               hidden[:, -1] @ weights["W_ph"].T + weights["b_p"],
                               msg=close("LSTM(x) differs from W_ph h(T) + b_p"))


@pytest.mark.points(1, question="1.2", visibility="after_due_date")
def test_rnn_other_sizes_match_torch(run):
    """VanillaRNN with one hidden unit, a batch of one, three input features and longer sequences gives torch.nn.RNN's
    hidden states and logits"""
    for d, n, k, batch, steps, seed in ((3, 1, 2, 1, 4, 21), (3, 4, 3, 1, 11, 22), (1, 6, 5, 2, 9, 23)):
        weights = random_weights(rnn_shapes(d=d, n=n, k=k), seed=seed)
        x = torch.randn(batch, steps, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        states = run(step_states, cls_name="VanillaRNN", weights=weights, x=x)
        with torch.no_grad():
            hidden, _ = torch_rnn(weights)(x)  # [batch, steps, n]
        assert len(states) == steps, f"{len(states)} states for {steps} steps"
        for t, h in enumerate(states):
            torch.testing.assert_close(h, hidden[:, t], msg=close(f"input_dim {d}, num_hidden {n}, batch {batch}: "
                                                                  f"h({t + 1}) differs from torch.nn.RNN's"))
        got = run(logits, cls_name="VanillaRNN", weights=weights, x=x[..., 0] if d == 1 else x)
        torch.testing.assert_close(got, hidden[:, -1] @ weights["W_ph"].T + weights["b_p"],
                                   msg=close(f"input_dim {d}, num_hidden {n}, batch {batch}, {steps} steps: "
                                             "VanillaRNN(x) differs from W_ph h(T) + b_p"))


@pytest.mark.points(1, question="1.1", visibility="after_due_date")
def test_rnn_gradients_other_sizes(run):
    """rnn_gradients matches autograd for one time step, a batch of one and other sizes"""
    for n, k, batch, steps, seed in ((4, 3, 1, 1, 31), (3, 4, 5, 9, 32), (1, 2, 2, 3, 33)):
        g = torch.Generator().manual_seed(seed)
        weights = {name: 0.8 * torch.randn(shape, generator=g, dtype=torch.float64)
                   for name, shape in rnn_shapes(d=1, n=n, k=k).items()}
        x = torch.randn(batch, steps, generator=g, dtype=torch.float64)
        y = torch.randint(k, (batch,), generator=g)
        grad_W_ph, grad_W_hh = run(gradients_by_hand, weights=weights, x=x, y=y)
        w = {name: v.clone().requires_grad_() for name, v in weights.items()}
        h = torch.zeros(batch, n, dtype=torch.float64)
        for t in range(steps):
            h = torch.tanh(x[:, t:t + 1] @ w["W_hx"].T + h @ w["W_hh"].T + w["b_h"])
        F.cross_entropy(h @ w["W_ph"].T + w["b_p"], y).backward()
        where = f"num_hidden {n}, num_classes {k}, batch {batch}, {steps} steps"
        torch.testing.assert_close(grad_W_ph, w["W_ph"].grad, msg=close(f"{where}: dL/dW_ph differs from autograd's"))
        torch.testing.assert_close(grad_W_hh, w["W_hh"].grad, msg=close(f"{where}: dL/dW_hh differs from autograd's"))
