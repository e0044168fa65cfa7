"""Hidden graded tests: not in the student release, counted by the autograder (1 point).

They check the same questions as the public suite from another angle, so that code fitted to the
public tests alone does not collect every point. Gradescope shows them after the due date. They run
the student's code only through the public probes of ``tests/graded/test_part1.py``.
"""
from __future__ import annotations

import pytest
import torch

from tests.graded.test_part1 import close, logits, lstm_shapes, random_weights, step_states, torch_lstm

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
