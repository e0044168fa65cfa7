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
        def heavy_ball(first=None, sign=-1, momentum_last=False, plain_step=False):
            def update(w, g, state):
                v = state.setdefault("v", torch.zeros_like(w) if first is None else first(g))
                if momentum_last:
                    v.sub_(lr * g).mul_(momentum)
                else:
                    v.mul_(momentum).add_(sign * lr * g)
                if plain_step:
                    w.sub_(lr * g)
                w.add_(v)
            return update
        return {"the velocity is dampened, v = mu v - (1 - mu) lr g; the heavy-ball velocity adds lr g in full":
                dampened,
                "there is no momentum: plain SGD (is the velocity kept in the state, updated in place?)":
                lambda w, g, state: w.sub_(lr * g),
                "the step is Nesterov's look-ahead mu v - lr g, not the velocity v": nesterov,
                "the velocity starts at -lr g and is then updated with the same gradient again; it starts at 0":
                heavy_ball(first=lambda g: -lr * g.clone()),
                "the gradient is added to the velocity (gradient ascent): v = mu v - lr g": heavy_ball(sign=1),
                "the momentum multiplies the new gradient too, v = mu (v - lr g), instead of v = mu v - lr g":
                heavy_ball(momentum_last=True),
                "the parameter takes a plain gradient step and then the velocity step; the step is v alone":
                heavy_ball(plain_step=True)}
    if name == "RMSprop":
        def rule(eps_inside=False, corrected=False, square=True, weight=alpha, kept=True, first=None, root=True):
            def update(w, g, state):
                s = state.setdefault("s", torch.zeros_like(w) if first is None else first(g))
                new = s * weight + (1 - weight) * (g * g if square else g.abs())
                if kept:
                    s.copy_(new)
                state["t"] = state.get("t", 0) + 1
                s_hat = new / (1 - alpha ** state["t"]) if corrected else new
                scale = (s_hat + eps).sqrt() if eps_inside else (s_hat.sqrt() if root else s_hat) + eps
                w.sub_(lr * g / scale)
            return update
        return {"eps is added inside the square root, sqrt(s + eps), instead of to sqrt(s)": rule(eps_inside=True),
                "s is bias-corrected as in Adam; RMSprop has no bias correction": rule(corrected=True),
                "the running average is of |g| instead of g^2": rule(square=False),
                "alpha weighs the new squared gradient and 1 - alpha the old average; s = alpha s + (1 - alpha) g^2":
                rule(weight=1 - alpha),
                "the average kept in the state stays zero (s = alpha s + ... rebinds a local name; update it in "
                "place)": rule(kept=False),
                "the average starts at the first squared gradient instead of s(0) = 0": rule(first=lambda g: g * g),
                "the gradient is divided by the mean square s itself, not by its square root": rule(root=False)}
    beta1, beta2 = betas

    shared = {"t": 0}  # one step counter for every parameter (a mistake)

    def adam(eps_inside=False, correct_m=True, correct_s=True, count=True, share=False, b1=beta1, b2=beta2,
             kept=True, in_place=False, root=True, eps_late=False):
        def update(w, g, state):
            if share:
                shared["t"] = t = shared["t"] + 1
            else:
                state["t"] = t = state.get("t", 0) + 1 if count else 1
            m, s = zeros(state, "m", w), zeros(state, "s", w)
            new_m = m * b1 + (1 - b1) * g
            if kept:
                m.copy_(new_m)
            s.mul_(b2).add_((1 - b2) * g * g)
            m_hat = new_m / (1 - b1 ** t) if correct_m else new_m
            if in_place:
                m.copy_(m_hat)
            s_hat = s / (1 - b2 ** t) if correct_s else s
            if eps_late:
                w.sub_(lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t) * new_m / (s.sqrt() + eps))
            else:
                w.sub_(lr * m_hat / ((s_hat + eps).sqrt() if eps_inside else (s_hat.sqrt() if root else s_hat) + eps))
        return update
    return {"there is no bias correction: m_hat = m / (1 - beta1^t) and s_hat = s / (1 - beta2^t) are missing":
            adam(correct_m=False, correct_s=False),
            "only m is bias-corrected, s is not": adam(correct_s=False),
            "eps is added inside the square root, sqrt(s_hat + eps), instead of to sqrt(s_hat)": adam(eps_inside=True),
            "the step count t stays 1: it is not kept from one step to the next (state['t'])": adam(count=False),
            "one step count is shared by every parameter (it counts their updates); keep t per parameter in state":
            adam(share=True),
            "eps is added to sqrt(s) before the bias correction (the paper's eps-hat form), not to sqrt(s_hat)":
            adam(eps_late=True),
            "beta1 and beta2 are swapped: beta1 averages the gradient, beta2 its square": adam(b1=beta2, b2=beta1),
            "the first moment kept in the state stays zero (m = beta1 m + ... rebinds a local name; update it in "
            "place)": adam(kept=False),
            "the bias correction is applied in place (m.div_), so the stored average is corrupted": adam(in_place=True),
            "the step divides by s_hat instead of its square root": adam(root=False)}
