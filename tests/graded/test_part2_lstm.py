"""Graded tests of Part 2, the LSTM as a generative model (35 points + 8 bonus; 20 graded here).

The 2019 material gives Part 2 35 points and the bonus 8 without a split; this course splits the
35 as 2.1 (a) 15, (b) 10, (c) 10.

| question | here | by hand |
|---|---|---|
| 2.1 (a) model and training | 8: shapes, the forward pass against nn.LSTM on one-hot inputs, starting from a given state, the training step (loss, clipping, update) against an independent computation, learning a periodic text | 7: training on a book, the loss curve |
| 2.1 (b) greedy samples | 3: greedy = argmax, deterministic, generation = argmax decoding | 7: five samples at evenly spaced steps and how they change |
| 2.1 (c) temperature | 5: sampled frequencies follow softmax(logits / tau), a seeded generator repeats, negative temperature is an error | 5: the samples at 0.5, 1.0, 2.0 and the trade-off |
| 2.2 bonus | 4: generation carries (h, c) (never re-runs the text) and is batched, to any length | 4: finished sentences, punctuation, what the model cannot learn |

Each check is against an independent computation: torch.nn.LSTM and F.cross_entropy on the
model's own weights, autograd on a copy, argmax decoding that re-runs the whole text, and the
exact softmax(logits / tau) (a chi-square test with a fixed seed).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

V, H, LAYERS, B, T = 7, 6, 2, 3, 9

# Upper 0.1% points of the chi-square distribution, by degrees of freedom (a fixed seed, so the
# test is deterministic; a correct sampler exceeds them with probability 0.001).
CHI2_999 = {4: 18.467, 5: 20.515, 6: 22.458}


def make_model(load, vocab=V, hidden=H, layers=LAYERS, seed=0):
    model_mod = load("part2.model")
    torch.manual_seed(seed)
    return model_mod.TextGenerationModel(vocab, hidden, layers).double()


def ids(batch=B, steps=T, vocab=V, seed=1):
    return torch.randint(vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


def reference_forward(model, x, state=None):
    """What forward must compute: one-hot -> model.lstm -> model.output, built here independently."""
    lstm = torch.nn.LSTM(V, H, LAYERS, batch_first=True).double()
    weights = dict(model.lstm.named_parameters())  # the model's own tensors, so autograd reaches them
    out, state = torch.func.functional_call(lstm, weights, (F.one_hot(x, V).double(), state))
    return out @ model.output.weight.T + model.output.bias, state


# ---------------------------------------------------------------- 2.1 (a) the model


@pytest.mark.points(1, question="2.1 (a)")
def test_model_shapes(load):
    """TextGenerationModel: logits (B, T, V) and a state (h, c) of shape (layers, B, H)."""
    model = make_model(load)
    logits, (h, c) = model(ids())
    assert logits.shape == (B, T, V)
    assert h.shape == (LAYERS, B, H) and c.shape == (LAYERS, B, H)
    assert isinstance(model.lstm, torch.nn.LSTM) and model.lstm.num_layers == LAYERS
    assert model.lstm.hidden_size == H and model.lstm.batch_first


@pytest.mark.points(2, question="2.1 (a)")
def test_forward_matches_lstm_on_one_hot(load):
    """forward = output layer of a two-layer nn.LSTM run on one-hot characters."""
    model = make_model(load)
    x = ids()
    logits, (h, c) = model(x)
    want, (h_want, c_want) = reference_forward(model, x)
    torch.testing.assert_close(logits, want)
    torch.testing.assert_close(h, h_want)
    torch.testing.assert_close(c, c_want)


@pytest.mark.points(1, question="2.1 (a)")
def test_forward_starts_from_given_state(load):
    """forward(ids, state) starts from that state: two halves give the logits of the whole."""
    model = make_model(load)
    x = ids()
    whole, (h, c) = model(x)
    first, state = model(x[:, :4])
    second, (h2, c2) = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)
    g = torch.Generator().manual_seed(5)
    start = (torch.randn(LAYERS, B, H, generator=g, dtype=torch.float64),
             torch.randn(LAYERS, B, H, generator=g, dtype=torch.float64))
    torch.testing.assert_close(model(x, start)[0], reference_forward(model, x, start)[0])


def expected_update(model, x, y, lr, max_norm):
    """Loss, and parameters after one SGD step on the globally clipped gradient, by autograd on a copy."""
    twin = copy.deepcopy(model)
    logits, _ = reference_forward(twin, x)
    params = list(twin.parameters())
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (norm.item() + 1e-6))
    return loss, [p.detach() - lr * scale * g for p, g in zip(params, grads)], norm.item()


@pytest.mark.points(1.5, question="2.1 (a)")  # x 2 cases
@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_train_step_loss_clipping_and_update(load, max_norm):
    """train_step: mean cross-entropy over B*T, global-norm clipping, one optimiser step."""
    train = load("part2.train")
    model = make_model(load)
    x, y = ids(seed=3), ids(seed=4)
    lr = 0.5
    want_loss, want_params, norm = expected_update(model, x, y, lr, max_norm)
    assert (norm > max_norm) == (max_norm < 1), "the test needs clipping in one case only"
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss, logits = train.train_step(model, optimizer, x, y, max_norm)
    torch.testing.assert_close(torch.as_tensor(loss, dtype=torch.float64), want_loss.detach())
    assert logits.shape == (B, T, V)
    for (name, p), want in zip(model.named_parameters(), want_params):
        torch.testing.assert_close(p.detach(), want, msg=f"{name} after the step (max_norm={max_norm})")


@pytest.mark.points(1, question="2.1 (a)")
def test_learns_a_periodic_text(load):
    """The model and train_step learn to continue 'abcde' repeated (accuracy > 0.95)."""
    train = load("part2.train")
    model_mod = load("part2.model")
    torch.manual_seed(0)
    model = model_mod.TextGenerationModel(5, 16, 2)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2)
    text = torch.arange(5).repeat(40)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        o = torch.randint(0, len(text) - 11, (16,), generator=g)
        x = torch.stack([text[i:i + 10] for i in o])
        y = torch.stack([text[i + 1:i + 11] for i in o])
        loss, logits = train.train_step(model, optimizer, x, y, 5.0)
    accuracy = (logits.argmax(-1) == y).double().mean().item()
    assert accuracy > 0.95, f"accuracy {accuracy:.2f} after 150 steps"


# ---------------------------------------------------------------- 2.1 (b) greedy sampling


@pytest.mark.points(1, question="2.1 (b)")
def test_greedy_is_argmax_and_deterministic(load):
    """sample_next at temperature 0 returns the argmax of each row, the same every time."""
    sampling = load("part2.sampling")
    logits = torch.randn(50, V, generator=torch.Generator().manual_seed(0))
    first = sampling.sample_next(logits, 0.0, torch.Generator().manual_seed(1))
    second = sampling.sample_next(logits, 0.0, torch.Generator().manual_seed(2))
    assert first.shape == (50,) and first.dtype == torch.long
    assert torch.equal(first, logits.argmax(-1)) and torch.equal(second, first)


def argmax_decoding(model, prompt, length):
    """Greedy decoding that re-runs the whole text at every step (no state carried)."""
    seq = prompt.clone()
    with torch.no_grad():
        for _ in range(length):
            logits, _ = reference_forward(model, seq)
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[:, prompt.shape[1]:]


@pytest.mark.points(2, question="2.1 (b)")
def test_greedy_generation_is_argmax_decoding(load):
    """generate(..., temperature=0) from a first character = argmax decoding of 29 characters."""
    sampling = load("part2.sampling")
    model = make_model(load, seed=3)
    prompt = ids(steps=1, seed=7)
    out = sampling.generate(model, prompt, 29, temperature=0.0)
    assert out.shape == (B, 29)
    assert torch.equal(out, argmax_decoding(model, prompt, 29))
    assert torch.equal(sampling.generate(model, prompt, 29, temperature=0.0), out)


# ---------------------------------------------------------------- 2.1 (c) temperature


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return (((counts - expected) ** 2) / expected).sum().item()


@pytest.mark.points(1, question="2.1 (c)")  # x 3 temperatures
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_frequencies_follow_softmax(load, temperature):
    """Sampled frequencies match softmax(logits / tau) (chi-square, 0.1% level, fixed seed)."""
    sampling = load("part2.sampling")
    rows = torch.tensor([[1.0, 0.0, -0.5, 0.5, -1.0], [-1.0, 1.5, 0.0, 0.2, 0.1]])
    n = 20000
    logits = rows.repeat_interleave(n, dim=0)  # (2n, 5): every row of a batch is sampled on its own
    draws = sampling.sample_next(logits, temperature, torch.Generator().manual_seed(0))
    assert draws.shape == (2 * n,)
    for r, row in enumerate(rows):
        counts = torch.bincount(draws[r * n:(r + 1) * n], minlength=5).double()
        probs = torch.softmax(row.double() / temperature, dim=-1)
        stat = chi_square(counts, probs)
        assert stat < CHI2_999[4], (f"tau={temperature}, row {r}: frequencies {(counts / n).tolist()} "
                                    f"are far from softmax(logits/tau) = {probs.tolist()} (chi2 {stat:.1f})")


@pytest.mark.points(1, question="2.1 (c)")
def test_temperature_sampling_uses_the_generator(load):
    """The same seeded generator gives the same samples; the samples are not all the argmax."""
    sampling = load("part2.sampling")
    logits = torch.randn(200, V, generator=torch.Generator().manual_seed(3))
    a = sampling.sample_next(logits, 1.0, torch.Generator().manual_seed(11))
    b = sampling.sample_next(logits, 1.0, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, logits.argmax(-1))


@pytest.mark.points(0.5, question="2.1 (c)")  # x 2 cases
@pytest.mark.parametrize("temperature", [-0.5, float("nan")])
def test_negative_temperature_is_an_error(load, temperature):
    """A negative (or NaN) temperature raises ValueError."""
    sampling = load("part2.sampling")
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample_next(torch.zeros(2, V), temperature)


# ---------------------------------------------------------------- 2.2 long generation


class CountingModel(torch.nn.Module):
    """Wraps a model and records the length of every input it is given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.lengths = model, []

    def forward(self, x, state=None):
        self.lengths.append(x.shape[1])
        return self.model(x, state)


@pytest.mark.points(2, question="2.2")
def test_generation_carries_the_state(load):
    """A 200-character continuation feeds each new character once, carrying (h, c)."""
    sampling = load("part2.sampling")
    model = make_model(load, seed=4)
    prompt = ids(steps=5, seed=8)
    counting = CountingModel(model)
    out = sampling.generate(counting, prompt, 200, temperature=0.0)
    assert out.shape == (B, 200)
    assert sum(counting.lengths) <= 5 + 200, (
        f"the model was run on {sum(counting.lengths)} characters for a 5 + 200 text: "
        "carry the state instead of re-running the text")
    assert torch.equal(out[:, :40], argmax_decoding(model, prompt, 40))


@pytest.mark.points(2, question="2.2")
def test_generation_is_batched(load):
    """Each row of a batched generation equals that prompt generated alone (greedy, 120 characters)."""
    sampling = load("part2.sampling")
    model = make_model(load, seed=5)
    prompts = ids(batch=4, steps=3, seed=9)
    together = sampling.generate(model, prompts, 120, temperature=0.0)
    assert together.shape == (4, 120)
    for r in range(4):
        alone = sampling.generate(model, prompts[r:r + 1], 120, temperature=0.0)
        torch.testing.assert_close(together[r:r + 1], alone, rtol=0, atol=0)
