"""Graded tests of Part 1 (45 points in all; the tests grade the code, the rest is read by hand).

| question | here | by hand |
|---|---|---|
| 1.1 gradients | 4: ``rnn_gradients`` against autograd | 6: the derivation, its time dependence, vanishing/exploding gradients |
| 1.2 vanilla RNN | 7: parameters, the cell against torch.nn.RNN, logits, train_step with clipping | 3: what clip_grad_norm_ does |
| 1.3 palindromes | 2: the RNN learns input length 5 | 3: the accuracy-against-length experiment |
| 1.4 optimisers | 3: momentum, RMSprop and Adam follow torch.optim step by step (test_part1_optimisers.py) | 2: their benefits over plain SGD |
| 1.5 LSTM gates | 2: the closed-form parameter count | 3: the purpose of each gate |
| 1.6 LSTM | 6: parameters, the cell against torch.nn.LSTM, logits, learning | 4: the experiment and the comparison |

Every check is against an independent computation (torch.nn.RNN / torch.nn.LSTM with the same
weights, autograd, numbers worked out by hand), in float64 where tolerance matters.
"""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F

B, T, D, N, K = 3, 6, 2, 5, 10


def make(load, cls_name, input_dim=D, num_hidden=N, num_classes=K, seed=0):
    models = load("part1.models")
    torch.manual_seed(seed)
    return getattr(models, cls_name)(input_dim=input_dim, num_hidden=num_hidden, num_classes=num_classes).double()


def inputs(seed=1, input_dim=D):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, input_dim, generator=g, dtype=torch.float64), torch.randint(K, (B,), generator=g)


def randomise_biases(model, seed=2):
    """Zero biases hide bias bugs: give them values before comparing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("b_"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def check_glorot(model, names):
    for name in names:
        w = getattr(model, name)
        bound = math.sqrt(6 / sum(w.shape))
        assert w.abs().max() <= bound + 1e-12, f"{name} is outside the Glorot uniform range ±{bound:.3f}"
        assert w.std() > bound / 4, f"{name} looks constant or too small for Glorot initialisation"


# ---------------------------------------------------------------- 1.2 the vanilla RNN

RNN_SHAPES = {"W_hx": (N, D), "W_hh": (N, N), "b_h": (N,), "W_ph": (K, N), "b_p": (K,)}


@pytest.mark.points(1, question="1.2")
def test_rnn_parameters(load):
    """VanillaRNN has W_hx, W_hh, b_h, W_ph, b_p with Glorot weights and zero biases"""
    model = make(load, "VanillaRNN")
    params = dict(model.named_parameters())
    assert {k: tuple(v.shape) for k, v in params.items()} == RNN_SHAPES
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.RNNBase)) for m in model.modules()), \
        "Part 1 forbids torch.nn.Linear, RNN and LSTM"
    check_glorot(model, ["W_hx", "W_hh", "W_ph"])
    assert all(not params[b].any() for b in ("b_h", "b_p")), "biases start at zero"


def torch_rnn(model):
    """torch.nn.RNN with the same weights (its two biases add up to b_h)."""
    rnn = torch.nn.RNN(model.input_dim, model.num_hidden, nonlinearity="tanh", batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(model.W_hx)
        rnn.weight_hh_l0.copy_(model.W_hh)
        rnn.bias_ih_l0.copy_(model.b_h)
        rnn.bias_hh_l0.zero_()
    return rnn


@pytest.mark.points(2, question="1.2")
def test_rnn_step_matches_torch(load):
    """VanillaRNN.step gives the hidden states of torch.nn.RNN with the same weights"""
    model = make(load, "VanillaRNN")
    randomise_biases(model)
    x, _ = inputs()
    expected, _ = torch_rnn(model)(x)
    h = torch.zeros(B, N, dtype=torch.float64)
    for t in range(T):
        h = model.step(x[:, t], h)
        assert h.shape == (B, N)
        torch.testing.assert_close(h, expected[:, t], msg=f"hidden state differs at t={t + 1}")


@pytest.mark.points(2, question="1.2")
def test_rnn_forward_logits(load):
    """VanillaRNN.forward: logits [B, K] = W_ph h(T) + b_p from h(0) = 0; [B, T] input means input_dim 1"""
    model = make(load, "VanillaRNN")
    randomise_biases(model)
    x, _ = inputs()
    hidden, _ = torch_rnn(model)(x)
    logits = model(x)
    assert logits.shape == (B, K)
    torch.testing.assert_close(logits, hidden[:, -1] @ model.W_ph.T + model.b_p)
    scalar = make(load, "VanillaRNN", input_dim=1)
    x1 = x[..., :1]
    torch.testing.assert_close(scalar(x1.squeeze(-1)), scalar(x1))


@pytest.mark.points(1, question="1.2")
def test_rnn_autograd_matches_closed_form_W_ph(load):
    """autograd through VanillaRNN gives dL/dW_ph = (y_hat - y) h(T)^T"""
    model = make(load, "VanillaRNN")
    x, y = inputs()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    h_T = torch_rnn(model)(x)[0][:, -1].detach()
    y_hat = torch.softmax(h_T @ model.W_ph.T.detach() + model.b_p.detach(), dim=1)
    closed_form = (y_hat - F.one_hot(y, K)).T @ h_T / B
    torch.testing.assert_close(model.W_ph.grad, closed_form)


@pytest.mark.points(1, question="1.2")
def test_train_step_clips_global_norm(load):
    """train_step: cross-entropy, backward, clip_grad_norm_ at max_norm (the global norm), one step"""
    train = load("part1.train")
    model = make(load, "VanillaRNN")
    x, y = inputs()
    x = 50 * x  # large inputs, large gradients
    before = [p.detach().clone() for p in model.parameters()]
    expected_loss = F.cross_entropy(model(x), y).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss, acc = train.train_step(model, optimizer, x, y, max_norm=0.1)
    assert loss == pytest.approx(expected_loss), "return the loss of the batch before the update"
    assert 0.0 <= acc <= 1.0
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert update.norm().item() == pytest.approx(0.1, rel=1e-6), \
        "with SGD(lr=1) the update is minus the clipped gradient, whose global norm must be max_norm"
    # a second step must not accumulate the first step's gradients
    optimizer2 = torch.optim.SGD(model.parameters(), lr=0.0)
    train.train_step(model, optimizer2, x, y, max_norm=1e9)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    fresh = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    train.train_step(model, optimizer2, x, y, max_norm=1e9)
    for p, g in zip(model.parameters(), fresh):
        torch.testing.assert_close(p.grad, g, msg="clear the gradients before backward")


# ---------------------------------------------------------------- 1.1 gradients by hand

@pytest.mark.points(4, question="1.1")
def test_rnn_gradients_by_hand_match_autograd(load):
    """rnn_gradients: dL/dW_ph and dL/dW_hh by backpropagation through time equal autograd's"""
    gradients = load("part1.gradients")
    g = torch.Generator().manual_seed(3)
    shapes = {"W_hx": (N, 1), "W_hh": (N, N), "b_h": (N,), "W_ph": (K, N), "b_p": (K,)}
    weights = {k: (0.7 * torch.randn(s, generator=g, dtype=torch.float64)).requires_grad_() for k, s in shapes.items()}
    x = torch.randn(B, T, generator=g, dtype=torch.float64)
    y = torch.randint(K, (B,), generator=g)
    h = torch.zeros(B, N, dtype=torch.float64)
    for t in range(T):  # an independent forward pass
        h = torch.tanh(x[:, t:t + 1] @ weights["W_hx"].T + h @ weights["W_hh"].T + weights["b_h"])
    F.cross_entropy(h @ weights["W_ph"].T + weights["b_p"], y).backward()
    model = types.SimpleNamespace(input_dim=1, num_hidden=N, num_classes=K, **weights)
    grad_W_ph, grad_W_hh = gradients.rnn_gradients(model, x, y)
    torch.testing.assert_close(grad_W_ph, weights["W_ph"].grad, msg="dL/dW_ph")
    torch.testing.assert_close(grad_W_hh, weights["W_hh"].grad, msg="dL/dW_hh")


# ---------------------------------------------------------------- 1.3 the RNN learns short palindromes

@pytest.mark.points(2, question="1.3")
@pytest.mark.timeout(300)
def test_rnn_learns_input_length_5(load):
    """a seeded RNN reaches at least 99% held-out accuracy at input length 5 within 1,000 steps"""
    train = load("part1.train")
    record = train.train(model="rnn", input_length=5, train_steps=1000, eval_every=100, seed=0, device="cpu",
                         progress=False)
    assert record["best_eval_accuracy"] >= 0.99, record["curve"]["eval_accuracy"]


# ---------------------------------------------------------------- 1.5 and 1.6 the LSTM

@pytest.mark.points(2, question="1.5")
def test_lstm_parameter_count(load):
    """lstm_parameter_count: 4(nd + n^2 + n) for the gates plus nK + K for the output layer"""
    models = load("part1.models")
    assert models.lstm_parameter_count(1, 128, 10) == 67_850  # the 2019 defaults, by hand
    assert models.lstm_parameter_count(10, 128, 10) == 72_458
    assert models.lstm_parameter_count(3, 4, 2) == 4 * (12 + 16 + 4) + 8 + 2


LSTM_SHAPES = {**{f"W_{z}x": (N, D) for z in "gifo"}, **{f"W_{z}h": (N, N) for z in "gifo"},
               **{f"b_{z}": (N,) for z in "gifo"}, "W_ph": (K, N), "b_p": (K,)}


@pytest.mark.points(1, question="1.6")
def test_lstm_parameters(load):
    """LSTM has W_zx, W_zh, b_z for z in g, i, f, o and W_ph, b_p; Glorot weights, zero biases"""
    model = make(load, "LSTM")
    params = dict(model.named_parameters())
    assert {k: tuple(v.shape) for k, v in params.items()} == LSTM_SHAPES
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.RNNBase)) for m in model.modules()), \
        "Part 1 forbids torch.nn.Linear, RNN and LSTM"
    check_glorot(model, [k for k in LSTM_SHAPES if k.startswith("W_")])
    assert all(not p.any() for k, p in params.items() if k.startswith("b_"))


def torch_lstm(model):
    """torch.nn.LSTM with the same weights: its gates are stacked in the order i, f, g, o."""
    lstm = torch.nn.LSTM(model.input_dim, model.num_hidden, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.cat([getattr(model, f"W_{z}x") for z in "ifgo"]))
        lstm.weight_hh_l0.copy_(torch.cat([getattr(model, f"W_{z}h") for z in "ifgo"]))
        lstm.bias_ih_l0.copy_(torch.cat([getattr(model, f"b_{z}") for z in "ifgo"]))
        lstm.bias_hh_l0.zero_()
    return lstm


@pytest.mark.points(3, question="1.6")
def test_lstm_step_matches_torch(load):
    """LSTM.step gives the hidden and cell states of torch.nn.LSTM with the same weights"""
    model = make(load, "LSTM")
    randomise_biases(model)
    x, _ = inputs()
    lstm = torch_lstm(model)
    h = c = torch.zeros(B, N, dtype=torch.float64)
    for t in range(T):
        _, (h_ref, c_ref) = lstm(x[:, : t + 1])
        h, c = model.step(x[:, t], (h, c))
        torch.testing.assert_close(c, c_ref[0], msg=f"cell state differs at t={t + 1}")
        torch.testing.assert_close(h, h_ref[0], msg=f"hidden state differs at t={t + 1}")


@pytest.mark.points(1, question="1.6")
def test_lstm_forward_logits(load):
    """LSTM.forward: logits [B, K] = W_ph h(T) + b_p from h(0) = c(0) = 0"""
    model = make(load, "LSTM")
    randomise_biases(model)
    x, _ = inputs()
    hidden, _ = torch_lstm(model)(x)
    logits = model(x)
    assert logits.shape == (B, K)
    torch.testing.assert_close(logits, hidden[:, -1] @ model.W_ph.T + model.b_p)


@pytest.mark.points(1, question="1.6")
@pytest.mark.timeout(300)
def test_lstm_learns_input_length_5(load):
    """a seeded LSTM reaches at least 99% held-out accuracy at input length 5 within 1,000 steps"""
    train = load("part1.train")
    record = train.train(model="lstm", input_length=5, train_steps=1000, eval_every=100, seed=0, device="cpu",
                         progress=False)
    assert record["best_eval_accuracy"] >= 0.99, record["curve"]["eval_accuracy"]
