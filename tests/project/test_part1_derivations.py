"""Ungraded: the derivations of chapters 1.1 and 1.5, checked with sympy and against autograd.

1.1: for a vanilla RNN with small symbolic dimensions (T = 3 steps, n = 2 hidden units, d = 1
input, K = 2 classes) sympy differentiates the loss L = -log softmax(p(T))_y exactly, and the
result must equal the closed forms of the chapter:

    dL/dW_ph = (y_hat - y) h(T)^T
    dL/dW_hh = dL/dh(T) . dh(T)/dW_hh,  dh(t)/dW_hh[i, j] = diag(1 - h(t)^2) (e_i h(t-1)_j + W_hh dh(t-1)/dW_hh[i, j])
             = sum_t delta(t) h(t-1)^T   (the same sum, collected backwards through time)

Then the closed forms, evaluated at the weights of the reference VanillaRNN, must equal autograd's
gradients and those of ``solutions.part1.gradients.rnn_gradients``.

1.5: the sympy parameter count of the LSTM, 4(nd + n^2 + n) + nK + K, must equal
sum(p.numel()) of the reference model, and the batch size m must not enter it.
"""
from __future__ import annotations

import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from solutions.part1.gradients import rnn_gradients
from solutions.part1.models import LSTM, VanillaRNN, count_parameters, lstm_parameter_count

T, N, D, K = 3, 2, 1, 2
TARGET = 0  # the class of y


def symbolic_rnn(steps=T, n=N, d=D, k=K, target=TARGET):
    """The RNN's weights, inputs, hidden states and loss as sympy expressions."""
    s = {"W_hx": sp.Matrix(n, d, lambda i, j: sp.Symbol(f"u_{i}{j}")),
         "W_hh": sp.Matrix(n, n, lambda i, j: sp.Symbol(f"w_{i}{j}")),
         "b_h": sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"b_{i}")),
         "W_ph": sp.Matrix(k, n, lambda i, j: sp.Symbol(f"v_{i}{j}")),
         "b_p": sp.Matrix(k, 1, lambda i, _: sp.Symbol(f"c_{i}")),
         "x": [sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"x_{t}{i}")) for t in range(1, steps + 1)]}
    hs = [sp.zeros(n, 1)]
    for x in s["x"]:
        hs.append((s["W_hx"] * x + s["W_hh"] * hs[-1] + s["b_h"]).applyfunc(sp.tanh))
    p = s["W_ph"] * hs[-1] + s["b_p"]
    total = sum(sp.exp(pk) for pk in p)
    y = sp.Matrix(k, 1, lambda i, _: int(i == target))
    s.update(h=hs, p=p, y=y, y_hat=p.applyfunc(sp.exp) / total, loss=sp.log(total) - p[target])
    # every tanh(.) and exp(.) as an atom: an identity in these atoms is an identity of the model
    s["atoms"] = {**{h[i]: sp.Symbol(f"H_{t}{i}") for t, h in enumerate(hs[1:], 1) for i in range(n)},
                  **{sp.exp(pk): sp.Symbol(f"E_{i}") for i, pk in enumerate(p)}}
    return s


def is_zero(expr, atoms) -> bool:
    rational = expr.xreplace(atoms)
    assert not rational.has(sp.tanh, sp.exp), "an atom was not replaced"
    return sp.cancel(sp.together(rational)) == 0


def grad_W_ph_closed(s):
    return (s["y_hat"] - s["y"]) * s["h"][-1].T


def grad_W_hh_forward(s, recurrent_term=True):
    """dL/dh(T) . dh(T)/dW_hh[i, j], with dh(t)/dW_hh[i, j] by the forward recursion."""
    n, hs, W_hh = s["W_hh"].shape[0], s["h"], s["W_hh"]
    dL_dh = s["W_ph"].T * (s["y_hat"] - s["y"])

    def entry(i, j):
        J = sp.zeros(n, 1)
        for t in range(1, len(hs)):
            e = sp.zeros(n, 1)
            e[i] = hs[t - 1][j]
            J = sp.diag(*[1 - hs[t][r] ** 2 for r in range(n)]) * (e + (W_hh * J if recurrent_term else 0 * J))
        return (dL_dh.T * J)[0]
    return sp.Matrix(n, n, entry)


def grad_W_hh_backward(s):
    """sum_t delta(t) h(t-1)^T with delta(t) = diag(1 - h(t)^2) dL/dh(t), dL/dh(t-1) = W_hh^T delta(t)."""
    hs, W_hh = s["h"], s["W_hh"]
    dL_dh = s["W_ph"].T * (s["y_hat"] - s["y"])
    grad = sp.zeros(*W_hh.shape)
    for t in range(len(hs) - 1, 0, -1):
        delta = dL_dh.multiply_elementwise(hs[t].applyfunc(lambda h: 1 - h ** 2))
        grad += delta * hs[t - 1].T
        dL_dh = W_hh.T * delta
    return grad


@pytest.fixture(scope="module")
def rnn():
    return symbolic_rnn()


def exact_gradient(s, name):
    W = s[name]
    return sp.Matrix(*W.shape, lambda i, j: sp.diff(s["loss"], W[i, j]))


def test_sympy_dL_dW_ph_is_closed_form(rnn):
    difference = exact_gradient(rnn, "W_ph") - grad_W_ph_closed(rnn)
    assert all(is_zero(e, rnn["atoms"]) for e in difference)
    # it depends on the last hidden state only: no input before the last step enters except through h(T)
    assert not grad_W_ph_closed(rnn).xreplace(rnn["atoms"]).free_symbols & set(rnn["W_hh"])


def test_sympy_dL_dW_hh_is_the_recursion(rnn):
    exact = exact_gradient(rnn, "W_hh")
    for closed in (grad_W_hh_forward(rnn), grad_W_hh_backward(rnn)):
        assert all(is_zero(e, rnn["atoms"]) for e in exact - closed)
    # the check can fail: without the recurrent term W_hh dh(t-1)/dW_hh only the last step counts
    truncated = grad_W_hh_forward(rnn, recurrent_term=False)
    assert not all(is_zero(e, rnn["atoms"]) for e in exact - truncated)


def reference_model(seed=0):
    torch.manual_seed(seed)
    model = VanillaRNN(input_dim=D, num_hidden=N, num_classes=K).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # nonzero biases, so that a bias term that is wrongly dropped shows
        model.b_h.copy_(0.3 * torch.randn(N, generator=g, dtype=torch.float64))
        model.b_p.copy_(0.3 * torch.randn(K, generator=g, dtype=torch.float64))
    return model


def substitution(s, model, x):
    values = {}
    for name in ("W_hx", "W_hh", "b_h", "W_ph", "b_p"):
        weight = getattr(model, name).detach().reshape(s[name].shape)
        values.update({sym: float(weight[i, j]) for (i, j), sym in zip(
            [(i, j) for i in range(s[name].rows) for j in range(s[name].cols)], s[name])})
    for t, xt in enumerate(s["x"]):
        values.update({sym: float(x[0, t, i]) for i, sym in enumerate(xt)})
    return values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_forms_match_autograd_on_the_reference_rnn(rnn, seed):
    model = reference_model(seed)
    x = torch.randn(1, T, D, generator=torch.Generator().manual_seed(10 + seed), dtype=torch.float64) * 3
    y = torch.tensor([TARGET])
    F.cross_entropy(model(x), y).backward()
    values = substitution(rnn, model, x)

    def evaluate(matrix):
        return torch.tensor(sp.lambdify(list(values), matrix, "numpy")(*values.values()), dtype=torch.float64)
    by_hand = rnn_gradients(model, x, y)
    for closed, param, hand in ((grad_W_ph_closed(rnn), model.W_ph, by_hand[0]),
                                (grad_W_hh_forward(rnn), model.W_hh, by_hand[1])):
        torch.testing.assert_close(evaluate(closed), param.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(hand, param.grad, rtol=1e-10, atol=1e-12)


def test_sympy_lstm_parameter_count():
    d, n, k, m = sp.symbols("d n K m", positive=True, integer=True)
    shapes = {**{f"W_{z}x": (n, d) for z in "gifo"}, **{f"W_{z}h": (n, n) for z in "gifo"},
              **{f"b_{z}": (n, 1) for z in "gifo"}, "W_ph": (k, n), "b_p": (k, 1)}
    count = sp.expand(sum(rows * cols for rows, cols in shapes.values()))
    assert sp.expand(count - (4 * (n * d + n ** 2 + n) + n * k + k)) == 0
    assert m not in count.free_symbols, "the batch size does not enter the count"
    for dims in ((1, 128, 10), (10, 128, 10), (3, 4, 2), (7, 5, 3)):
        model = LSTM(*dims)
        assert dict(model.named_parameters()).keys() == shapes.keys()
        value = int(count.subs(dict(zip((d, n, k), dims))))
        assert value == count_parameters(model) == sum(p.numel() for p in model.parameters()) \
            == lstm_parameter_count(*dims)
    assert int(count.subs({d: 1, n: 128, k: 10})) == 67_850
