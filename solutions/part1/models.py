"""A vanilla RNN and an LSTM written from scratch: nn.Parameter weights and a Python loop over time.

No torch.nn.RNN, torch.nn.LSTM or torch.nn.Linear. Both models read a batch of sequences and
classify it from the last hidden state::

    x: [B, T] (input_dim = 1) or [B, T, d]   ->   logits p: [B, K]

Weights are initialised as in Glorot and Bengio (2010) (``torch.nn.init.xavier_uniform_``),
biases at zero, and the hidden state starts at zero, h(0) = 0.
"""
from __future__ import annotations

import torch
from torch import nn

from .palindrome import NUM_CLASSES


def glorot(rows: int, cols: int) -> nn.Parameter:
    """A [rows, cols] weight with Glorot (Xavier) uniform initialisation."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols)))


def zeros(size: int) -> nn.Parameter:
    """A bias of [size] zeros."""
    return nn.Parameter(torch.zeros(size))


def as_sequence(x: torch.Tensor, input_dim: int) -> torch.Tensor:
    """Check the input and return it as [B, T, input_dim] (a [B, T] input means input_dim = 1)."""
    if x.dim() == 2 and input_dim == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 3 or x.shape[-1] != input_dim:
        raise ValueError(f"expected input of shape [B, T, {input_dim}]"
                         f"{' or [B, T]' if input_dim == 1 else ''}, got {list(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("expected at least one time step, got a sequence of length 0")
    return x


class VanillaRNN(nn.Module):
    """h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h),  p = W_ph h(T) + b_p,  h(0) = 0."""

    def __init__(self, input_dim: int, num_hidden: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.input_dim, self.num_hidden, self.num_classes = input_dim, num_hidden, num_classes
        # Question 1.2: create the parameters with exactly these names and shapes, Glorot weights
        # (use `glorot(rows, cols)`) and zero biases (use `zeros(size)`):
        #   W_hx [num_hidden, input_dim], W_hh [num_hidden, num_hidden], b_h [num_hidden],
        #   W_ph [num_classes, num_hidden], b_p [num_classes].
        ### BEGIN SOLUTION Question 1.2: create the parameters of VanillaRNN.__init__
        self.W_hx = glorot(num_hidden, input_dim)
        self.W_hh = glorot(num_hidden, num_hidden)
        self.b_h = zeros(num_hidden)
        self.W_ph = glorot(num_classes, num_hidden)
        self.b_p = zeros(num_classes)
        ### END SOLUTION

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step: x_t [B, input_dim] and h(t-1) [B, num_hidden] give h(t) [B, num_hidden].

        Batches are rows, so W x becomes ``x @ W.T``.
        """
        ### BEGIN SOLUTION Question 1.2: implement VanillaRNN.step
        return torch.tanh(x_t @ self.W_hx.T + h @ self.W_hh.T + self.b_h)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T] or [B, T, input_dim] -> logits p(T) [B, num_classes] (no softmax).

        Start from h(0) = 0 (zeros of the input's dtype and device), apply ``self.step`` for
        t = 1..T in a Python loop, and apply the output layer to the last hidden state.
        """
        x = as_sequence(x, self.input_dim)
        ### BEGIN SOLUTION Question 1.2: implement VanillaRNN.forward
        h = x.new_zeros(x.shape[0], self.num_hidden)
        for t in range(x.shape[1]):
            h = self.step(x[:, t], h)
        return h @ self.W_ph.T + self.b_p
        ### END SOLUTION


class LSTM(nn.Module):
    """The LSTM of the assignment (Hochreiter and Schmidhuber, 1997)::

        g = tanh(W_gx x + W_gh h(t-1) + b_g)        candidate cell input
        i = sigmoid(W_ix x + W_ih h(t-1) + b_i)     input gate
        f = sigmoid(W_fx x + W_fh h(t-1) + b_f)     forget gate
        o = sigmoid(W_ox x + W_oh h(t-1) + b_o)     output gate
        c(t) = g * i + c(t-1) * f
        h(t) = tanh(c(t)) * o
        p = W_ph h(T) + b_p,     h(0) = c(0) = 0
    """

    GATES = ("g", "i", "f", "o")

    def __init__(self, input_dim: int, num_hidden: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.input_dim, self.num_hidden, self.num_classes = input_dim, num_hidden, num_classes
        # Question 1.6: for each gate z in g, i, f, o create W_zx [num_hidden, input_dim],
        # W_zh [num_hidden, num_hidden] and b_z [num_hidden] (e.g. with setattr), then the output
        # layer W_ph [num_classes, num_hidden] and b_p [num_classes]. Glorot weights, zero biases.
        ### BEGIN SOLUTION Question 1.6: create the parameters of LSTM.__init__
        for z in self.GATES:
            setattr(self, f"W_{z}x", glorot(num_hidden, input_dim))
            setattr(self, f"W_{z}h", glorot(num_hidden, num_hidden))
            setattr(self, f"b_{z}", zeros(num_hidden))
        self.W_ph = glorot(num_classes, num_hidden)
        self.b_p = zeros(num_classes)
        ### END SOLUTION

    def step(self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: x_t [B, input_dim] and (h(t-1), c(t-1)), each [B, num_hidden], give (h(t), c(t))."""
        ### BEGIN SOLUTION Question 1.6: implement LSTM.step
        h, c = state

        def affine(z: str) -> torch.Tensor:
            return x_t @ getattr(self, f"W_{z}x").T + h @ getattr(self, f"W_{z}h").T + getattr(self, f"b_{z}")

        g = torch.tanh(affine("g"))
        i, f, o = torch.sigmoid(affine("i")), torch.sigmoid(affine("f")), torch.sigmoid(affine("o"))
        c = g * i + c * f
        return torch.tanh(c) * o, c
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T] or [B, T, input_dim] -> logits p(T) [B, num_classes], from h(0) = c(0) = 0."""
        x = as_sequence(x, self.input_dim)
        ### BEGIN SOLUTION Question 1.6: implement LSTM.forward
        h = c = x.new_zeros(x.shape[0], self.num_hidden)
        for t in range(x.shape[1]):
            h, c = self.step(x[:, t], (h, c))
        return h @ self.W_ph.T + self.b_p
        ### END SOLUTION


MODELS = {"rnn": VanillaRNN, "lstm": LSTM}


def count_parameters(model: nn.Module) -> int:
    """The number of trainable scalars of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_parameter_count(input_dim: int, num_hidden: int, num_classes: int) -> int:
    """Question 1.5 (b): the closed-form number of trainable parameters of ``LSTM``.

    Four gates, each with an input weight [n, d], a recurrent weight [n, n] and a bias [n], plus
    the output layer W_ph [K, n] and b_p [K]. (The batch size does not enter.)
    """
    ### BEGIN SOLUTION Question 1.5: implement lstm_parameter_count
    d, n, k = input_dim, num_hidden, num_classes
    return 4 * (n * d + n * n + n) + n * k + k
    ### END SOLUTION
