"""Graded tests of Part 1 (45 points in all; the tests grade the code, the rest is read by hand).

| question | here | by hand |
|---|---|---|
| 1.1 gradients | 4: ``rnn_gradients`` against autograd | 6: the derivation, its time dependence, vanishing/exploding gradients |
| 1.2 vanilla RNN | 7: parameters, the cell against torch.nn.RNN, logits, train_step with clipping | 3: what clip_grad_norm_ does |
| 1.3 palindromes | 2: the RNN learns input length 5 | 3: the accuracy-against-length experiment |
| 1.4 optimisers | 3: momentum, RMSprop and Adam follow torch.optim step by step (test_part1_optimisers.py) | 2: their benefits over plain SGD |
| 1.5 LSTM gates | 2: the closed-form parameter count | 3: the purpose of each gate |
| 1.6 LSTM | 6: parameters, the cell against torch.nn.LSTM, logits, learning | 4: the experiment and the comparison |

Each test is a probe (``@probe``, runs the student's code and returns plain data) and a check (the
test, which never imports the student's code; see ``grader/probes.py``). The check chooses every
input, the weights included: random float64 weights, loaded into the student's model by parameter
name, and compares what comes back with an independent computation (torch.nn.RNN / torch.nn.LSTM
with the same weights, autograd, numbers worked out by hand). The learning tests get the trained
weights back and measure the accuracy with torch.nn.RNN / torch.nn.LSTM on every palindrome.
"""
from __future__ import annotations

import math
import os
import tempfile
import types

import pytest
import torch
import torch.nn.functional as F

from grader.probes import probe

try:  # common wrong computations, to name the mistake a wrong answer follows: with their defaults they are the
    from tests.hidden.part1_mistakes import (GRADIENT_RULES, bptt, forward_mistakes, lstm_cell,  # right answers
                                             lstm_states, lstm_step_mistakes)  # too, so they stay hidden
except ImportError:  # the student edition: the comparisons say what differs, without naming the mistake
    GRADIENT_RULES = bptt = forward_mistakes = lstm_cell = lstm_states = lstm_step_mistakes = None

B, T, D, N, K = 3, 6, 2, 5, 10  # batch, time steps, input_dim, num_hidden, num_classes


def rnn_shapes(d=D, n=N, k=K):
    return {"W_hx": (n, d), "W_hh": (n, n), "b_h": (n,), "W_ph": (k, n), "b_p": (k,)}


def lstm_shapes(d=D, n=N, k=K):
    return {**{f"W_{z}x": (n, d) for z in "gifo"}, **{f"W_{z}h": (n, n) for z in "gifo"},
            **{f"b_{z}": (n,) for z in "gifo"}, "W_ph": (k, n), "b_p": (k,)}


def random_weights(shapes, seed=0):
    """float64 weights for a check: Glorot-uniform matrices and random biases (zero biases would hide bias bugs)."""
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in shapes.items():
        if len(shape) == 2:
            bound = math.sqrt(6 / sum(shape))
            weights[name] = bound * (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1)
        else:
            weights[name] = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    return weights


def inputs(seed=1, input_dim=D):
    """x [B, T, input_dim] float64 and y [B] class indices."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, input_dim, generator=g, dtype=torch.float64), torch.randint(K, (B,), generator=g)


def torch_rnn(weights):
    """torch.nn.RNN with the given weights (its two biases add up to b_h)."""
    n, d = weights["W_hx"].shape
    rnn = torch.nn.RNN(d, n, nonlinearity="tanh", batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(weights["W_hx"])
        rnn.weight_hh_l0.copy_(weights["W_hh"])
        rnn.bias_ih_l0.copy_(weights["b_h"])
        rnn.bias_hh_l0.zero_()
    return rnn


def torch_lstm(weights):
    """torch.nn.LSTM with the given weights: its gates are stacked in the order i, f, g, o."""
    n, d = weights["W_gx"].shape
    lstm = torch.nn.LSTM(d, n, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.cat([weights[f"W_{z}x"] for z in "ifgo"]))
        lstm.weight_hh_l0.copy_(torch.cat([weights[f"W_{z}h"] for z in "ifgo"]))
        lstm.bias_ih_l0.copy_(torch.cat([weights[f"b_{z}"] for z in "ifgo"]))
        lstm.bias_hh_l0.zero_()
    return lstm


@torch.no_grad()
def reference_logits(cls_name, weights, x):
    """logits [B, K] = W_ph h(T) + b_p, with h(T) from torch.nn.RNN / torch.nn.LSTM."""
    hidden, _ = (torch_rnn if cls_name == "VanillaRNN" else torch_lstm)(weights)(x)
    return hidden[:, -1] @ weights["W_ph"].T + weights["b_p"]


def student_model(load, cls_name, weights):
    """The student's VanillaRNN or LSTM with the dimensions of ``weights``, float64, holding exactly those weights."""
    num_classes, num_hidden = weights["W_ph"].shape
    input_dim = weights["W_hx" if cls_name == "VanillaRNN" else "W_gx"].shape[1]
    model = getattr(load("part1.models"), cls_name)(input_dim=input_dim, num_hidden=num_hidden, num_classes=num_classes)
    model = model.double()
    model.load_state_dict(weights)  # by name, strict: the names and shapes must be those of the assignment
    return model


def close(name):
    """An assert_close message that says what differs and keeps torch's details."""
    return lambda details: f"{name}:\n{details}"


# ---------------------------------------------------------------- the student's own initialisation

@probe
def new_model(load, cls_name, seed=0, input_dim=D, num_hidden=N, num_classes=K):
    """A new model (input_dim D, num_hidden N, num_classes K unless given): its parameters and its modules' classes."""
    torch.manual_seed(seed)
    model = getattr(load("part1.models"), cls_name)(input_dim=input_dim, num_hidden=num_hidden, num_classes=num_classes)
    return {"parameters": dict(model.named_parameters()),
            "classes": [[f"{c.__module__}.{c.__qualname__}" for c in type(m).__mro__] for m in model.modules()]}


# torch.nn.Linear (LazyLinear), Bilinear, RNN, LSTM, GRU and their cells, and whatever subclasses them
FORBIDDEN = {"torch.nn.modules.linear.Linear", "torch.nn.modules.linear.Bilinear", "torch.nn.modules.rnn.RNNBase",
             "torch.nn.modules.rnn.RNNCellBase"}


def check_new_model(new, shapes):
    params = new["parameters"]
    got = {k: tuple(v.shape) for k, v in params.items()}
    missing = sorted(set(shapes) - set(got))
    assert not missing or set(got) - set(shapes), (
        f"the parameters {missing} are missing: named_parameters() lists a Parameter once, so several names given "
        "the same Parameter object (shared weights) count as one; give each its own")
    for name in set(got) & set(shapes):
        assert got[name] != shapes[name][::-1] or len(set(shapes[name])) == 1, (
            f"{name} has shape {list(got[name])}, the transpose of {list(shapes[name])}: weights are [out, in], "
            "as the model computes x @ W.T")
    assert got == shapes, f"parameters (name: shape) are {got}, expected {shapes}"
    used = sorted({c for classes in new["classes"] for c in classes} & FORBIDDEN)
    assert not used, f"Part 1 forbids torch.nn.Linear, RNN and LSTM; the model uses {used}"
    for name, w in params.items():
        if not name.startswith("W_"):
            assert not w.any(), f"the bias {name} must start at zero"


def check_ranges(new):
    """Every weight of a new model of the default size within Glorot's range, and not near constant (after
    check_glorot, whose messages name the common wrong distributions)."""
    for name, w in new["parameters"].items():
        if name.startswith("W_"):
            bound = math.sqrt(6 / sum(w.shape))
            assert w.abs().max() <= bound * (1 + 1e-6), f"{name} is outside the Glorot uniform range ±{bound:.3f}"
            assert w.std() > bound / 4, f"{name} looks constant or too small for Glorot initialisation"


GLOROT_SIZES = {"input_dim": 20, "num_hidden": 30, "num_classes": 10}  # every weight non-square but W_zh
GLOROT_SEEDS = (11, 12, 13, 14)


def check_glorot(run, cls_name):
    """Several new models of another size: every weight is uniform in ±sqrt(6/(fan_in + fan_out)) (the range reached,
    the variance 2/(fan_in + fan_out), the distribution flat), every bias zero, and the seeds give different weights."""
    models = [run(new_model, cls_name=cls_name, seed=seed, **GLOROT_SIZES)["parameters"] for seed in GLOROT_SEEDS]
    n = GLOROT_SIZES["num_hidden"]
    for name in models[0]:
        values = torch.stack([m[name].double() for m in models])  # [seeds, rows, cols]
        if values.dim() == 2:
            assert not values.any(), f"the bias {name} must start at zero"
            continue
        assert not torch.equal(values[0], values[1]), f"{name} is the same for two seeds: it is not drawn at random"
        fan_out, fan_in = values.shape[1:]
        bound, size = math.sqrt(6 / (fan_in + fan_out)), f"[{fan_out}, {fan_in}]"
        largest, ratio = values.abs().max().item(), values.pow(2).mean().item() / (bound ** 2 / 3)
        glorot = f"Glorot's uniform range ±sqrt(6/(fan_in + fan_out)) = ±{bound:.4f}"
        for other, mistake in ((1 / math.sqrt(n), "uniform in ±1/sqrt(num_hidden), torch.nn.RNN/LSTM's default"),
                               (math.sqrt(3 / fan_in), "uniform in ±sqrt(3/fan_in): Glorot's bound from the fan-in "
                                                       "alone, sqrt(6/(2 fan_in))"),
                               (5 / 3 * bound, "xavier_uniform_ with the tanh gain 5/3 (calculate_gain('tanh')); "
                                               "the assignment's Glorot range has gain 1"),
                               (math.sqrt(6 / (fan_in + 4 * fan_out)), "Glorot for the four gates stacked, fan-out "
                                "4 num_hidden as torch.nn.LSTM stores them; each gate's matrix has its own fan-out")):
            if abs(other - bound) > 0.02 * bound and abs(largest / other - 1) < 0.02:
                raise AssertionError(f"{name} {size} looks {mistake}, not {glorot}")
        if largest > bound * (1 + 1e-6) and abs(ratio - 1) < 0.15:
            raise AssertionError(f"{name} {size} has Glorot's variance 2/(fan_in + fan_out) but values up to "
                                 f"{largest:.4f}, outside {glorot}: a normal distribution (xavier_normal_ or an "
                                 "orthogonal matrix) instead of the uniform one?")
        assert largest <= bound * (1 + 1e-6), f"{name} {size} has values up to {largest:.4f}, outside {glorot}"
        small = ": small random weights (such as 0.01 * randn) instead of Glorot's" if largest < bound / 4 else ""
        assert largest >= 0.95 * bound, f"{name} {size} stays within ±{largest:.4f}, it does not fill {glorot}{small}"
        assert abs(ratio - 1) < 0.15, (f"the variance of {name} {size} is {ratio:.2f} times Glorot's 2/(fan_in + "
                                       f"fan_out) = {bound ** 2 / 3:.5f}")
        u = ((values.flatten() / bound + 1) / 2).sort().values  # uniform on [0, 1] if the weights are
        ecdf = torch.arange(1, len(u) + 1, dtype=torch.float64) / len(u)
        distance = torch.maximum(ecdf - u, u - (ecdf - 1 / len(u))).max().item()  # Kolmogorov-Smirnov
        assert distance < 2.5 / math.sqrt(len(u)), (f"{name} {size} is not uniformly distributed in ±{bound:.4f} "
                                                    f"(Kolmogorov-Smirnov distance {distance:.3f})")


# ---------------------------------------------------------------- running the models

@probe
def step_states(load, cls_name, weights, x):
    """model.step for t = 1..T from zeros: the state after each step, h [B, n] (RNN) or [h, c] (LSTM)."""
    model = student_model(load, cls_name, weights)
    zeros = x.new_zeros(x.shape[0], weights["W_ph"].shape[1])
    state = zeros if cls_name == "VanillaRNN" else (zeros, zeros)
    states = []
    for t in range(x.shape[1]):
        state = model.step(x[:, t], state)
        states.append(state)
    return states


@probe
def logits(load, cls_name, weights, x):
    """model(x): the logits [B, K]."""
    return student_model(load, cls_name, weights)(x)


def check_logits(run, cls_name, weights, x):
    got = run(logits, cls_name=cls_name, weights=weights, x=x)
    x3 = x.unsqueeze(-1) if x.dim() == 2 else x  # [B, T, d]
    expected = reference_logits(cls_name, weights, x3)
    assert got.shape == expected.shape, f"logits have shape {list(got.shape)}, expected [B, K] = {list(expected.shape)}"
    for mistake, wrong in (forward_mistakes(cls_name, weights, x3) if forward_mistakes else {}).items():
        assert not (torch.allclose(got, wrong) and not torch.allclose(wrong, expected)), \
            f"{cls_name}(x) gives the logits of a forward pass where {mistake}"
    torch.testing.assert_close(got, expected, msg=close(f"{cls_name}(x) for x of shape {list(x.shape)} differs "
                                                          "from W_ph h(T) + b_p"))


# ---------------------------------------------------------------- 1.2 the vanilla RNN

@pytest.mark.points(1, question="1.2")
def test_rnn_parameters(run):
    """VanillaRNN has W_hx, W_hh, b_h, W_ph, b_p with Glorot weights and zero biases"""
    new = run(new_model, cls_name="VanillaRNN")
    check_new_model(new, rnn_shapes())
    check_glorot(run, "VanillaRNN")
    check_ranges(new)


@pytest.mark.points(2, question="1.2")
def test_rnn_step_matches_torch(run):
    """VanillaRNN.step gives the hidden states of torch.nn.RNN with the same weights"""
    weights, (x, _) = random_weights(rnn_shapes()), inputs()
    states = run(step_states, cls_name="VanillaRNN", weights=weights, x=x)
    with torch.no_grad():
        expected, _ = torch_rnn(weights)(x)  # [B, T, N]
    assert len(states) == T, f"{len(states)} states for {T} steps"
    for t, h in enumerate(states):
        assert isinstance(h, torch.Tensor), f"VanillaRNN.step returns h(t), a tensor, not {type(h).__name__}"
        assert h.shape == (B, N), f"step returned h({t + 1}) of shape {list(h.shape)}, expected [B, num_hidden]"
    for mistake, wrong in rnn_step_mistakes(weights, x).items():
        assert not all(torch.allclose(h, wrong[t]) for t, h in enumerate(states)), \
            f"the hidden states are those of a step where {mistake}"
    for t, h in enumerate(states):
        torch.testing.assert_close(h, expected[:, t], msg=close(f"hidden state h({t + 1}) differs from torch.nn.RNN's"))


def rnn_step_mistakes(weights, x):
    """The hidden states [h(1), ..., h(T)] that common wrong steps give, by mistake: to name the mistake."""
    W_hx, W_hh, b_h = weights["W_hx"], weights["W_hh"], weights["b_h"]
    rules = {"h(t-1) is multiplied by W_hh instead of W_hh.T (h @ W_hh.T is W_hh h(t-1) for row batches; "
             "a square matrix does not reveal it by its shape)":
             lambda x_t, h: torch.tanh(x_t @ W_hx.T + h @ W_hh + b_h),
             "the sigmoid replaces the tanh": lambda x_t, h: torch.sigmoid(x_t @ W_hx.T + h @ W_hh.T + b_h),
             "the tanh is missing": lambda x_t, h: x_t @ W_hx.T + h @ W_hh.T + b_h,
             "the bias b_h is missing": lambda x_t, h: torch.tanh(x_t @ W_hx.T + h @ W_hh.T),
             "the previous hidden state is ignored (no recurrence)": lambda x_t, h: torch.tanh(x_t @ W_hx.T + b_h),
             "a ReLU replaces the tanh": lambda x_t, h: torch.relu(x_t @ W_hx.T + h @ W_hh.T + b_h),
             "the tanh squashes only the input part; W_hh h(t-1) must be inside it":
                 lambda x_t, h: torch.tanh(x_t @ W_hx.T + b_h) + h @ W_hh.T}
    wrong = {}
    for mistake, rule in rules.items():
        h, wrong[mistake] = x.new_zeros(x.shape[0], W_hh.shape[0]), []
        for t in range(x.shape[1]):
            h = rule(x[:, t], h)
            wrong[mistake].append(h)
    return wrong


def same_states(a, b) -> bool:
    return len(a) == len(b) and all(torch.allclose(p, q) for s, r in zip(a, b) for p, q in zip(s, r))


@pytest.mark.points(2, question="1.2")
def test_rnn_forward_logits(run):
    """VanillaRNN.forward: logits [B, K] = W_ph h(T) + b_p from h(0) = 0; [B, T] input means input_dim 1"""
    x, _ = inputs()
    check_logits(run, "VanillaRNN", random_weights(rnn_shapes()), x)
    check_logits(run, "VanillaRNN", random_weights(rnn_shapes(d=1), seed=5), x[..., 0])  # x [B, T]


@probe
def loss_gradients(load, cls_name, weights, x, y):
    """The gradients autograd gives the parameters for F.cross_entropy(model(x), y): {name: grad}."""
    model = student_model(load, cls_name, weights)
    F.cross_entropy(model(x), y).backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.points(1, question="1.2")
def test_rnn_autograd_matches_closed_form_W_ph(run):
    """autograd through VanillaRNN gives dL/dW_ph = (y_hat - y) h(T)^T"""
    weights, (x, y) = random_weights(rnn_shapes()), inputs()
    grads = run(loss_gradients, cls_name="VanillaRNN", weights=weights, x=x, y=y)
    with torch.no_grad():
        h_T = torch_rnn(weights)(x)[0][:, -1]
    y_hat = torch.softmax(h_T @ weights["W_ph"].T + weights["b_p"], dim=1)
    closed_form = (y_hat - F.one_hot(y, K)).T @ h_T / B  # [K, N]
    assert grads.get("W_ph") is not None, "W_ph got no gradient: is the output layer computed from the parameter W_ph?"
    torch.testing.assert_close(grads["W_ph"], closed_form, msg=close("dL/dW_ph differs from (y_hat - y) h(T)^T / B"))


@probe
def train_steps(load, weights, x, y, lr, max_norm, steps):
    """``steps`` calls of train_step with SGD(lr); after each: loss, accuracy, parameters and their gradients."""
    train = load("part1.train")
    model = student_model(load, "VanillaRNN", weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    after = []
    for _ in range(steps):
        loss, acc = train.train_step(model, optimizer, x, y, max_norm=max_norm)
        after.append({"loss": float(loss), "accuracy": float(acc),  # copies: the next call changes the tensors
                      "types": [type(loss).__name__, type(acc).__name__],
                      "parameters": {name: p.detach().clone() for name, p in model.named_parameters()},
                      "gradients": {name: None if p.grad is None else p.grad.clone()
                                    for name, p in model.named_parameters()}})
    return after


def rnn_loss_and_gradients(weights, x, y):
    """Independently: the logits, the loss and its gradients {name: grad} (torch.nn.RNN and autograd)."""
    rnn = torch_rnn(weights)
    W_ph, b_p = (weights[k].clone().requires_grad_() for k in ("W_ph", "b_p"))
    logits_ = rnn(x)[0][:, -1] @ W_ph.T + b_p
    loss = F.cross_entropy(logits_, y)
    loss.backward()
    grads = {"W_hx": rnn.weight_ih_l0.grad, "W_hh": rnn.weight_hh_l0.grad, "b_h": rnn.bias_ih_l0.grad,
             "W_ph": W_ph.grad, "b_p": b_p.grad}
    return logits_.detach(), loss.item(), grads


@pytest.mark.points(1, question="1.2")
def test_train_step_clips_global_norm(run):
    """train_step: cross-entropy, backward, clip_grad_norm_ at max_norm (the global norm), one step"""
    weights, (x, y) = random_weights(rnn_shapes()), inputs()
    y[0] = reference_logits("VanillaRNN", weights, x)[0].argmax()  # one right answer at least: the accuracy is not 0
    expected_logits, expected_loss, grads = rnn_loss_and_gradients(weights, x, y)
    expected_accuracy = (expected_logits.argmax(dim=1) == y).double().mean().item()
    lr, max_norm = 0.5, 0.1
    total = torch.cat([g.flatten() for g in grads.values()]).norm().item()
    assert min(g.norm() for g in grads.values()) > 2 * max_norm  # clipping matters, globally or per parameter
    scale = max_norm / (total + 1e-6)  # clip_grad_norm_ scales all the gradients by the same factor

    first = run(train_steps, weights=weights, x=x, y=y, lr=lr, max_norm=max_norm, steps=1)[0]
    assert first["types"] == ["float", "float"], \
        f"train_step returned ({', '.join(first['types'])}): return the loss and the accuracy as Python floats " \
        "(loss.item()), not tensors that keep the graph alive"
    sum_loss = F.cross_entropy(expected_logits, y, reduction="sum").item()
    assert first["loss"] != pytest.approx(sum_loss, rel=1e-9), \
        f"train_step returned the loss {first['loss']}, the sum of the cross-entropies over the batch, " \
        f"not their mean {expected_loss}"
    double_softmax = F.cross_entropy(torch.softmax(expected_logits, dim=1), y).item()
    assert first["loss"] != pytest.approx(double_softmax, rel=1e-9), \
        f"train_step returned the loss {first['loss']}: a softmax was applied before F.cross_entropy, which takes " \
        f"the logits and applies the log-softmax itself (expected {expected_loss})"
    for mistake, wrong_loss in {"F.nll_loss on the raw logits, without the log-softmax":
                                F.nll_loss(expected_logits, y).item(),
                                "the log-softmax over the batch (dim=0) instead of the classes":
                                F.nll_loss(F.log_softmax(expected_logits, dim=0), y).item()}.items():
        assert first["loss"] != pytest.approx(wrong_loss, rel=1e-9), \
            f"train_step returned the loss {first['loss']}: {mistake} (expected {expected_loss})"
    assert first["loss"] == pytest.approx(expected_loss, rel=1e-9), \
        f"train_step returned the loss {first['loss']}, expected {expected_loss}: " \
        "the mean cross-entropy of the batch before the update"
    assert first["accuracy"] == pytest.approx(expected_accuracy), \
        f"train_step returned the accuracy {first['accuracy']}, expected {expected_accuracy}: " \
        "the share of rows whose largest logit is the target"
    g_norms = {name: g.norm().item() for name, g in grads.items()}
    wrong = {"the step used the unclipped gradients: clip after backward() and before optimizer.step(), at "
             "max_norm (the argument, not a fixed number)":
             {name: w - lr * grads[name] for name, w in weights.items()},
             "the gradient is clipped per parameter, not by the global norm of all the parameters together":
             {name: w - lr * min(1.0, max_norm / (g_norms[name] + 1e-6)) * grads[name] for name, w in weights.items()},
             "the gradient values are clipped element-wise (clip_grad_value_), not rescaled by their global norm":
             {name: w - lr * grads[name].clamp(-max_norm, max_norm) for name, w in weights.items()},
             "the parameters did not change: are the gradients cleared between backward() and optimizer.step()?":
             weights}
    for mistake, params in wrong.items():
        assert not all(torch.allclose(first["parameters"][name], p) for name, p in params.items()), mistake
    for name, w in weights.items():
        torch.testing.assert_close(first["parameters"][name], w - lr * scale * grads[name],
                                   msg=close(f"{name} after one step differs from SGD(lr={lr}) with the gradients "
                                             f"clipped to a global norm of {max_norm} (all the parameters together)"))

    # a second call must not add its gradients to those of the first: with lr = 0, they are the same
    second = run(train_steps, weights=weights, x=x, y=y, lr=0.0, max_norm=1e9, steps=2)[1]
    for name, g in grads.items():
        assert second["gradients"].get(name) is not None, f"{name} has no gradient after train_step"
        assert not torch.allclose(second["gradients"][name], 2 * g), \
            f"the gradient of {name} after a second train_step is twice one batch's: the gradients of both calls " \
            "were added up; clear them (zero_grad) before backward"
        torch.testing.assert_close(second["gradients"][name], g,
                                   msg=close(f"the gradient of {name} after a second train_step differs from one "
                                             "batch's gradient: clear the gradients before backward"))

    # the accuracy is that of this step's logits, before the update: a large step that changes it tells
    y_flip, lr_big = expected_logits.argmin(dim=1), 20.0
    _, _, big_grads = rnn_loss_and_gradients(weights, x, y_flip)
    updated = {name: w - lr_big * big_grads[name] for name, w in weights.items()}
    before = (expected_logits.argmax(dim=1) == y_flip).double().mean().item()
    after = (reference_logits("VanillaRNN", updated, x).argmax(dim=1) == y_flip).double().mean().item()
    assert before != after  # the test's own premise: this step changes the accuracy
    got = run(train_steps, weights=weights, x=x, y=y_flip, lr=lr_big, max_norm=1e9, steps=1)[0]["accuracy"]
    assert got != pytest.approx(after) or got == pytest.approx(before), \
        f"train_step returned the accuracy {got} of the updated weights: measure it on this step's logits, " \
        f"before the update ({before})"
    assert got == pytest.approx(before), f"train_step returned the accuracy {got}, expected {before}"


# ---------------------------------------------------------------- 1.1 gradients by hand

@probe
def gradients_by_hand(load, weights, x, y):
    """rnn_gradients for a model of input_dim 1 holding ``weights``: [dL/dW_ph, dL/dW_hh]."""
    gradients = load("part1.gradients")
    n = weights["W_hh"].shape[0]
    model = types.SimpleNamespace(input_dim=1, num_hidden=n, num_classes=weights["W_ph"].shape[0],
                                  **{k: v.requires_grad_() for k, v in weights.items()})
    return list(gradients.rnn_gradients(model, x, y))


@pytest.mark.points(4, question="1.1")
def test_rnn_gradients_by_hand_match_autograd(run):
    """rnn_gradients: dL/dW_ph and dL/dW_hh by backpropagation through time equal autograd's"""
    g = torch.Generator().manual_seed(3)
    weights = {k: 0.7 * torch.randn(s, generator=g, dtype=torch.float64) for k, s in rnn_shapes(d=1).items()}
    x = torch.randn(B, T, generator=g, dtype=torch.float64)  # [B, T]: input_dim 1
    y = torch.randint(K, (B,), generator=g)
    grad_W_ph, grad_W_hh = run(gradients_by_hand, weights=weights, x=x, y=y)
    w = {k: v.clone().requires_grad_() for k, v in weights.items()}
    h = torch.zeros(B, N, dtype=torch.float64)
    for t in range(T):  # an independent forward pass
        h = torch.tanh(x[:, t:t + 1] @ w["W_hx"].T + h @ w["W_hh"].T + w["b_h"])
    F.cross_entropy(h @ w["W_ph"].T + w["b_p"], y).backward()
    for got, name in ((grad_W_ph, "W_ph"), (grad_W_hh, "W_hh")):
        assert isinstance(got, torch.Tensor) and got.shape == weights[name].shape, \
            f"dL/d{name} must be a tensor of the shape of {name}, {list(weights[name].shape)}"
        assert not torch.allclose(got, B * w[name].grad), \
            f"dL/d{name} is B = {B} times autograd's: the gradient is summed over the batch, but the loss is the mean"
    right = bptt(weights, x, y) if bptt else None
    for mistake, rule in (GRADIENT_RULES if bptt else {}).items():
        wrong = bptt(weights, x, y, **rule)
        assert not (all(torch.allclose(a, b) for a, b in zip((grad_W_ph, grad_W_hh), wrong))
                    and not all(torch.allclose(a, b) for a, b in zip(right, wrong))), \
            f"dL/dW_ph and dL/dW_hh are those of backpropagation where {mistake}"
    torch.testing.assert_close(grad_W_ph, w["W_ph"].grad, msg=close("dL/dW_ph differs from autograd's"))
    assert not torch.allclose(grad_W_hh, w["W_hh"].grad.T), \
        "dL/dW_hh is the transpose of autograd's: each step adds delta(t) h(t-1)^T ([n, n], row i from h_i's error)"
    if bptt is not None:
        assert not torch.allclose(grad_W_hh, bptt(weights, x, y, derivative=lambda hs, t: 1)[1]), \
            "dL/dW_hh misses the tanh derivative: each step back multiplies the error by 1 - h(t)^2"
        assert not torch.allclose(grad_W_hh, bptt(weights, x, y, steps_back=1)[1]), \
            "dL/dW_hh has only the last step's share: sum delta(t) h(t-1)^T over every time step t = T, ..., 1"
    torch.testing.assert_close(grad_W_hh, w["W_hh"].grad, msg=close("dL/dW_hh differs from autograd's"))


# ---------------------------------------------------------------- 1.3 and 1.6: learning short palindromes

@probe
def trained_weights(load, model):
    """train(model, input_length=5, 1,000 steps, seed 0): the trained weights and the held-out accuracy curve."""
    train = load("part1.train")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pt")
        record = train.train(model=model, input_length=5, train_steps=1000, eval_every=100, seed=0, device="cpu",
                             progress=False, save_model=path)
        saved = torch.load(path, weights_only=True)
    return {"trained": saved["trained"], "eval_accuracy": record["curve"]["eval_accuracy"]}


def every_palindrome_of_input_length_5():
    """All 1,000 palindromes of length 6, a b c c b a: x = the first 5 digits [1000, 5, 1], y = the last [1000]."""
    first_half = torch.cartesian_prod(*[torch.arange(10)] * 3)  # [1000, 3]
    digits = torch.cat([first_half, first_half.flip(1)], dim=1)  # [1000, 6]
    return digits[:, :-1].double().unsqueeze(-1), digits[:, -1]


def check_learned(run, model, cls_name, shapes):
    result = run(trained_weights, model=model)
    trained = result["trained"]
    got = {k: tuple(v.shape) for k, v in trained.items()}
    assert got == shapes, f"the trained model's parameters (name: shape) are {got}, expected {shapes}"
    x, y = every_palindrome_of_input_length_5()
    predictions = reference_logits(cls_name, {k: v.double() for k, v in trained.items()}, x).argmax(dim=1)
    accuracy = (predictions == y).double().mean().item()
    assert accuracy >= 0.99, (
        f"with the trained weights, the {cls_name} of the assignment (torch.nn.{cls_name.removeprefix('Vanilla')} with "
        f"these weights) predicts the last digit of {accuracy:.1%} of the palindromes of length 6, not at least 99%. "
        f"Held-out accuracy during training: {result['eval_accuracy']}; if that is high, your model computes "
        "something other than the assignment's equations.")


@pytest.mark.points(2, question="1.3")
@pytest.mark.timeout(300)
def test_rnn_learns_input_length_5(run):
    """a seeded RNN reaches at least 99% accuracy on every palindrome of input length 5 within 1,000 steps"""
    check_learned(run, "rnn", "VanillaRNN", rnn_shapes(d=1, n=128))


# ---------------------------------------------------------------- 1.5 and 1.6 the LSTM

@probe
def lstm_parameter_counts(load, arguments):
    """lstm_parameter_count(input_dim, num_hidden, num_classes) for each triple of ``arguments``."""
    models = load("part1.models")
    return [models.lstm_parameter_count(*triple) for triple in arguments]


@pytest.mark.points(2, question="1.5")
def test_lstm_parameter_count(run):
    """lstm_parameter_count: 4(nd + n^2 + n) for the gates plus nK + K for the output layer"""
    expected = {(1, 128, 10): 67_850,  # the 2019 defaults, by hand
                (10, 128, 10): 72_458,
                (3, 4, 2): 4 * (12 + 16 + 4) + 8 + 2}
    got = run(lstm_parameter_counts, arguments=list(expected))
    for (triple, want), count in zip(expected.items(), got, strict=True):
        d, n, k = triple
        for mistake, wrong in {"the biases are not counted": 4 * (n * d + n * n) + n * k,
                               "only one gate is counted, not the four (g, i, f, o)": n * d + n * n + n + n * k + k,
                               "the candidate g is not counted as a gate with its own weights":
                                   3 * (n * d + n * n + n) + n * k + k,
                               "each gate has two biases, as in torch.nn.LSTM; the assignment's gates have one":
                                   4 * (n * d + n * n + 2 * n) + n * k + k,
                               "the output layer W_ph, b_p is left out": 4 * (n * d + n * n + n),
                               "the recurrent weights are counted as [n, d] instead of [n, n]":
                                   4 * (2 * n * d + n) + n * k + k}.items():
            assert count != wrong or wrong == want, f"lstm_parameter_count{triple} returned {count}: {mistake}"
        assert count == want, f"lstm_parameter_count{triple} returned {count}, expected {want}"


@pytest.mark.points(1, question="1.6")
def test_lstm_parameters(run):
    """LSTM has W_zx, W_zh, b_z for z in g, i, f, o and W_ph, b_p; Glorot weights, zero biases"""
    new = run(new_model, cls_name="LSTM")
    check_new_model(new, lstm_shapes())
    check_glorot(run, "LSTM")
    check_ranges(new)


@pytest.mark.points(3, question="1.6")
def test_lstm_step_matches_torch(run):
    """LSTM.step gives the hidden and cell states of torch.nn.LSTM with the same weights"""
    weights, (x, _) = random_weights(lstm_shapes()), inputs()
    states = run(step_states, cls_name="LSTM", weights=weights, x=x)
    lstm = torch_lstm(weights)
    assert len(states) == T, f"{len(states)} states for {T} steps"
    for state in states:
        assert isinstance(state, list) and len(state) == 2, "LSTM.step returns the pair (h(t), c(t))"
        assert all(isinstance(v, torch.Tensor) and v.shape == (B, N) for v in state), \
            "h(t) and c(t) are tensors of shape [B, num_hidden]"
    right = lstm_states(lstm_cell(weights), x, N) if lstm_cell else None
    for mistake, wrong in (lstm_step_mistakes(weights, x) if lstm_cell else {}).items():
        assert not (same_states(states, wrong) and not same_states(right, wrong)), \
            f"the states (h(t), c(t)) are those of a step where {mistake}"
    for t, (h, c) in enumerate(states):
        with torch.no_grad():
            _, (h_ref, c_ref) = lstm(x[:, : t + 1])  # [1, B, N] each
        torch.testing.assert_close(c, c_ref[0], msg=close(f"cell state c({t + 1}) differs from torch.nn.LSTM's"))
        torch.testing.assert_close(h, h_ref[0], msg=close(f"hidden state h({t + 1}) differs from torch.nn.LSTM's"))


@pytest.mark.points(1, question="1.6")
def test_lstm_forward_logits(run):
    """LSTM.forward: logits [B, K] = W_ph h(T) + b_p from h(0) = c(0) = 0"""
    x, _ = inputs()
    check_logits(run, "LSTM", random_weights(lstm_shapes()), x)


@pytest.mark.points(1, question="1.6")
@pytest.mark.timeout(300)
def test_lstm_learns_input_length_5(run):
    """a seeded LSTM reaches at least 99% accuracy on every palindrome of input length 5 within 1,000 steps"""
    check_learned(run, "lstm", "LSTM", lstm_shapes(d=1, n=128))
