"""Hidden graded tests: not in the student release, counted by the autograder (1 point).

They check the same questions as the public suite from another angle, so that code fitted to the
public tests alone does not collect every point. Gradescope shows them after the due date.
"""
from __future__ import annotations

import pytest
import torch

from tests.graded.test_part1 import randomise_biases, torch_lstm

B, T, N, K = 4, 6, 7, 10


@pytest.mark.points(1, question="1.6", visibility="after_due_date")
def test_lstm_on_one_hot_digits_matches_torch(load):
    """LSTM with one-hot digit input (input_dim 10, length 6) gives torch.nn.LSTM's logits"""
    models = load("part1.models")
    torch.manual_seed(3)
    model = models.LSTM(input_dim=K, num_hidden=N, num_classes=K).double()
    randomise_biases(model, seed=4)
    g = torch.Generator().manual_seed(5)
    digits = torch.randint(K, (B, T), generator=g)
    x = torch.nn.functional.one_hot(digits, K).double()
    # A one-hot input selects one column of each W_zx: check the first step by hand.
    h, c = model.step(x[:, 0], (x.new_zeros(B, N), x.new_zeros(B, N)))
    col = {z: getattr(model, f"W_{z}x")[:, digits[:, 0]].T + getattr(model, f"b_{z}") for z in "gifo"}
    c_ref = torch.tanh(col["g"]) * torch.sigmoid(col["i"])
    torch.testing.assert_close(c, c_ref, msg="c(1) from h(0) = c(0) = 0 is tanh(g) * sigmoid(i)")
    torch.testing.assert_close(h, torch.tanh(c_ref) * torch.sigmoid(col["o"]))
    with torch.no_grad():
        hidden, _ = torch_lstm(model)(x)
    torch.testing.assert_close(model(x), hidden[:, -1] @ model.W_ph.T + model.b_p)
