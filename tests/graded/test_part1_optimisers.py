"""Graded tests of Question 1.4 (3 points; the explanation of the benefits is read by hand).

Each optimiser of ``part1.optimisers`` must follow torch.optim's trajectory step by step: the same
start, the same loss, float64, many steps, default and non-default hyperparameters. The loss is
not quadratic and the gradients change sign and scale, so an update that is wrong by a factor, a
sign, a missing bias correction or eps in the wrong place drifts away within a few steps.
"""
from __future__ import annotations

import pytest
import torch

STEPS = 60


def start(seed=0):
    """Two parameters of different shapes, float64."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)]


def loss_fn(params):
    """A smooth non-quadratic loss whose gradients differ in scale across coordinates."""
    a, b = params
    scales = torch.arange(1, 13, dtype=torch.float64).reshape(3, 4)
    return (scales * a ** 2).sum() + torch.cos(3 * a).sum() + 0.1 * (b ** 4).sum() - b.sum() + (a.sum() * b[0]) ** 2


def assert_same_trajectory(make_ours, make_torch, steps=STEPS):
    ours = [p.clone().requires_grad_() for p in start()]
    theirs = [p.clone().requires_grad_() for p in start()]
    opt_ours, opt_theirs = make_ours(ours), make_torch(theirs)
    for step in range(1, steps + 1):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            loss_fn(params).backward()
            opt.step()
        for p, q in zip(ours, theirs):
            assert p.shape == q.shape and p.dtype == torch.float64
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-9, atol=1e-10,
                                       msg=lambda m: f"parameters differ from torch.optim after step {step}:\n{m}")


def moved(make_ours):
    """The optimiser must actually change the parameters (a no-op step is not an optimiser)."""
    params = [p.clone().requires_grad_() for p in start()]
    opt = make_ours(params)
    loss_fn(params).backward()
    opt.step()
    assert any(not torch.equal(p.detach(), q) for p, q in zip(params, start())), "step() left the parameters unchanged"


@pytest.mark.points(1, question="1.4")
def test_momentum_matches_torch_sgd(load):
    """Momentum follows torch.optim.SGD(momentum=mu) step by step (several lr and mu)"""
    optimisers = load("part1.optimisers")
    moved(lambda ps: optimisers.Momentum(ps, lr=0.01))
    for lr, mu in ((0.01, 0.9), (0.003, 0.5), (0.02, 0.0)):
        assert_same_trajectory(lambda ps: optimisers.Momentum(ps, lr=lr, momentum=mu),
                               lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu))
    assert_same_trajectory(lambda ps: optimisers.Momentum(ps), lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9))


@pytest.mark.points(1, question="1.4")
def test_rmsprop_matches_torch(load):
    """RMSprop follows torch.optim.RMSprop step by step (defaults and other lr, alpha, eps)"""
    optimisers = load("part1.optimisers")
    moved(optimisers.RMSprop)
    assert_same_trajectory(optimisers.RMSprop, torch.optim.RMSprop)
    for lr, alpha, eps in ((0.003, 0.9, 1e-3), (0.05, 0.5, 1e-8)):
        assert_same_trajectory(lambda ps: optimisers.RMSprop(ps, lr=lr, alpha=alpha, eps=eps),
                               lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=alpha, eps=eps))


@pytest.mark.points(1, question="1.4")
def test_adam_matches_torch(load):
    """Adam follows torch.optim.Adam step by step (defaults and other lr, betas, eps), with bias correction"""
    optimisers = load("part1.optimisers")
    moved(optimisers.Adam)
    assert_same_trajectory(optimisers.Adam, torch.optim.Adam)
    for lr, betas, eps in ((0.01, (0.8, 0.95), 1e-3), (0.003, (0.5, 0.9), 1e-8)):
        assert_same_trajectory(lambda ps: optimisers.Adam(ps, lr=lr, betas=betas, eps=eps),
                               lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, eps=eps))
    # a parameter without a gradient is skipped and keeps its own step count for the bias correction
    a, b = (p.clone().requires_grad_() for p in start())
    a2, b2 = (p.clone().requires_grad_() for p in start())
    ours, theirs = optimisers.Adam([a, b], lr=0.01), torch.optim.Adam([a2, b2], lr=0.01)
    for step in range(5):
        for (p, q), opt in (((a, b), ours), ((a2, b2), theirs)):
            opt.zero_grad()
            (loss_fn([p, q]) if step >= 2 else (p ** 2).sum()).backward()  # b gets no gradient in steps 0 and 1
            opt.step()
    torch.testing.assert_close(b.detach(), b2.detach(), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(a.detach(), a2.detach(), rtol=1e-9, atol=1e-10)
