"""Question 1.4 in code: momentum, RMSprop and Adam written from their equations.

Each optimiser is a tiny class with the interface of ``torch.optim``: build it on a list of
tensors, call ``zero_grad()``, compute the loss, ``backward()``, then ``step()``. ``step`` walks over
the parameters and hands each one, its gradient ``g`` (same shape) and its own state (a dict, empty
on the first step, for the running averages) to ``update``, which changes the parameter in place.
With w the parameter, g its gradient, t = 1, 2, ... the step and every operation element-wise::

    momentum (Polyak 1964):   v(t) = mu v(t-1) - lr g(t),                   w(t) = w(t-1) + v(t)
    RMSprop (Tieleman 2012):  s(t) = alpha s(t-1) + (1 - alpha) g(t)^2,     w(t) = w(t-1) - lr g(t) / (sqrt(s(t)) + eps)
    Adam (Kingma 2015):       m(t) = beta1 m(t-1) + (1 - beta1) g(t),       m_hat = m(t) / (1 - beta1^t)
                              s(t) = beta2 s(t-1) + (1 - beta2) g(t)^2,     s_hat = s(t) / (1 - beta2^t)
                              w(t) = w(t-1) - lr m_hat / (sqrt(s_hat) + eps)

with v(0) = s(0) = m(0) = 0. These are the updates of ``torch.optim.SGD(momentum=mu)`` (which
keeps b = -v / lr instead of v), ``torch.optim.RMSprop`` and ``torch.optim.Adam`` with their other
options at their defaults.

>>> w = torch.tensor([1.0, -2.0], requires_grad=True)
>>> opt = RMSprop([w], lr=0.1)
>>> (w ** 2).sum().backward(); opt.step()
>>> w.detach().round(decimals=4)  # the first step moves each coordinate by lr / sqrt(1 - alpha) = 1
tensor([ 0., -1.])
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


class Optimiser:
    """The shared loop of every optimiser: ``update`` holds the rule of one parameter."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimiser got an empty list of parameters")
        if not all(isinstance(p, torch.Tensor) for p in self.params):
            raise TypeError("parameters must be tensors")
        check_range("lr", lr, 0.0, float("inf"))
        self.lr = lr
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (parameters without one are left alone)."""
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, state)

    def update(self, w: torch.Tensor, g: torch.Tensor, state: dict) -> None:
        """Change the parameter ``w`` in place, given its gradient ``g`` and its ``state`` dict."""
        raise NotImplementedError(f"{type(self).__name__} does not define update")


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise a ValueError unless low <= value < high."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{name} must be a number in [{low}, {high}), got {value!r}")


class Momentum(Optimiser):
    """SGD with (heavy-ball) momentum mu: a velocity v that accumulates the past gradients."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, momentum: float = 0.9):
        super().__init__(params, lr)
        check_range("momentum", momentum, 0.0, 1.0)
        self.momentum = momentum

    def update(self, w, g, state):
        """v <- mu v - lr g (v starts at 0), then w <- w + v. Change ``w`` in place."""
        ### BEGIN SOLUTION Question 1.4: implement the momentum update
        v = state.setdefault("v", torch.zeros_like(w))
        v.mul_(self.momentum).sub_(self.lr * g)
        w.add_(v)
        ### END SOLUTION


class RMSprop(Optimiser):
    """RMSprop: divide each gradient by a running root mean square of its own past values."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr)
        check_range("alpha", alpha, 0.0, 1.0)
        check_range("eps", eps, 0.0, float("inf"))
        self.alpha, self.eps = alpha, eps

    def update(self, w, g, state):
        """s <- alpha s + (1 - alpha) g^2 (s starts at 0), then w <- w - lr g / (sqrt(s) + eps). In place."""
        ### BEGIN SOLUTION Question 1.4: implement the RMSprop update
        s = state.setdefault("s", torch.zeros_like(w))
        s.mul_(self.alpha).add_((1 - self.alpha) * g * g)
        w.sub_(self.lr * g / (s.sqrt() + self.eps))
        ### END SOLUTION


class Adam(Optimiser):
    """Adam: momentum on the gradient (m) and RMSprop's scale (s), both with bias correction."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_range("beta1", betas[0], 0.0, 1.0)
        check_range("beta2", betas[1], 0.0, 1.0)
        check_range("eps", eps, 0.0, float("inf"))
        self.betas, self.eps = tuple(betas), eps

    def update(self, w, g, state):
        """m <- b1 m + (1 - b1) g,  s <- b2 s + (1 - b2) g^2 (both start at 0); with t the number of
        updates of this parameter so far, this one included (keep it in ``state``, e.g. ``state["t"]``),
        w <- w - lr m_hat / (sqrt(s_hat) + eps),  m_hat = m / (1 - b1^t),  s_hat = s / (1 - b2^t). In place."""
        ### BEGIN SOLUTION Question 1.4: implement the Adam update
        beta1, beta2 = self.betas
        state["t"] = t = state.get("t", 0) + 1
        m = state.setdefault("m", torch.zeros_like(w))
        s = state.setdefault("s", torch.zeros_like(w))
        m.mul_(beta1).add_((1 - beta1) * g)
        s.mul_(beta2).add_((1 - beta2) * g * g)
        m_hat = m / (1 - beta1 ** t)
        s_hat = s / (1 - beta2 ** t)
        w.sub_(self.lr * m_hat / (s_hat.sqrt() + self.eps))
        ### END SOLUTION


OPTIMISERS = {"momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}
