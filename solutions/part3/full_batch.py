"""The full-batch training loop of the Part 3 examples (the graphs are small): ``fit``, not a command."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def fit(model: nn.Module, loss_fn: Callable[[], Tensor], steps: int, lr: float,
        weight_decay: float = 0.0) -> list[float]:
    """Minimise ``loss_fn()`` (a closure that runs the model on the whole data set) with Adam for
    ``steps`` full-batch steps; the model is left in eval mode. Returns the loss of every step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    return losses
