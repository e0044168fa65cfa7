"""Accuracy against input length: train every (model, input_length, seed) of Part 1 at once.

    python -m experiments.part1_sweep --models rnn lstm --input-lengths 5-20 --seeds 0 1 2 \\
        --steps 10000 --device auto --out data/part1/sweep
    OMP_NUM_THREADS=2 python -m experiments.part1_sweep --seeds 0 --device cpu --threads 2 --workers 2 \\
        --out data/part1/sweep_cpu

Thirty-two separate 10,000-step runs (two models, input lengths 5 to 20) take about an hour per seed
on a small CPU with ``solutions.part1.train``. Here the M models of one kind (all lengths, all seeds)
are trained together, and each one is exactly the model that a separate ``train()`` run would train:

* **Stacked weights.** Every weight gets a leading model dimension, so ``W_hh`` of all models is one
  tensor [M, H, H] and a time step of all models is one batched product (``torch.baddbmm``). The
  LSTM keeps its four gates (g, i, f, o, in that order) in one [M, 4H, H] tensor: one product per
  step instead of four.
* **Left padding without wasted work.** A model of input length T reads the last T of the
  T_max steps; its hidden state stays at its zero start while its sequence has not begun. This is
  the masked update h_t = m_t cell(h_{t-1}, x_t) + (1 - m_t) h_{t-1} with m_t = 0 on padding, but
  computed without the padding: the models are ordered by length, longest first, so at step t the
  models already running are a prefix of the model dimension, and only that prefix is computed
  (the hidden state grows by zero rows when shorter models start). ``skip_padding=False`` computes
  the masked update over every model instead (slower; kept for the benchmark and the test).
* **Backpropagation through time by hand.** With padding skipped, the recurrence of all models is
  one ``StackedRecurrence`` (a ``torch.autograd.Function``): one batched product per time step for
  the input, the recurrent weights and the bias together (the input and the bias alone for a
  model's first step, whose h_0 = 0), tanh computed as 2 sigmoid(2a) - 1 (several times faster on a
  CPU), the gate derivatives written out in a few in-place passes over buffers kept from step to
  step, no autograd graph of hundreds of small operations and no zero-filled gradients of per-step
  weight slices. ``fused=False`` runs the same computation step by step under autograd (for the
  test, and for ``--compile``).
* **Per-model clipping, one optimiser.** The loss is the sum of the models' mean cross-entropies,
  so each model's gradient is its own. Each model's gradient is scaled by
  min(1, max_norm / (its global norm + 1e-6)), the rule of ``clip_grad_norm_``, with the norm taken
  over all of that model's parameter slices. RMSprop is element-wise (its running average, alpha
  and eps act on each element alone), so one ``torch.optim.RMSprop`` over the stacked tensors takes
  the same steps as one optimiser per model.
* **The same data and the same start.** Model (T, seed) draws its training batches from its own
  generator seeded with ``seed`` (the batches of ``palindrome_stream(T, batch_size, seed)``), is
  evaluated on the first ``eval_batches`` batches of the stream seeded ``seed +
  HELD_OUT_SEED_OFFSET``, and starts from the weights of ``MODELS[kind](...)`` made right after
  ``seed_everything(seed)``: the same as ``solutions.part1.train.train``.

* **Worker processes on a small CPU.** ``--workers 2`` deals the models out to two processes of one
  thread each, with equal work (``balanced_shards``), and merges their results. In short runs on
  the 2-core CPU this trained 8-16% faster than one process of two threads: the products of one
  time step are too small to keep two threads busy between the gate arithmetic, and batch
  generation and evaluation are split as well.

``tests/project/test_part1_sweep.py`` checks in float64 that losses, clipped gradients and weights
equal those of separately trained reference models, and that a killed sweep resumes to the same
result. Results go to ``<out>/<model>.json`` (every curve, every setting, versions, wall time,
device), written atomically at every checkpoint and at the end; ``<out>/<model>.ckpt.pt`` holds the
checkpoint from which a rerun of the same command resumes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from tqdm.auto import tqdm

from solutions.common import atomic_torch_save, atomic_write_bytes, provenance, resolve_device, seed_everything
from solutions.part1.models import MODELS
from solutions.part1.palindrome import NUM_CLASSES, palindrome_batch
from solutions.part1.train import HELD_OUT_SEED_OFFSET
from solutions.part1.sweep import parse_lengths  # the same rule as the students' command

GATES = {"rnn": ("h",), "lstm": ("g", "i", "f", "o")}  # gate order of the stacked weights


def workspace_buffers(workspace: dict | None, owner, shapes: list[tuple[int, ...]],
                      like: torch.Tensor) -> list[torch.Tensor]:
    """Uninitialised tensors of these shapes (dtype and device of ``like``) for ``owner``, an autograd node.

    A fresh allocation of tens of MB costs the CPU a page fault per 4 kB at first touch, at every
    step; so the buffers are kept in ``workspace`` (a dict) and handed out again once their last
    owner is gone (its graph freed after backward, or never kept under no_grad). While it lives, and
    with ``workspace=None``, new tensors are allocated.
    """
    key = (tuple(shapes), like.dtype, like.device)
    if workspace is None or (workspace.get("owner") is not None and workspace["owner"]() is not None):
        return [like.new_empty(shape) for shape in shapes]
    if workspace.get("key") != key:
        workspace.update(key=key, buffers=[like.new_empty(shape) for shape in shapes])
    workspace["owner"] = weakref.ref(owner)
    return workspace["buffers"]


class StackedRecurrence(torch.autograd.Function):
    """The recurrence of M stacked RNNs or LSTMs over the active prefix, with backpropagation through time by hand.

    ``StackedRecurrence.apply(x, W_x, W_h, b, active, lstm, workspace)``: x [M, B, T_max, d] (left-padded),
    ``W_x`` [M, G*H, d], ``W_h`` [M, G*H, H], ``b`` [M, G*H], ``active[t]`` the number of models running
    at step t (a prefix of the model dimension, see ``StackedModels``), ``lstm`` True for the LSTM's
    gates (g, i, f, o), False for the RNN's tanh, ``workspace`` a dict for ``workspace_buffers`` (or
    None) -> the last hidden state h_T [M, B, H]. The same numbers as the autograd loop of
    ``StackedModels.forward(x, fused=False)``, in less time:

    * **One product per step and direction.** The state, the input and a 1 are stacked as
      z_t = [h_{t-1}, x_t, 1] [k, B, H + d + 1] (k = ``active[t]``) and the weights as
      W^T = [W_h, W_x, b]^T [M, H + d + 1, G*H], so the pre-activations a_t = z_t W^T [k, B, G*H] are
      one ``bmm`` (recurrent product, input product and bias at once), and the backward pass adds
      z_t^T da_t to dW^T with one more. The models that start at step t have h_{t-1} = 0: for them
      only the last d + 1 columns of z_t take part (a second, small product), so no time goes into
      products with zeros, forward or backward.
    * **tanh as a sigmoid.** tanh(a) = 2 sigmoid(2a) - 1 is the same function, and on a CPU
      ``torch.sigmoid`` is several times faster than ``torch.tanh`` (which is slower still on a
      strided view). So the rows of W of the RNN's state and of the LSTM's g gate are doubled, one
      ``sigmoid_`` covers all gates of a step, and g or h is 2 s - 1 (one ``torch.add`` with
      ``alpha=2``); tanh c_t is 2 sigmoid(2 c_t) - 1 likewise. In float32 this differs from
      ``torch.tanh`` by at most a few units in the last place of 1 (``tests/project/test_part1_sweep.py``
      bounds it), well below the rounding differences between batched and separate matrix products.
    * **No autograd graph.** The forward pass keeps in buffers, allocated once for all steps, what
      the backward pass needs (z_t, which holds h_{t-1}; the LSTM's g, sigmoids i, f, o, c_t and
      tanh c_t) and the backward pass runs through time once, in buffers reused at every step::

          RNN:   da = dh (1 - h²)
          LSTM:  dc = dh o (1 - tanh² c) + dc_next          (dc_next = f_{t+1} dc_{t+1}, 0 at T)
                 da_g = dc i (1 - g²),  da_i = dc g i (1 - i),  da_f = dc c_{t-1} f (1 - f),
                 da_o = dh tanh(c) o (1 - o)
          both:  dh_{t-1} = da_t W_h (rows of the models already running at t - 1),  dW^T += z_t^T da_t

    ``tests/project/test_part1_sweep.py`` checks it with ``torch.autograd.gradcheck`` in float64 and
    against separately trained reference models.
    """

    @staticmethod
    def forward(ctx, x, W_x, W_h, b, active, lstm, workspace=None):
        _, batch, t_max, d = x.shape
        gh, hid = W_h.shape[1:]
        W_T = torch.cat([W_h.transpose(1, 2), W_x.transpose(1, 2), b.unsqueeze(1)], 1)  # [M, H + d + 1, G*H]
        W_T[..., :hid] *= 2  # the RNN's, or the LSTM's g gate's, pre-activation doubled: tanh(a) = 2 sigmoid(2a) - 1
        minus_one = x.new_tensor(-1.0)  # 2 s - 1 = torch.add(minus_one, s, alpha=2), one pass
        # every z_t (h_{t-1}, x_t, 1); the LSTM's gates (g, sigmoids i, f, o), c_t and tanh c_t of every step, or
        # the RNN's pre-activations of one step; then one step's worth of scratch for the backward pass. Step t
        # has k = active[t] rows, one per running model, after those of the steps before it.
        rows, m = sum(active), len(x)
        shapes = [(rows, batch, hid + d + 1), (rows, batch, gh), (rows, batch, hid), (rows, batch, hid)] if lstm else \
            [(rows, batch, hid + d + 1), (m, batch, gh)]
        scratch = [(m, batch, gh), (m, batch, hid), (m, batch, hid)] + [(m, batch, hid)] * 3 * lstm
        buffers = workspace_buffers(workspace, ctx, shapes + scratch, x)
        (Z, S, *cell), ctx.scratch = buffers[:len(shapes)], buffers[len(shapes):]
        # what does not depend on the state, for all steps at once: the inputs x_t and the 1s
        model_of_row = torch.cat([torch.arange(k) for k in active])
        step_of_row = torch.cat([torch.full((k,), t) for t, k in enumerate(active)])
        Z[..., hid:hid + d] = x[model_of_row, :, step_of_row]
        Z[..., -1] = 1
        steps = Z.split(active), S.split(active) if lstm else [S[:k] for k in active], \
            *(buffer.split(active) for buffer in cell)  # each buffer's rows of step t
        k_prev = 0
        for t, k in enumerate(active):
            z, s, *cell_t = (step[t] for step in steps)
            if k_prev:  # the models already running: state, input and bias in one product
                torch.bmm(z[:k_prev], W_T[:k_prev], out=s[:k_prev])
            if k > k_prev:  # the models that start now have h_{t-1} = 0: input and bias only
                torch.bmm(z[k_prev:, :, hid:], W_T[k_prev:k, hid:], out=s[k_prev:])
            s.sigmoid_()
            h = steps[0][t + 1][:k, :, :hid] if t + 1 < t_max else x.new_empty(k, batch, hid)
            if lstm:
                g, i, f, o = s.split(hid, -1)
                torch.add(minus_one, g, alpha=2, out=g)
                c = torch.mul(g, i, out=cell_t[0])
                if k_prev:
                    c[:k_prev].addcmul_(c_prev, f[:k_prev])
                tc = torch.mul(c, 2, out=cell_t[1]).sigmoid_()
                torch.mul(torch.add(minus_one, tc, alpha=2, out=tc), o, out=h)
                c_prev = c
            else:
                torch.add(minus_one, s, alpha=2, out=h)
            k_prev = k
        ctx.active, ctx.lstm, ctx.steps = active, lstm, steps
        ctx.save_for_backward(W_h, Z, S, h, *cell)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        W_h, Z, S, h_last, *cell = ctx.saved_tensors
        active, lstm, steps = ctx.active, ctx.lstm, ctx.steps
        (m, gh, hid), batch, t_max = W_h.shape, Z.shape[1], len(active)
        dW_T = Z.new_zeros(m, Z.shape[2], gh)  # [M, H + d + 1, G*H], the gradient of [W_h, W_x, b]^T
        da_all, *dh_all = ctx.scratch[:3]  # (dh_all: two buffers for dh_t, used in turns)
        if lstm:
            dc_all, dc_next_all, tmp_all = ctx.scratch[3:]
            dsig_all = da_all[..., hid:]  # (di, df, do): da of the sigmoid gates, before times s (1 - s)
        dh, dc_next = dh.contiguous(), None
        for t in range(t_max - 1, -1, -1):
            k, k_prev = active[t], active[t - 1] if t else 0
            z, s, *cell_t = (step[t] for step in steps)
            da = da_all[:k]
            if lstm:
                tc = cell_t[1]
                g, i, f, o = s.split(hid, -1)
                dsig = dsig_all[:k]  # (di, df, do), then times sigmoid' = s (1 - s)
                do = torch.mul(dh, tc, out=dsig[..., 2 * hid:])
                tmp = torch.addcmul(dh, do, tc, value=-1, out=tmp_all[:k])  # dh (1 - tanh² c)
                if dc_next is None:
                    dc = torch.mul(tmp, o, out=dc_all[:k])
                else:
                    dc = torch.addcmul(dc_next, tmp, o, out=dc_all[:k])
                dg = torch.mul(dc, i, out=tmp)  # da_g = dg (1 - g²)
                torch.addcmul(dg, torch.mul(dg, g, out=da[..., :hid]), g, value=-1, out=da[..., :hid])
                torch.mul(dc, g, out=dsig[..., :hid])
                dsig[k_prev:, :, hid:2 * hid] = 0
                if k_prev:
                    torch.mul(dc[:k_prev], steps[2][t - 1], out=dsig[:k_prev, :, hid:2 * hid])
                    dc_next = torch.mul(dc[:k_prev], f[:k_prev], out=dc_next_all[:k_prev])
                dsig.mul_(s[..., hid:])
                dsig.addcmul_(dsig, s[..., hid:], value=-1)
            else:
                h = steps[0][t + 1][:k, :, :hid] if t + 1 < t_max else h_last
                torch.addcmul(dh, dh, torch.mul(h, h, out=da), value=-1, out=da)
            if k_prev:
                dW_T[:k_prev].baddbmm_(z[:k_prev].transpose(1, 2), da[:k_prev])
                dh = torch.bmm(da[:k_prev], W_h[:k_prev], out=dh_all[t % 2][:k_prev])
            if k > k_prev:  # h_{t-1} = 0: no gradient for W_h from this step, none needed for h_{t-1}
                dW_T[k_prev:k, hid:].baddbmm_(z[k_prev:, :, hid:].transpose(1, 2), da[k_prev:])
        dW = dW_T.transpose(1, 2)  # (autograd copies each gradient into its parameter's layout)
        return None, dW[..., hid:-1], dW[..., :hid], dW[..., -1], None, None, None


class StackedModels(nn.Module):
    """M independent VanillaRNNs or LSTMs, weights stacked on a leading model dimension.

    With G gates (1 for the RNN, 4 for the LSTM), H hidden units, d inputs and K classes:
    ``W_x`` [M, G*H, d], ``W_h`` [M, G*H, H], ``b`` [M, G*H], ``W_ph`` [M, K, H], ``b_p`` [M, K].
    ``lengths`` [M] are the models' input lengths, longest first.
    """

    def __init__(self, kind: str, lengths: list[int], input_dim: int = 1, num_hidden: int = 128,
                 num_classes: int = NUM_CLASSES, dtype: torch.dtype = torch.float32):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"kind must be one of {sorted(GATES)}, got {kind!r}")
        lengths = [int(t) for t in lengths]
        if not lengths or min(lengths) < 1:
            raise ValueError(f"lengths must be a non-empty list of positive input lengths, got {lengths}")
        if lengths != sorted(lengths, reverse=True):
            raise ValueError(f"lengths must be ordered longest first (the active models form a prefix), got {lengths}")
        self.kind, self.lengths = kind, lengths
        self.input_dim, self.num_hidden, self.num_classes = input_dim, num_hidden, num_classes
        m, gh = len(lengths), len(GATES[kind]) * num_hidden
        # W_x and W_h are stored transposed ([M, d, G*H], [M, H, G*H] in memory), as StackedRecurrence uses them
        self.W_x = nn.Parameter(torch.zeros(m, input_dim, gh, dtype=dtype).transpose(1, 2))
        self.W_h = nn.Parameter(torch.zeros(m, num_hidden, gh, dtype=dtype).transpose(1, 2))
        self.b = nn.Parameter(torch.zeros(m, gh, dtype=dtype))
        self.W_ph = nn.Parameter(torch.zeros(m, num_classes, num_hidden, dtype=dtype))
        self.b_p = nn.Parameter(torch.zeros(m, num_classes, dtype=dtype))
        t_max = lengths[0]
        # active[t]: how many models have started at step t (0-based) of the T_max steps
        self.active = [sum(length >= t_max - t for length in lengths) for t in range(t_max)]
        self._workspace = {}  # StackedRecurrence's buffers, reused from step to step

    # --- the map between the stacked tensors and the reference models' parameters ---------------
    def _slices(self) -> dict[str, tuple[str, slice]]:
        """Reference parameter name -> (stacked tensor, slice of its second dimension)."""
        h, names = self.num_hidden, {}
        if self.kind == "rnn":
            names = {"W_hx": ("W_x", slice(0, h)), "W_hh": ("W_h", slice(0, h)), "b_h": ("b", slice(0, h))}
        else:
            for j, z in enumerate(GATES["lstm"]):
                part = slice(j * h, (j + 1) * h)
                names.update({f"W_{z}x": ("W_x", part), f"W_{z}h": ("W_h", part), f"b_{z}": ("b", part)})
        return {**names, "W_ph": ("W_ph", slice(None)), "b_p": ("b_p", slice(None))}

    def reference_tensors(self, m: int, grad: bool = False) -> dict[str, torch.Tensor]:
        """Model m's parameters (or, with ``grad=True``, their gradients) under the reference names."""
        out = {}
        for name, (stacked, part) in self._slices().items():
            tensor = getattr(self, stacked)
            tensor = tensor.grad if grad else tensor.detach()
            out[name] = tensor[m, part].clone()
        return out

    @torch.no_grad()
    def load_reference(self, m: int, model: nn.Module) -> None:
        """Copy a reference model's parameters (``VanillaRNN`` or ``LSTM``) into slot m."""
        params = dict(model.named_parameters())
        if set(params) != set(self._slices()):
            raise ValueError(f"a {self.kind} needs parameters {sorted(self._slices())}, got {sorted(params)}")
        for name, (stacked, part) in self._slices().items():
            getattr(self, stacked)[m, part] = params[name].detach().to(getattr(self, stacked).dtype)

    # --- the forward pass ---------------------------------------------------------------------
    def cell(self, pre: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gate pre-activations [k, B, G*H] (and the LSTM's cell state [k, B, H]) -> new (h, c)."""
        if self.kind == "rnn":
            return torch.tanh(pre), None
        h = self.num_hidden
        g = torch.tanh(pre[..., :h])
        i, f, o = torch.sigmoid(pre[..., h:]).chunk(3, dim=-1)
        c = g * i + c * f
        return torch.tanh(c) * o, c

    def forward(self, x: torch.Tensor, skip_padding: bool = True, fused: bool = True) -> torch.Tensor:
        """x [M, B, T_max, d] (left-padded, see ``left_pad``) -> logits [M, B, K] of each model.

        ``fused=True`` (with ``skip_padding``) runs the recurrence as one ``StackedRecurrence`` with its
        hand-written backward pass; ``fused=False`` is the same computation step by step under autograd.
        """
        m, batch, t_max = x.shape[:3]
        if m != len(self.lengths) or t_max != self.lengths[0] or x.shape[3] != self.input_dim:
            raise ValueError(f"expected input [M={len(self.lengths)}, B, T_max={self.lengths[0]}, "
                             f"d={self.input_dim}], got {list(x.shape)}")
        if skip_padding and fused:
            h = StackedRecurrence.apply(x, self.W_x, self.W_h, self.b, self.active, self.kind == "lstm",
                                        self._workspace)
            return torch.baddbmm(self.b_p.unsqueeze(1), h, self.W_ph.transpose(1, 2))
        W_xT, W_hT = self.W_x.transpose(1, 2), self.W_h.transpose(1, 2)
        b = self.b.unsqueeze(1)
        zeros = x.new_zeros(m, batch, self.num_hidden)
        k = m if not skip_padding else self.active[0]
        h = zeros[:k]
        c = zeros[:k] if self.kind == "lstm" else None
        for t in range(t_max):
            if skip_padding and self.active[t] > k:  # shorter models start: their zero state joins
                new, k = self.active[t] - k, self.active[t]
                h = torch.cat([h, zeros[:new]])
                c = torch.cat([c, zeros[:new]]) if c is not None else None
            pre = torch.baddbmm(torch.baddbmm(b[:k], x[:k, :, t], W_xT[:k]), h, W_hT[:k])
            h_new, c_new = self.cell(pre, c)
            if skip_padding:
                h, c = h_new, c_new
            else:  # the masked update: models whose sequence has not started keep their zero state
                mask = x.new_tensor([float(length >= t_max - t) for length in self.lengths]).view(m, 1, 1)
                h = mask * h_new + (1 - mask) * h
                c = mask * c_new + (1 - mask) * c if c is not None else None
        return torch.baddbmm(self.b_p.unsqueeze(1), h, self.W_ph.transpose(1, 2))


def left_pad(batches: list[torch.Tensor], t_max: int, input_dim: int = 1) -> torch.Tensor:
    """Inputs [B, T_m] (or [B, T_m, d]) of M models -> one tensor [M, B, T_max, d], zeros in front."""
    first = batches[0]
    out = first.new_zeros(len(batches), first.shape[0], t_max, input_dim)
    for m, x in enumerate(batches):
        out[m, :, t_max - x.shape[1]:] = x.reshape(x.shape[0], x.shape[1], input_dim)
    return out


def per_model_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [M, B, K], targets [M, B] -> (mean cross-entropy [M], accuracy [M]) of each model."""
    m, batch, k = logits.shape
    losses = F.cross_entropy(logits.reshape(m * batch, k), y.reshape(m * batch), reduction="none").view(m, batch)
    return losses.mean(1), (logits.argmax(-1) == y).to(logits.dtype).mean(1)


@torch.no_grad()
def clip_per_model_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each model's gradient (slice m of every stacked parameter) as clip_grad_norm_ would.

    Returns the norms [M] before clipping.
    """
    grads = [p.grad for p in params]
    norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) for g in grads]).norm(dim=0)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
    return norms


class BatchedTrainer:
    """One training step of all stacked models: forward, per-model losses, backward, clip, RMSprop."""

    def __init__(self, stack: StackedModels, learning_rate: float = 1e-3, max_norm: float = 10.0,
                 skip_padding: bool = True, fused: bool | None = None, compile: bool = False):
        """``fused`` (default: unless ``compile``) uses ``StackedRecurrence`` when skipping padding;
        ``compile`` compiles the autograd path."""
        fused = not compile if fused is None else fused
        if fused and compile:
            raise ValueError("compile applies to the autograd path: use fused=False with compile=True")
        self.stack, self.max_norm, self.skip_padding = stack, max_norm, skip_padding
        self.optimizer = torch.optim.RMSprop(stack.parameters(), lr=learning_rate)
        self.grad_norms = None  # each model's gradient norm before clipping, at the last step
        forward = lambda x: stack(x, skip_padding=skip_padding, fused=fused)  # noqa: E731
        self.forward = torch.compile(forward, dynamic=False) if compile else forward

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [M, B, T_max, d], y [M, B] -> per-model training (loss, accuracy) [M] before the update."""
        self.stack.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses, accuracies = per_model_loss(self.forward(x), y)
        losses.sum().backward()  # model m's parameters only reach loss m
        self.grad_norms = clip_per_model_(list(self.stack.parameters()), self.max_norm)
        self.optimizer.step()
        return losses.detach(), accuracies

    @torch.no_grad()
    def evaluate(self, held_out: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean held-out (loss, accuracy) [M] over the batches, as ``solutions.part1.train.evaluate``."""
        self.stack.eval()
        results = [per_model_loss(self.forward(x), y) for x, y in held_out]
        return tuple(torch.stack(r).mean(0) for r in zip(*results))


# --- the sweep: data, checkpoints and results -------------------------------------------------------

def model_slots(input_lengths: list[int], seeds: list[int]) -> list[tuple[int, int]]:
    """The (input_length, seed) of each stacked model, longest first."""
    return [(t, s) for t in sorted(set(input_lengths), reverse=True) for s in sorted(set(seeds))]


def balanced_shards(slots: list[tuple[int, int]], workers: int) -> list[list[tuple[int, int]]]:
    """Deal the slots out to ``workers`` processes so that each has about the same work.

    A model's step costs about its input length T, so the longest model goes next to the worker with
    the least work so far (longest processing time first). Each shard stays longest first.
    >>> balanced_shards(model_slots([5, 6, 7, 8], [0]), 2)
    [[(8, 0), (5, 0)], [(7, 0), (6, 0)]]
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= len(slots):
        raise ValueError(f"workers must be an integer from 1 to the number of models ({len(slots)}), got {workers!r}")
    shards, work = [[] for _ in range(workers)], [0] * workers
    for slot in sorted(slots, key=lambda slot: -slot[0]):  # stable: seeds stay in order
        i = work.index(min(work))
        shards[i].append(slot)
        work[i] += slot[0]
    return shards


def initial_models(kind: str, slots: list[tuple[int, int]], input_dim: int, num_hidden: int,
                   dtype: torch.dtype = torch.float32) -> StackedModels:
    """A stack whose model (T, seed) starts from MODELS[kind](...) made just after seed_everything(seed)."""
    stack = StackedModels(kind, [t for t, _ in slots], input_dim, num_hidden, NUM_CLASSES, dtype)
    for m, (_, seed) in enumerate(slots):
        seed_everything(seed)
        stack.load_reference(m, MODELS[kind](input_dim=input_dim, num_hidden=num_hidden, num_classes=NUM_CLASSES))
    return stack


def batch_of_all(slots, generators, batch_size, one_hot, dtype, device):
    """The next training batch of every model: x [M, B, T_max, d], y [M, B]."""
    input_dim = NUM_CLASSES if one_hot else 1
    xs, ys = zip(*(palindrome_batch(batch_size, t, g, one_hot) for (t, _), g in zip(slots, generators)))
    return left_pad(list(xs), slots[0][0], input_dim).to(device, dtype), torch.stack(ys).to(device)


def held_out_batches(slots, batch_size, eval_batches, one_hot, dtype, device):
    """The held-out batches of every model: the first batches of its stream seeded seed + offset."""
    generators = [torch.Generator().manual_seed(s + HELD_OUT_SEED_OFFSET) for _, s in slots]
    return [batch_of_all(slots, generators, batch_size, one_hot, dtype, device) for _ in range(eval_batches)]


def write_results(path: Path, record: dict) -> None:
    """The result JSON, one run per line (compact curves, readable diffs), written atomically."""
    head = json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=1)[:-2]
    runs = ",\n".join("  " + json.dumps(run, separators=(",", ":")) for run in record["runs"])
    atomic_write_bytes(path, f'{head},\n "runs": [\n{runs}\n ]\n}}\n'.encode("utf-8"))


def shard_stem(model: str, i: int, workers: int) -> str:
    """The file stem of shard i (from 0) of a sweep split over ``workers`` processes: rnn.shard1of2."""
    return f"{model}.shard{i + 1}of{workers}"


def sweep(model: str = "rnn", input_lengths: list[int] = tuple(range(5, 21)), seeds: list[int] = (0,),
          num_hidden: int = 128, batch_size: int = 128, learning_rate: float = 1e-3, train_steps: int = 10_000,
          max_norm: float = 10.0, one_hot: bool = False, eval_every: int = 100, eval_batches: int = 4,
          checkpoint_every: int = 500, device: str = "auto", compile: bool = False, out: str | Path = "data/part1/sweep",
          workers: int = 1, progress: bool = True, stop_after: int | None = None,
          shard: tuple[int, int] | None = None) -> dict:
    """Train every (input_length, seed) of one model kind at once; write and return the result record.

    Resumes from ``<out>/<model>.ckpt.pt`` when it exists and was made with the same settings; returns
    the finished result of the same settings without training again; refuses to overwrite a result of
    other settings.
    ``workers`` > 1 deals the models out to that many processes (``balanced_shards``), each with
    torch.get_num_threads() // workers threads, and merges their results: on a small CPU two
    one-thread processes run faster than one process with two threads. Each process checkpoints
    its shard (``<out>/<model>.shard<i>of<workers>.*``) and resumes it; ``shard=(i, workers)`` is
    how the parent asks a process for its shard.
    ``stop_after`` ends the run after that step as an interruption would (for tests).
    """
    arguments = dict(locals())  # what each worker process is called with
    started = time.perf_counter()
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    for name, value in (("train_steps", train_steps), ("eval_every", eval_every), ("eval_batches", eval_batches),
                        ("checkpoint_every", checkpoint_every), ("batch_size", batch_size), ("num_hidden", num_hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    input_lengths, seeds = sorted(set(input_lengths)), sorted(set(seeds))
    settings = {"model": model, "input_lengths": input_lengths, "seeds": seeds, "num_hidden": num_hidden,
                "batch_size": batch_size, "learning_rate": learning_rate, "train_steps": train_steps,
                "max_norm": max_norm, "one_hot": one_hot, "eval_every": eval_every, "eval_batches": eval_batches,
                "optimizer": "RMSprop (torch defaults: alpha 0.99, eps 1e-8)", "dtype": "float32"}
    out = Path(out)
    dev = resolve_device(device)
    slots = model_slots(input_lengths, seeds)
    balanced_shards(slots, workers)  # checks workers
    if workers > 1 and dev.type != "cpu":
        raise ValueError(f"workers split the models over CPU processes; on {dev} use workers=1")
    stem = model
    if shard is not None:
        slots = balanced_shards(slots, shard[1])[shard[0]]
        stem = shard_stem(model, *shard)
        settings = {**settings, "shard": [shard[0] + 1, shard[1]], "slots": [list(slot) for slot in slots]}
    result_path, ckpt_path = out / f"{stem}.json", out / f"{stem}.ckpt.pt"
    if result_path.exists() and not ckpt_path.exists():  # never overwrite finished results of other settings
        done = json.loads(result_path.read_text())
        if done.get("settings") != settings:
            raise ValueError(f"{result_path} holds results of other settings ({done.get('settings')}); "
                             f"delete it or use another --out")
        if done.get("complete"):
            return done
    if shard is None:  # a checkpoint made with another number of workers would be silently left behind
        mine = {f"{shard_stem(model, i, workers)}.ckpt.pt" for i in range(workers)} if workers > 1 else {ckpt_path.name}
        for other in sorted({*out.glob(f"{model}.ckpt.pt"), *out.glob(f"{model}.shard*of*.ckpt.pt")}):
            if other.name not in mine:
                n = other.name.split("of")[-1].split(".")[0] if ".shard" in other.name else "1"
                raise ValueError(f"{other} is the checkpoint of this run with {n} worker(s); resume it with "
                                 f"--workers {n}, or delete it")
    if workers > 1:
        return sweep_in_workers(settings, workers, {**arguments, "workers": 1})

    input_dim = NUM_CLASSES if one_hot else 1
    stack = initial_models(model, slots, input_dim, num_hidden).to(dev)
    trainer = BatchedTrainer(stack, learning_rate, max_norm, compile=compile)
    generators = [torch.Generator().manual_seed(s) for _, s in slots]
    held_out = held_out_batches(slots, batch_size, eval_batches, one_hot, torch.float32, dev)
    curves = {key: [] for key in ("step", "train_loss", "train_accuracy", "eval_loss", "eval_accuracy")}
    step, elapsed_before, sessions = 0, 0.0, 1
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # generator states stay on the CPU
        if ckpt["settings"] != settings:
            raise ValueError(f"{ckpt_path} was made with other settings ({ckpt['settings']}); "
                             f"delete it or use another --out")
        stack.load_state_dict(ckpt["stack"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        for g, state in zip(generators, ckpt["generators"]):
            g.set_state(state)
        curves, step = ckpt["curves"], ckpt["step"]
        elapsed_before, sessions = ckpt["elapsed_s"], ckpt["sessions"] + 1

    def record(complete: bool) -> dict:
        rec = {**provenance(settings), "device": str(dev), "compile": compile, "complete": complete,
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None,
               "steps_done": step, "wall_time_s": round(elapsed_before + time.perf_counter() - started, 1),
               "sessions": sessions, "workers": 1, "eval_steps": curves["step"], "runs": []}
        for m, (t, s) in enumerate(slots):
            curve = {k: [round(v[m], 4) for v in curves[k]] for k in curves if k != "step"}
            acc = curve["eval_accuracy"] or [None]
            rec["runs"].append({"model": model, "input_length": t, "palindrome_length": t + 1, "seed": s,
                                "final_eval_accuracy": acc[-1], "best_eval_accuracy": max(acc, key=lambda a: a or 0),
                                "curve": curve})
        rec["runs"].sort(key=lambda r: (r["input_length"], r["seed"]))
        return rec

    def checkpoint() -> None:
        atomic_torch_save(ckpt_path, {
            "settings": settings, "step": step, "stack": stack.state_dict(),
            "optimizer": trainer.optimizer.state_dict(), "generators": [g.get_state() for g in generators],
            "curves": curves, "elapsed_s": elapsed_before + time.perf_counter() - started, "sessions": sessions})
        write_results(result_path, record(complete=False))

    label = f"{model} x{len(slots)}" + ("" if shard is None else f" [{shard[0] + 1}/{shard[1]}]")
    bar = tqdm(range(step + 1, train_steps + 1), initial=step, total=train_steps, disable=not progress,
               desc=label, mininterval=2, position=0 if shard is None else shard[0])
    for step in bar:
        x, y = batch_of_all(slots, generators, batch_size, one_hot, torch.float32, dev)
        loss, acc = trainer.step(x, y)
        if step % eval_every == 0 or step == train_steps:
            eval_loss, eval_acc = trainer.evaluate(held_out)
            for key, value in zip(curves, (step, loss, acc, eval_loss, eval_acc)):
                curves[key].append(value if key == "step" else value.tolist())
            bar.set_postfix(mean_held_out_acc=f"{eval_acc.mean().item():.3f}")
        if step % checkpoint_every == 0 and step < train_steps:
            checkpoint()
        if stop_after is not None and step >= stop_after:
            bar.close()
            return record(complete=False)
    final = record(complete=True)
    write_results(result_path, final)
    ckpt_path.unlink(missing_ok=True)
    return final


def sweep_in_workers(settings: dict, workers: int, options: dict) -> dict:
    """Run ``sweep(**options)`` as ``workers`` processes, one shard each, and merge their records.

    The merged record is the one a single process would write (the same settings, every run), plus
    the shards' slots and times. Its wall time is the longest shard's (over all sessions, as a single
    process counts it); ``launch_wall_time_s`` adds the start of the processes, for this session
    only. Shard files are removed once merged.
    """
    started = time.perf_counter()
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # fork would copy this process's thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(sweep, **{**options, "shard": (i, workers)}) for i in range(workers)]
        shards = [future.result() for future in futures]
    complete = all(rec["complete"] for rec in shards)
    merged = {**provenance(settings), **{k: shards[0][k] for k in ("device", "compile", "tf32_matmul")},
              "complete": complete, "steps_done": min(rec["steps_done"] for rec in shards),
              "wall_time_s": max(rec["wall_time_s"] for rec in shards),
              "launch_wall_time_s": round(time.perf_counter() - started, 1),
              "sessions": max(rec["sessions"] for rec in shards), "workers": workers, "threads_per_worker": threads,
              "shards": [{k: rec[k] for k in ("wall_time_s", "sessions")} | {"slots": rec["settings"]["slots"]}
                         for rec in shards],
              "eval_steps": shards[0]["eval_steps"],
              "runs": sorted((run for rec in shards for run in rec["runs"]),
                             key=lambda r: (r["input_length"], r["seed"]))}
    merged["machine"]["torch_threads"] = threads
    if complete:
        out, model = Path(options["out"]), options["model"]
        write_results(out / f"{model}.json", merged)
        for i in range(workers):
            (out / f"{shard_stem(model, i, workers)}.json").unlink(missing_ok=True)
    return merged


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["rnn", "lstm"])
    p.add_argument("--input-lengths", nargs="+", default=["5-20"],
                   help="input lengths T (digits seen; palindromes have T + 1): a range 5-20 or a list")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=10_000, dest="train_steps")
    p.add_argument("--num-hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--max-norm", type=float, default=10.0)
    p.add_argument("--one-hot", action="store_true")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the autograd version of the forward pass instead of the default hand-written "
                        "recurrence (CPU: minutes to compile)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's); with --workers, shared out among the workers")
    p.add_argument("--workers", type=int, default=1,
                   help="CPU processes that each train a share of the models (2 is fastest on a 2-core CPU)")
    p.add_argument("--out", type=Path, default=Path("data/part1/sweep"))
    args = vars(p.parse_args(argv))
    threads = args.pop("threads")
    if threads is not None:
        torch.set_num_threads(threads)
    models, lengths = args.pop("models"), parse_lengths(args.pop("input_lengths"))
    records = []
    for model in models:
        rec = sweep(model=model, input_lengths=lengths, **args)
        records.append(rec)
        accs = {}
        for run in rec["runs"]:
            accs.setdefault(run["input_length"], []).append(run["final_eval_accuracy"])
        print(f"{model}: {rec['wall_time_s']} s on {rec['device']}; mean final held-out accuracy by input length: "
              + " ".join(f"{t}:{sum(a) / len(a):.2f}" for t, a in sorted(accs.items())), flush=True)
    return records


if __name__ == "__main__":
    main()
