"""Graded tests of Part 2, the LSTM as a generative model (35 points + 8 bonus; 20 graded here).

The 2019 material gives Part 2 35 points and the bonus 8 without a split; this course splits the
35 as 2.1 (a) 15, (b) 10, (c) 10.

| question | here | by hand |
|---|---|---|
| 2.1 (a) model and training | 8: shapes, the forward pass against nn.LSTM on one-hot inputs, starting from a given state, the training step (loss, clipping, update) against an independent computation, learning a periodic text | 7: training on a book, the loss curve |
| 2.1 (b) greedy samples | 3: greedy = argmax, deterministic, generation = argmax decoding | 7: five samples at evenly spaced steps and how they change |
| 2.1 (c) temperature | 5: sampled frequencies follow softmax(logits / tau), a seeded generator repeats, negative temperature is an error | 5: the samples at 0.5, 1.0, 2.0 and the trade-off |
| 2.2 bonus | 4: generation carries (h, c) (never re-runs the text) and is batched, to any length | 4: finished sentences, punctuation, what the model cannot learn |

Each test is a check with its probes next to it (``grader/probes.py``): a probe (``@probe``) runs the
student's code on inputs the check chooses and returns plain data. The check chooses the weights
too: a state_dict with the names and shapes of the spec (``lstm.weight_ih_l0``, ...,
``output.weight``, ``output.bias``), which the probe loads (strictly) into the student's
``TextGenerationModel``. The check never imports student code; it compares with an independent
computation on the same weights: torch.nn.LSTM and F.cross_entropy, autograd, argmax decoding that
re-runs the whole text, and the exact softmax(logits / tau) (a chi-square test with a fixed seed).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grader.probes import probe

V, H, LAYERS, B, T = 7, 6, 2, 3, 9
GEN_H = 16  # generation tests: a wider model with large weights, whose greedy texts vary and depend on the past

# Upper 0.1% points of the chi-square distribution, by degrees of freedom (a fixed seed, so the
# test is deterministic; a correct sampler exceeds them with probability 0.001).
CHI2_999 = {4: 18.467, 5: 20.515, 6: 22.458}


# ---------------------------------------------------------------- inputs and references
# (the check's side: nothing here imports student code)


def make_weights(vocab=V, hidden=H, layers=LAYERS, seed=0, scale=1.0, dtype=torch.float64):
    """A state_dict of TextGenerationModel(vocab, hidden, layers): uniform(-scale, scale), seeded."""
    shapes = {}
    for k in range(layers):
        shapes[f"lstm.weight_ih_l{k}"] = (4 * hidden, vocab if k == 0 else hidden)
        shapes[f"lstm.weight_hh_l{k}"] = (4 * hidden, hidden)
        shapes[f"lstm.bias_ih_l{k}"] = (4 * hidden,)
        shapes[f"lstm.bias_hh_l{k}"] = (4 * hidden,)
    shapes["output.weight"] = (vocab, hidden)
    shapes["output.bias"] = (vocab,)
    g = torch.Generator().manual_seed(seed)
    return {name: ((2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1) * scale).to(dtype)
            for name, shape in shapes.items()}


def sizes(weights):
    """(vocab, hidden, layers) of a state_dict made by ``make_weights``."""
    vocab, hidden = weights["output.weight"].shape
    return vocab, hidden, sum(name.startswith("lstm.weight_ih_l") for name in weights)


def ids(batch=B, steps=T, vocab=V, seed=1):
    return torch.randint(vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


def reference_forward(weights, x, state=None):
    """What forward must compute: one-hot -> nn.LSTM -> output layer, in float64, from ``weights``
    (autograd reaches the tensors of ``weights``)."""
    vocab, hidden, layers = sizes(weights)
    lstm = torch.nn.LSTM(vocab, hidden, layers, batch_first=True).double()
    own = {name.removeprefix("lstm."): w.double() for name, w in weights.items() if name.startswith("lstm.")}
    out, state = torch.func.functional_call(lstm, own, (F.one_hot(x, vocab).double(), state))
    return out @ weights["output.weight"].double().T + weights["output.bias"].double(), state


def argmax_decoding(weights, prompt, length):
    """Greedy decoding that re-runs the whole text at every step (no state carried)."""
    seq = prompt.clone()
    with torch.no_grad():
        for _ in range(length):
            last = reference_forward(weights, seq)[0][:, -1]
            top2 = last.topk(2, dim=-1).values
            assert (top2[:, 0] - top2[:, 1]).min() > 1e-6, "test set-up: a near tie in the reference decoding"
            seq = torch.cat([seq, last.argmax(-1, keepdim=True)], dim=1)
    want = seq[:, prompt.shape[1]:]
    assert len({tuple(row.tolist()) for row in want}) == len(want), "test set-up: two rows decode alike"
    return want


# ---------------------------------------------------------------- probes' helpers (run with student code)


def build_model(load, weights):
    """The student's TextGenerationModel of the sizes of ``weights``, in their dtype, with ``weights`` loaded."""
    model = load("part2.model").TextGenerationModel(*sizes(weights)).to(weights["output.weight"].dtype)
    model.load_state_dict(weights)  # strict: the parameter names and shapes of the spec
    return model


# ---------------------------------------------------------------- 2.1 (a) the model


@probe
def model_facts(load, weights, x):
    """The shapes forward returns, and what ``model.lstm`` is."""
    model = build_model(load, weights)
    lstm = model.lstm
    with torch.no_grad():
        logits, (h, c) = model(x)
    return {"logits": list(logits.shape), "h": list(h.shape), "c": list(c.shape),
            "is_nn_LSTM": isinstance(lstm, torch.nn.LSTM), "num_layers": getattr(lstm, "num_layers", None),
            "hidden_size": getattr(lstm, "hidden_size", None), "batch_first": getattr(lstm, "batch_first", None)}


@pytest.mark.points(1, question="2.1 (a)")
def test_model_shapes(run):
    """TextGenerationModel: logits (B, T, V) and a state (h, c) of shape (layers, B, H)."""
    for vocab, hidden, layers in ((V, H, LAYERS), (5, 4, 3)):
        facts = run(model_facts, weights=make_weights(vocab, hidden, layers), x=ids(vocab=vocab))
        setting = f"TextGenerationModel({vocab}, hidden={hidden}, num_layers={layers}) on ids ({B}, {T})"
        assert facts["logits"] == [B, T, vocab], f"{setting}: logits of shape {facts['logits']}"
        assert facts["h"] == [layers, B, hidden] and facts["c"] == [layers, B, hidden], (
            f"{setting}: h of shape {facts['h']} and c of shape {facts['c']}, not (layers, B, H)")
        assert facts["is_nn_LSTM"], "model.lstm must be a torch.nn.LSTM"
        assert facts["num_layers"] == layers and facts["hidden_size"] == hidden, (
            f"{setting}: model.lstm has {facts['num_layers']} layers of {facts['hidden_size']} units")
        assert facts["batch_first"] is True, "model.lstm must take (B, T, V) inputs: batch_first=True"


@probe
def forward_pass(load, weights, x, state=None):
    """model(x, state) with the given weights: the logits and the final (h, c)."""
    model = build_model(load, weights)
    with torch.no_grad():
        logits, (h, c) = model(x, None if state is None else tuple(state))
    return {"logits": logits, "h": h, "c": c}


def assert_forward(got, want, what):
    logits, (h, c) = want
    for name, value, expected in (("logits", got["logits"], logits), ("h", got["h"], h), ("c", got["c"], c)):
        torch.testing.assert_close(value, expected, msg=lambda m: f"{what}: {name} differ from nn.LSTM's\n{m}")


@pytest.mark.points(2, question="2.1 (a)")
def test_forward_matches_lstm_on_one_hot(run):
    """forward = output layer of a two-layer nn.LSTM run on one-hot characters."""
    weights, x = make_weights(seed=0), ids()
    got = run(forward_pass, weights=weights, x=x)
    assert_forward(got, reference_forward(weights, x), "model(ids) from the zero state")


@pytest.mark.points(1, question="2.1 (a)")
def test_forward_starts_from_given_state(run):
    """forward(ids, state) starts from that state: two halves give the logits of the whole."""
    weights, x = make_weights(seed=1), ids()
    whole, final = reference_forward(weights, x)
    _, after_four = reference_forward(weights, x[:, :4])
    got = run(forward_pass, weights=weights, x=x[:, 4:], state=after_four)
    assert_forward(got, (whole[:, 4:], final), "model(ids[:, 4:], state after ids[:, :4])")
    g = torch.Generator().manual_seed(5)
    start = (torch.randn(LAYERS, B, H, generator=g, dtype=torch.float64),
             torch.randn(LAYERS, B, H, generator=g, dtype=torch.float64))
    got = run(forward_pass, weights=weights, x=x, state=start)
    assert_forward(got, reference_forward(weights, x, start), "model(ids, a random (h, c))")


@probe
def one_train_step(load, weights, x, y, lr, max_norm, stale_grads=None):
    """train_step once with SGD(lr), with ``stale_grads`` left in .grad as by an earlier step:
    the loss, the logits and the parameters after the step."""
    model = build_model(load, weights)
    for name, p in model.named_parameters():
        p.grad = None if stale_grads is None else stale_grads[name].clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss, logits = load("part2.train").train_step(model, optimizer, x, y, max_norm)
    return {"loss": torch.as_tensor(loss).detach().double(), "logits": logits,
            "parameters": dict(model.named_parameters())}


def expected_update(weights, x, y, lr, max_norm):
    """Loss, logits, parameters after one SGD step on the globally clipped gradient (autograd), gradient norm."""
    params = {name: w.clone().requires_grad_() for name, w in weights.items()}
    logits, _ = reference_forward(params, x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads.values())).item()
    scale = min(1.0, max_norm / (norm + 1e-6))  # clip_grad_norm_'s
    after = {name: p.detach() - lr * scale * grads[name] for name, p in params.items()}
    return loss.detach(), logits.detach(), after, norm


@pytest.mark.points(1.5, question="2.1 (a)")  # x 2 cases
@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_train_step_loss_clipping_and_update(run, max_norm):
    """train_step: mean cross-entropy over B*T, global-norm clipping, one optimiser step."""
    weights, x, y, lr = make_weights(seed=2), ids(seed=3), ids(seed=4), 0.5
    want_loss, want_logits, want_params, norm = expected_update(weights, x, y, lr, max_norm)
    assert (norm > max_norm) == (max_norm < 1), "test set-up: clipping in one case only"
    # Without clipping, .grad starts with an earlier step's gradients, which train_step must clear.
    stale = None if max_norm < 1 else make_weights(seed=9)
    got = run(one_train_step, weights=weights, x=x, y=y, lr=lr, max_norm=max_norm, stale_grads=stale)
    torch.testing.assert_close(got["loss"], want_loss, msg=lambda m: (
        f"the loss is not the cross-entropy averaged over all B*T = {B * T} predictions\n{m}"))
    assert list(got["logits"].shape) == [B, T, V], f"logits of shape {list(got['logits'].shape)}"
    torch.testing.assert_close(got["logits"], want_logits, msg=lambda m: (
        f"the logits returned are not those of the batch (before the step)\n{m}"))
    assert set(got["parameters"]) == set(want_params)
    clipping = (f"the gradient's global norm {norm:.3f} is above max_norm={max_norm}: scale the whole gradient "
                "(all parameters together) to norm max_norm" if norm > max_norm
                else f"the gradient's global norm {norm:.3f} is below max_norm={max_norm}: no clipping; "
                "but .grad held an earlier step's gradients: clear them before backward()")
    for name, want in want_params.items():
        torch.testing.assert_close(got["parameters"][name], want,
                                   msg=lambda m: f"{name} after one SGD step ({clipping})\n{m}")


PERIOD, STEPS, BATCH, LENGTH = 5, 150, 16, 10


def periodic_batches(steps, batch, length, seed):
    """``steps`` batches (inputs, targets) of windows of 'abcde' repeated, at random offsets."""
    text = torch.arange(PERIOD).repeat(40)
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(text) - length - 1, (steps, batch), generator=g)
    windows = starts[..., None] + torch.arange(length + 1)  # (steps, batch, length + 1)
    return text[windows[..., :-1]], text[windows[..., 1:]]


@probe
def trained_weights(load, weights, inputs, targets, lr, max_norm):
    """train_step on each batch in turn (RMSprop(lr)); the state_dict after the last."""
    train = load("part2.train")
    model = build_model(load, weights)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)
    for x, y in zip(inputs, targets):
        train.train_step(model, optimizer, x, y, max_norm)
    return dict(model.state_dict())


@pytest.mark.points(1, question="2.1 (a)")
def test_learns_a_periodic_text(run):
    """The model and train_step learn to continue 'abcde' repeated (accuracy > 0.95)."""
    start = make_weights(PERIOD, 16, 2, seed=0, scale=16 ** -0.5, dtype=torch.float32)  # nn.LSTM's own init range
    inputs, targets = periodic_batches(STEPS, BATCH, LENGTH, seed=0)
    trained = run(trained_weights, weights=start, inputs=inputs, targets=targets, lr=1e-2, max_norm=5.0)
    x, y = periodic_batches(1, 64, 20, seed=1)  # the check's own windows, each from the zero state
    with torch.no_grad():
        logits, _ = reference_forward(trained, x[0])
    accuracy = (logits.argmax(-1) == y[0]).double().mean().item()
    assert accuracy > 0.95, f"accuracy {accuracy:.2f} on 'abcde' repeated after {STEPS} steps of train_step"


# ---------------------------------------------------------------- 2.1 (b) greedy sampling


@probe
def draws(load, logits, temperature, seed):
    """sample_next(logits, temperature, a generator seeded with ``seed``)."""
    return load("part2.sampling").sample_next(logits, temperature, torch.Generator().manual_seed(seed))


@pytest.mark.points(1, question="2.1 (b)")
def test_greedy_is_argmax_and_deterministic(run):
    """sample_next at temperature 0 returns the argmax of each row, the same every time."""
    logits = torch.randn(50, V, generator=torch.Generator().manual_seed(0))
    first = run(draws, logits=logits, temperature=0.0, seed=1)
    second = run(draws, logits=logits, temperature=0.0, seed=2)
    assert isinstance(first, torch.Tensor) and first.shape == (50,) and first.dtype == torch.long, (
        "sample_next must return a LongTensor (B,)")
    assert torch.equal(first, logits.argmax(-1)), "at temperature 0, sample_next must return each row's argmax"
    assert torch.equal(second, first), "at temperature 0, sample_next must not depend on the generator"


@probe
def generations(load, weights, prompts, length):
    """generate(model, prompt, length, temperature=0) for each prompt in turn, with one model."""
    sampling = load("part2.sampling")
    model = build_model(load, weights)
    return [sampling.generate(model, prompt, length, temperature=0.0) for prompt in prompts]


@pytest.mark.points(2, question="2.1 (b)")
def test_greedy_generation_is_argmax_decoding(run):
    """generate(..., temperature=0) from a first character = argmax decoding of 29 characters."""
    weights = make_weights(V, GEN_H, LAYERS, seed=4, scale=3.0)
    prompt = torch.tensor([[0], [3], [5]])
    out, again = run(generations, weights=weights, prompts=[prompt, prompt], length=29)
    assert out.shape == (3, 29), f"generate returned shape {tuple(out.shape)} for 3 prompts and 29 characters"
    want = argmax_decoding(weights, prompt, 29)
    assert torch.equal(out, want), f"greedy generation\n{out}\nis not argmax decoding\n{want}"
    assert torch.equal(again, out), "a second greedy generation with the same model differs from the first"


# ---------------------------------------------------------------- 2.1 (c) temperature


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return (((counts - expected) ** 2) / expected).sum().item()


@pytest.mark.points(1, question="2.1 (c)")  # x 3 temperatures
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_frequencies_follow_softmax(run, temperature):
    """Sampled frequencies match softmax(logits / tau) (chi-square, 0.1% level, fixed seed)."""
    rows = torch.tensor([[1.0, 0.0, -0.5, 0.5, -1.0], [-1.0, 1.5, 0.0, 0.2, 0.1]])
    n = 20000
    logits = rows.repeat_interleave(n, dim=0)  # (2n, 5): every row of a batch is sampled on its own
    got = run(draws, logits=logits, temperature=temperature, seed=0)
    assert isinstance(got, torch.Tensor) and got.shape == (2 * n,) and got.dtype == torch.long, (
        "sample_next must return a LongTensor (B,)")
    assert 0 <= got.min() and got.max() < 5, "sample_next returned ids outside the vocabulary"
    for r, row in enumerate(rows):
        counts = torch.bincount(got[r * n:(r + 1) * n], minlength=5).double()
        probs = torch.softmax(row.double() / temperature, dim=-1)
        stat = chi_square(counts, probs)
        assert stat < CHI2_999[4], (f"tau={temperature}, row {r}: frequencies {(counts / n).tolist()} "
                                    f"are far from softmax(logits/tau) = {probs.tolist()} (chi2 {stat:.1f})")


@pytest.mark.points(1, question="2.1 (c)")
def test_temperature_sampling_uses_the_generator(run):
    """The same seeded generator gives the same samples; the samples are not all the argmax."""
    logits = torch.randn(200, V, generator=torch.Generator().manual_seed(3))
    a = run(draws, logits=logits, temperature=1.0, seed=11)
    b = run(draws, logits=logits, temperature=1.0, seed=11)
    c = run(draws, logits=logits, temperature=1.0, seed=12)
    assert torch.equal(a, b), "two generators seeded alike gave different samples: draw with the generator given"
    assert not torch.equal(a, c), "generators seeded differently gave the same samples: draw with the generator given"
    assert not torch.equal(a, logits.argmax(-1)), "at temperature 1 the samples were all the argmax"


@probe
def error_raised(load, logits, temperature):
    """What sample_next(logits, temperature) raises: its type and message, or None."""
    sampling = load("part2.sampling")
    try:
        sampling.sample_next(logits, temperature)
    except Exception as exc:  # noqa: BLE001 - the exception is the answer
        return {"raised": type(exc).__name__, "value_error": isinstance(exc, ValueError), "message": str(exc)}
    return None


@pytest.mark.points(0.5, question="2.1 (c)")  # x 2 cases
@pytest.mark.parametrize("temperature", [-0.5, float("nan")])
def test_negative_temperature_is_an_error(run, temperature):
    """A negative (or NaN) temperature raises ValueError."""
    error = run(error_raised, logits=torch.zeros(2, V), temperature=temperature)
    assert error is not None, f"sample_next(logits, temperature={temperature}) raised nothing: raise ValueError"
    assert error["value_error"], (f"sample_next(logits, temperature={temperature}) raised {error['raised']}: "
                                  f"{error['message']}, not ValueError")
    assert "temperature" in error["message"], (
        f"the ValueError's message should mention the temperature: {error['message']!r}")


# ---------------------------------------------------------------- 2.2 long generation


class CountingModel(torch.nn.Module):
    """Wraps a model and records the length of every input it is given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.lengths = model, []

    def forward(self, x, state=None):
        self.lengths.append(x.shape[1])
        return self.model(x, state)


@probe
def counted_generation(load, weights, prompt, length):
    """Greedy generate() on a CountingModel: the characters and the length of each input the model was given."""
    counting = CountingModel(build_model(load, weights))
    out = load("part2.sampling").generate(counting, prompt, length, temperature=0.0)
    return {"ids": out, "lengths": counting.lengths}


@pytest.mark.points(2, question="2.2")
def test_generation_carries_the_state(run):
    """A 200-character continuation feeds each new character once, carrying (h, c)."""
    weights = make_weights(V, GEN_H, LAYERS, seed=7, scale=3.0)
    prompt = ids(steps=5, seed=8)
    got = run(counted_generation, weights=weights, prompt=prompt, length=200)
    # The lengths are reported by the child: they say *how* generate ran the model, and only the
    # student's code can report them. *What* it generated is checked independently, against the
    # check's own argmax decoding from the weights.
    out, lengths = got["ids"], got["lengths"]
    assert out.shape == (B, 200), f"generate returned shape {tuple(out.shape)} for {B} prompts and 200 characters"
    assert sum(lengths) <= 5 + 200, (
        f"the model was run on {sum(lengths)} characters for a 5 + 200 text: "
        "carry the state instead of re-running the text")
    want = argmax_decoding(weights, prompt, 200)
    assert torch.equal(out, want), (
        f"greedy generation differs from argmax decoding from character {(out != want).any(0).int().argmax()} on")


@pytest.mark.points(2, question="2.2")
def test_generation_is_batched(run):
    """Each row of a batched generation equals that prompt generated alone (greedy, 120 characters)."""
    weights = make_weights(V, GEN_H, LAYERS, seed=0, scale=3.0)
    prompts = ids(batch=4, steps=3, seed=9)
    together, *alone = run(generations, weights=weights, prompts=[prompts, *prompts.split(1)], length=120)
    assert together.shape == (4, 120), (
        f"generate returned shape {tuple(together.shape)} for 4 prompts and 120 characters")
    for r in range(4):
        assert torch.equal(together[r:r + 1], alone[r]), (
            f"row {r} of the batched generation differs from prompt {r} generated alone: rows must not interact")
    assert torch.equal(together, argmax_decoding(weights, prompts, 120)), "greedy generation is not argmax decoding"
