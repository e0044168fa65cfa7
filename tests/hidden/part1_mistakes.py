"""Common wrong computations of Part 1 (BPTT, the LSTM step, the forward passes), run by the checks of
``tests/graded/test_part1.py`` to name the mistake a wrong answer follows. With their defaults they compute
the right answers, the assignment's solutions, so they stay with the hidden tests, out of the student
edition; without them the checks still fail, without the name."""
from __future__ import annotations

import torch
import torch.nn.functional as F


GRADIENT_RULES = {  # a common mistake of backpropagation through time: the rule bptt changes, to name it
    "the tanh derivative of step t is taken at h(t-1) instead of h(t)": {"derivative": lambda hs, t: 1 - hs[t - 1] ** 2},
    "the derivative 1 - tanh(a)^2 is applied to h = tanh(a) again, as 1 - tanh(h)^2":
        {"derivative": lambda hs, t: 1 - torch.tanh(hs[t]) ** 2},
    "the sigmoid's derivative h (1 - h) is used for the tanh": {"derivative": lambda hs, t: hs[t] * (1 - hs[t])},
    "the error goes back to h(t-1) as delta @ W_hh.T; for row batches it is delta @ W_hh": {"back": lambda W: W.T},
    "dL/dW_hh is overwritten at every step instead of summed over time": {"accumulate": False},
    "the share of step t multiplies the error by h(t) instead of that step's input h(t-1)": {"state": 0},
    "the softmax is taken over the batch (dim=0) instead of the classes": {"softmax": lambda p: torch.softmax(p, 0)},
    "the output error is p - y with the raw logits instead of softmax(p) - y": {"softmax": lambda p: p},
    "dL/dW_ph uses h(T-1) instead of the last hidden state h(T)": {"output": -2},
    "the hand-written forward pass forgets the bias b_h": {"bias": False},
    "the forward pass multiplies h(t-1) by W_hh instead of W_hh.T": {"forward": lambda W: W},
}


@torch.no_grad()
def bptt(weights, x, y, derivative=lambda hs, t: 1 - hs[t] ** 2, back=lambda W: W, accumulate=True, state=1,
         softmax=lambda p: torch.softmax(p, 1), output=-1, bias=True, forward=lambda W: W.T, steps_back=None):
    """[dL/dW_ph, dL/dW_hh] by hand for x [B, T], y [B]; the options give a common mistake's instead."""
    W_hx, W_hh, b_h, W_ph, b_p = (weights[k].detach() for k in ("W_hx", "W_hh", "b_h", "W_ph", "b_p"))
    hs = [torch.zeros(x.shape[0], W_hh.shape[0], dtype=x.dtype)]
    for t in range(x.shape[1]):
        hs.append(torch.tanh(x[:, t:t + 1] @ W_hx.T + hs[-1] @ forward(W_hh) + (b_h if bias else 0)))
    error = (softmax(hs[-1] @ W_ph.T + b_p) - F.one_hot(y, W_ph.shape[0])) / x.shape[0]  # [B, K]
    grad_W_ph, delta = error.T @ hs[output], error @ W_ph
    grad = torch.zeros_like(W_hh)
    for t in range(x.shape[1], 0 if steps_back is None else x.shape[1] - steps_back, -1):
        delta = delta * derivative(hs, t)
        grad = grad + delta.T @ hs[t - state] if accumulate else delta.T @ hs[t - state]
        delta = delta @ back(W_hh)
    return [grad_W_ph, grad]


def rnn_cell(weights):
    """h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h) as a function of (x_t, state)."""
    return lambda x_t, h: torch.tanh(x_t @ weights["W_hx"].T + h @ weights["W_hh"].T + weights["b_h"])


LSTM_RULES = {  # a common wrong LSTM step: the rule lstm_cell changes, to name the mistake
    "the candidate g uses a sigmoid instead of the tanh": {"g": torch.sigmoid},
    "the input and forget gates are swapped": {"swap_if": True},
    "the output gate uses a tanh instead of a sigmoid": {"o": torch.tanh},
    "the forget gate is missing: c(t) = g i + c(t-1)": {"forget": False},
    "h(t) = c(t) o, without the tanh of the cell": {"h_tanh": False},
    "h(t) is computed from the old cell c(t-1), before the cell is updated": {"old_cell": True},
    "the recurrent products are h @ W_zh instead of h @ W_zh.T": {"transpose": False},
    "the gates ignore the previous hidden state h(t-1)": {"recurrent": False},
    "the new cell state is squashed by a tanh, c(t) = tanh(g i + c(t-1) f)": {"squash": True},
    "the state pair is read as (c, h), although step returns (h, c)": {"swap_state": True},
}


def lstm_cell(weights, g=torch.tanh, o=torch.sigmoid, swap_if=False, forget=True, h_tanh=True, old_cell=False,
              transpose=True, recurrent=True, squash=False, swap_state=False):
    """The LSTM step of the assignment as a function of (x_t, (h, c)) -> (h, c); the options make it wrong."""
    def step(x_t, state):
        h, c = reversed(state) if swap_state else state
        def affine(z):  # noqa: E306
            W_h = weights[f"W_{z}h"].T if transpose else weights[f"W_{z}h"]
            return x_t @ weights[f"W_{z}x"].T + (h @ W_h if recurrent else 0) + weights[f"b_{z}"]
        i, f = (torch.sigmoid(affine("f")), torch.sigmoid(affine("i"))) if swap_if else \
            (torch.sigmoid(affine("i")), torch.sigmoid(affine("f")))
        new_c = g(affine("g")) * i + (c * f if forget else c)
        new_c = torch.tanh(new_c) if squash else new_c
        out = c if old_cell else new_c
        return (torch.tanh(out) if h_tanh else out) * o(affine("o")), new_c
    return step


@torch.no_grad()
def lstm_states(step, x, n):
    """[(h(t), c(t)) for t = 1..T] of ``step`` fed its own state back, from h(0) = c(0) = 0 [B, n]."""
    state, found = (x.new_zeros(x.shape[0], n),) * 2, []
    for t in range(x.shape[1]):
        state = step(x[:, t], state)
        found.append(state)
    return found


def lstm_step_mistakes(weights, x):
    """The states [(h(t), c(t))] from zeros that each of LSTM_RULES gives."""
    n = weights["W_ph"].shape[1]
    return {mistake: lstm_states(lstm_cell(weights, **rule), x, n) for mistake, rule in LSTM_RULES.items()}


@torch.no_grad()
def forward_mistakes(cls_name, weights, x):
    """The logits [B, K] that common wrong forward passes give for x [B, T, d]: to name the mistake."""
    lstm = cls_name == "LSTM"
    step = lstm_cell(weights) if lstm else rnn_cell(weights)
    zeros = x.new_zeros(x.shape[0], weights["W_ph"].shape[1])
    start = (zeros, zeros) if lstm else zeros

    def states(xs, state=start, carry=lambda new: new):  # every state of the loop over xs [B, T', d]
        found = []
        for t in range(xs.shape[1]):
            state = step(xs[:, t], carry(state))
            found.append(state)
        return found

    def hidden(state):
        return state[0] if lstm else state

    def out(h):
        return h @ weights["W_ph"].T + weights["b_p"]

    every = states(x)
    wrong = {
        "the logits come from the first hidden state h(1), not the last h(T)": out(hidden(every[0])),
        "the loop skips the first input x(1) (range(1, T))": out(hidden(states(x[:, 1:])[-1])),
        "the loop never reads the last input x(T) (range(T - 1))": out(hidden(states(x[:, :-1])[-1])),
        "the sequence is read backwards": out(hidden(states(x.flip(1))[-1])),
        "forward returns softmax probabilities instead of the logits F.cross_entropy expects":
            torch.softmax(out(hidden(every[-1])), dim=1),
        "the logits come from the mean of all hidden states instead of the last one":
            out(torch.stack([hidden(s) for s in every]).mean(0)),
    }
    if lstm:
        wrong.update({
            "the logits come from the cell state c(T) instead of the hidden state h(T)": out(every[-1][1]),
            "the cell state is reset to zero at every step; only h is carried":
                out(states(x, carry=lambda s: (s[0], zeros))[-1][0]),
            "the hidden state is reset to zero at every step; only the cell is carried":
                out(states(x, carry=lambda s: (zeros, s[1]))[-1][0]),
            "the pair returned by step is unpacked as (c, h)": out(states(x, carry=lambda s: (s[1], s[0]))[-1][1]),
        })
    else:
        wrong.update({
            "the hidden state is reset to zero at every step instead of carried over":
                out(states(x, carry=lambda s: zeros)[-1]),
            "the hidden state starts at ones instead of h(0) = 0": out(states(x, state=torch.ones_like(zeros))[-1]),
        })
    return wrong
