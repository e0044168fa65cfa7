"""Question 1.1 in code: the gradients of the last-step loss by hand, without autograd.

For the vanilla RNN with loss L = CrossEntropy(p(T), y) averaged over a batch of B sequences::

    dL/dW_ph = (y_hat - y) h(T)^T                                   (only the last step)
    dL/dW_hh = sum_t  delta_a(t) h(t-1)^T,   delta_a(t) = diag(1 - h(t)^2) delta_h(t),
    delta_h(T) = W_ph^T (y_hat - y),         delta_h(t-1) = W_hh^T delta_a(t)

with delta_h(t) = dL/dh(t) and delta_a(t) = dL/da(t) for the pre-activation a(t) of step t, the names
of the code below

that is, back-propagation through time: the error of the last hidden state is sent back one step at
a time through W_hh and the tanh derivative, and every step adds its share to dL/dW_hh.
"""
from __future__ import annotations

import torch


def rnn_gradients(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW_ph [K, n] and dL/dW_hh [n, n] of a ``VanillaRNN`` for the batch (x [B, T], y [B]).

    L is the mean cross-entropy of the last step over the batch, as ``F.cross_entropy`` computes
    it. Compute the forward pass yourself, keeping every hidden state, then go backwards through
    time. Use only tensor algebra (no ``backward``, no ``torch.autograd``).
    """
    from .models import as_sequence
    x = as_sequence(x, model.input_dim)
    W_hx, W_hh, b_h, W_ph, b_p = (p.detach() for p in (model.W_hx, model.W_hh, model.b_h, model.W_ph, model.b_p))
    ### BEGIN SOLUTION Question 1.1: implement rnn_gradients (forward pass, then backpropagation through time)
    batch, steps = x.shape[0], x.shape[1]
    hs = [x.new_zeros(batch, W_hh.shape[0])]  # h(0) = 0
    for t in range(steps):
        hs.append(torch.tanh(x[:, t] @ W_hx.T + hs[-1] @ W_hh.T + b_h))
    p = hs[-1] @ W_ph.T + b_p
    delta_p = (torch.softmax(p, dim=1) - torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)) / batch  # [B, K]
    grad_W_ph = delta_p.T @ hs[-1]  # (y_hat - y) h(T)^T, summed over the batch
    delta_h = delta_p @ W_ph  # dL/dh(T), [B, n]
    grad_W_hh = torch.zeros_like(W_hh)
    for t in range(steps, 0, -1):
        delta_a = delta_h * (1 - hs[t] ** 2)  # through the tanh of step t
        grad_W_hh += delta_a.T @ hs[t - 1]
        delta_h = delta_a @ W_hh  # to h(t-1)
    return grad_W_ph, grad_W_hh
    ### END SOLUTION
