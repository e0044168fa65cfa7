"""Graded tests of Question 1.4 (3 points; the explanation of the benefits is read by hand).

Each optimiser of ``part1.optimisers`` (run by the probe) must follow torch.optim's trajectory step by step: the same
start, the same loss, float64, many steps, default and non-default hyperparameters. The loss is
not quadratic and the gradients change sign and scale, so an update that is wrong by a factor, a
sign, a missing bias correction or eps in the wrong place drifts away within a few steps.
"""
from __future__ import annotations

import pytest
import torch

from grader.probes import probe

try:  # the common wrong update rules, to name the one a wrong trajectory follows: they spell out the right
    from tests.hidden.optimiser_mistakes import Rule, mistakes  # updates too, so they stay with the hidden tests
except ImportError:  # the student edition: the comparison says what differs, without naming the mistake
    Rule = mistakes = None

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


OPTIMISERS = {"Momentum": torch.optim.SGD, "RMSprop": torch.optim.RMSprop, "Adam": torch.optim.Adam}


def trajectory(make, steps, first_steps_only_a=0):
    """The parameters after each of ``steps`` steps of ``make(params)`` from ``start()``, float64.

    In the first ``first_steps_only_a`` steps only the first parameter gets a gradient."""
    params = [p.clone().requires_grad_() for p in start()]
    optimiser = make(params)
    after = []
    for step in range(steps):
        optimiser.zero_grad()
        (loss_fn(params) if step >= first_steps_only_a else (params[0] ** 2).sum()).backward()
        optimiser.step()
        after.append([p.detach().clone() for p in params])
    return after


@probe
def optimiser_trajectory(load, name, settings, steps, first_steps_only_a=0):
    """The student's optimiser ``name`` with ``settings`` on the loss above: parameters after every step."""
    optimisers = load("part1.optimisers")
    return trajectory(lambda ps: getattr(optimisers, name)(ps, **settings), steps, first_steps_only_a)


DEFAULTS = {"Momentum": {"lr": 1e-3, "momentum": 0.9}, "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8},
            "Adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}}


def follows(ours, theirs):
    """Whether two trajectories are the same, step by step (to the tolerance of the comparison below)."""
    return len(ours) == len(theirs) and all(
        len(mine) == len(want) and all(isinstance(p, torch.Tensor) and p.shape == q.shape
                                       and torch.allclose(p, q, rtol=1e-9, atol=1e-10, equal_nan=True) for p, q in zip(mine, want))
        for mine, want in zip(ours, theirs))


def assert_same_trajectory(run, name, settings, reference_settings=None, steps=STEPS, first_steps_only_a=0):
    """The student's optimiser follows torch.optim's, with the same settings, step by step."""
    ours = run(optimiser_trajectory, name=name, settings=settings, steps=steps, first_steps_only_a=first_steps_only_a)
    reference = OPTIMISERS[name]
    theirs = trajectory(lambda ps: reference(ps, **(settings if reference_settings is None else reference_settings)),
                        steps, first_steps_only_a)
    assert len(ours) == steps
    if mistakes is not None and not follows(ours, theirs):  # name the mistake if it is a common wrong rule
        used = {**DEFAULTS[name], **(settings if reference_settings is None else reference_settings)}
        for mistake, update in mistakes(name, **used).items():
            wrong = trajectory(lambda ps: Rule(ps, update), steps, first_steps_only_a)
            assert not follows(ours, wrong), f"{name} with {used}: {mistake}"
    for step, (mine, want) in enumerate(zip(ours, theirs), start=1):
        for p, q in zip(mine, want, strict=True):
            assert p.shape == q.shape and p.dtype == torch.float64
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10,
                                       msg=lambda m: f"parameters differ from torch.optim after step {step}:\n{m}")


def moved(run, name, settings=None):
    """The optimiser must actually change the parameters (a no-op step is not an optimiser)."""
    after = run(optimiser_trajectory, name=name, settings=settings or {}, steps=1)[0]
    assert any(not torch.equal(p, q) for p, q in zip(after, start())), "step() left the parameters unchanged"


@pytest.mark.points(1, question="1.4")
def test_momentum_matches_torch_sgd(run):
    """Momentum follows torch.optim.SGD(momentum=mu) step by step (several lr and mu)"""
    moved(run, "Momentum", {"lr": 0.01})
    for lr, mu in ((0.01, 0.9), (0.003, 0.5), (0.02, 0.0)):
        assert_same_trajectory(run, "Momentum", {"lr": lr, "momentum": mu})
    assert_same_trajectory(run, "Momentum", {}, {"lr": 1e-3, "momentum": 0.9})


@pytest.mark.points(1, question="1.4")
def test_rmsprop_matches_torch(run):
    """RMSprop follows torch.optim.RMSprop step by step (defaults and other lr, alpha, eps)"""
    moved(run, "RMSprop")
    assert_same_trajectory(run, "RMSprop", {})
    for lr, alpha, eps in ((0.003, 0.9, 1e-3), (0.05, 0.5, 1e-8)):
        assert_same_trajectory(run, "RMSprop", {"lr": lr, "alpha": alpha, "eps": eps})


@pytest.mark.points(1, question="1.4")
def test_adam_matches_torch(run):
    """Adam follows torch.optim.Adam step by step (defaults and other lr, betas, eps), with bias correction"""
    moved(run, "Adam")
    assert_same_trajectory(run, "Adam", {})
    for lr, betas, eps in ((0.01, (0.8, 0.95), 1e-3), (0.003, (0.5, 0.9), 1e-8)):
        assert_same_trajectory(run, "Adam", {"lr": lr, "betas": betas, "eps": eps})
    # a parameter without a gradient is skipped and keeps its own step count for the bias correction
    assert_same_trajectory(run, "Adam", {"lr": 0.01}, steps=5, first_steps_only_a=2)
