"""Common wrong update rules of Question 1.4, run by the check of ``tests/graded/test_part1_optimisers.py``
to name the mistake a wrong trajectory follows. They are variations of the right updates, so they stay
with the hidden tests, out of the student edition; without them the check still fails, without the name."""
from __future__ import annotations

import torch


class Rule:
    """A minimal optimiser with the interface of torch.optim, whose per-parameter ``update(w, g, state)`` is a
    common wrong rule: the check runs it to name the mistake that the student's trajectory follows."""

    def __init__(self, params, update):
        self.params, self.update, self.state = list(params), update, [{} for _ in params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, state)


def mistakes(name, lr, momentum=None, alpha=None, betas=None, eps=None):
    """{what the mistake is: update(w, g, state)} for the optimiser ``name`` with these settings."""
    def zeros(state, key, w):
        return state.setdefault(key, torch.zeros_like(w))

    if name == "Momentum":
        def dampened(w, g, state):
            v = zeros(state, "v", w)
            v.mul_(momentum).sub_((1 - momentum) * lr * g)
            w.add_(v)

        def nesterov(w, g, state):
            v = zeros(state, "v", w)
            v.mul_(momentum).sub_(lr * g)
            w.add_(momentum * v - lr * g)
        return {"the velocity is dampened, v = mu v - (1 - mu) lr g; the heavy-ball velocity adds lr g in full":
                dampened,
                "there is no momentum: plain SGD (is the velocity kept in the state, updated in place?)":
                lambda w, g, state: w.sub_(lr * g),
                "the step is Nesterov's look-ahead mu v - lr g, not the velocity v": nesterov}
    if name == "RMSprop":
        def rule(eps_inside=False, corrected=False, square=True):
            def update(w, g, state):
                s = zeros(state, "s", w)
                s.mul_(alpha).add_((1 - alpha) * (g * g if square else g.abs()))
                state["t"] = state.get("t", 0) + 1
                s_hat = s / (1 - alpha ** state["t"]) if corrected else s
                w.sub_(lr * g / ((s_hat + eps).sqrt() if eps_inside else s_hat.sqrt() + eps))
            return update
        return {"eps is added inside the square root, sqrt(s + eps), instead of to sqrt(s)": rule(eps_inside=True),
                "s is bias-corrected as in Adam; RMSprop has no bias correction": rule(corrected=True),
                "the running average is of |g| instead of g^2": rule(square=False)}
    beta1, beta2 = betas

    def adam(eps_inside=False, correct_m=True, correct_s=True, count=True):
        def update(w, g, state):
            state["t"] = t = state.get("t", 0) + 1 if count else 1
            m, s = zeros(state, "m", w), zeros(state, "s", w)
            m.mul_(beta1).add_((1 - beta1) * g)
            s.mul_(beta2).add_((1 - beta2) * g * g)
            m_hat = m / (1 - beta1 ** t) if correct_m else m
            s_hat = s / (1 - beta2 ** t) if correct_s else s
            w.sub_(lr * m_hat / ((s_hat + eps).sqrt() if eps_inside else s_hat.sqrt() + eps))
        return update
    return {"there is no bias correction: m_hat = m / (1 - beta1^t) and s_hat = s / (1 - beta2^t) are missing":
            adam(correct_m=False, correct_s=False),
            "only m is bias-corrected, s is not": adam(correct_s=False),
            "eps is added inside the square root, sqrt(s_hat + eps), instead of to sqrt(s_hat)": adam(eps_inside=True),
            "the step count t stays 1: it is not kept from one step to the next (state['t'])": adam(count=False)}
