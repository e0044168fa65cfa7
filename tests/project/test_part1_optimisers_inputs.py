"""Ungraded: the optimisers' boilerplate rejects bad settings with a clear error (the stubs keep it)."""
from __future__ import annotations

import pytest
import torch

from solutions.part1.optimisers import OPTIMISERS, Adam, Momentum, RMSprop


@pytest.mark.parametrize("make, match", [
    (lambda ps: Momentum(ps, lr=-1.0), "lr"),
    (lambda ps: Momentum(ps, momentum=1.0), "momentum"),
    (lambda ps: RMSprop(ps, alpha=1.5), "alpha"),
    (lambda ps: RMSprop(ps, eps=-1e-8), "eps"),
    (lambda ps: Adam(ps, betas=(0.9,)), "betas"),
    (lambda ps: Adam(ps, betas=(0.9, 1.0)), "beta2"),
    (lambda ps: Adam([], lr=0.1), "empty"),
])
def test_bad_settings_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.zeros(2, requires_grad=True)])


def test_non_tensor_parameters_raise():
    with pytest.raises(TypeError, match="tensors"):
        Adam([1.0, 2.0])


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_zero_grad_clears(name):
    w = torch.ones(3, requires_grad=True)
    opt = OPTIMISERS[name]([w], lr=0.1)
    w.sum().backward()
    opt.zero_grad()
    assert w.grad is None
