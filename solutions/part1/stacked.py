"""The batched engine of Part 1's sweep: M RNNs or LSTMs of different input lengths trained as one.

Each stacked model is exactly the model that a separate ``solutions.part1.train.train`` run would
train (``tests/project/test_part1_sweep.py`` checks it in float64, step by step):

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

The sweep command that uses it is ``experiments/part1_sweep.py``. This module is the instructor's:
``tools.make_assignment`` leaves it out of the student package (it holds the LSTM's equations).
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ..common import seed_everything
from .models import MODELS
from .palindrome import NUM_CLASSES, palindrome_batch
from .train import HELD_OUT_SEED_OFFSET, Settings

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

    def __init__(self, kind: str, lengths: list[int], input_dim: int, num_hidden: int,
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
            return torch.baddbmm(self.b_p.unsqueeze(1), h, self.W_ph.transpose(1, 2))  # [M, B, K]
        W_xT, W_hT = self.W_x.transpose(1, 2), self.W_h.transpose(1, 2)  # [M, d, G*H], [M, H, G*H]
        b = self.b.unsqueeze(1)  # [M, 1, G*H]
        zeros = x.new_zeros(m, batch, self.num_hidden)  # [M, B, H]
        k = m if not skip_padding else self.active[0]
        h = zeros[:k]
        c = zeros[:k] if self.kind == "lstm" else None
        for t in range(t_max):
            if skip_padding and self.active[t] > k:  # shorter models start: their zero state joins
                new, k = self.active[t] - k, self.active[t]
                h = torch.cat([h, zeros[:new]])  # [k, B, H]
                c = torch.cat([c, zeros[:new]]) if c is not None else None
            pre = torch.baddbmm(torch.baddbmm(b[:k], x[:k, :, t], W_xT[:k]), h, W_hT[:k])  # [k, B, G*H]
            h_new, c_new = self.cell(pre, c)
            if skip_padding:
                h, c = h_new, c_new
            else:  # the masked update: models whose sequence has not started keep their zero state
                mask = x.new_tensor([float(length >= t_max - t) for length in self.lengths]).view(m, 1, 1)
                h = mask * h_new + (1 - mask) * h
                c = mask * c_new + (1 - mask) * c if c is not None else None
        return torch.baddbmm(self.b_p.unsqueeze(1), h, self.W_ph.transpose(1, 2))  # [M, B, K]


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
    losses = F.cross_entropy(logits.reshape(m * batch, k), y.reshape(m * batch), reduction="none")  # [M*B]
    losses = losses.view(m, batch)  # [M, B]
    return losses.mean(1), (logits.argmax(-1) == y).to(logits.dtype).mean(1)


@torch.no_grad()
def clip_per_model_(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each model's gradient (slice m of every stacked parameter) as clip_grad_norm_ would.

    Returns the norms [M] before clipping.
    """
    grads = [p.grad for p in params]
    norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) for g in grads]).norm(dim=0)  # [M]
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # [M]
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
    return norms


class BatchedTrainer:
    """One training step of all stacked models: forward, per-model losses, backward, clip, RMSprop."""

    def __init__(self, stack: StackedModels, learning_rate: float = Settings.learning_rate,
                 max_norm: float = Settings.max_norm,
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


# --- the data and the start of the stacked models -------------------------------------------------

def model_slots(input_lengths: list[int], seeds: list[int]) -> list[tuple[int, int]]:
    """The (input_length, seed) of each stacked model, longest first."""
    return [(t, s) for t in sorted(set(input_lengths), reverse=True) for s in sorted(set(seeds))]


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
