"""Graded tests of Part 2, the LSTM as a generative model (35 points + 8 bonus; 20 graded here).

The 2019 material gives Part 2 35 points and the bonus 8 without a split; this course splits the
35 as 2.1 (a) 15, (b) 10, (c) 10.

| question | here | by hand |
|---|---|---|
| 2.1 (a) model and training | 8: shapes, the forward pass against nn.LSTM on one-hot inputs, starting from a given state, the training step (loss, clipping, update) against an independent computation, learning a periodic text | 7: training on a book, the loss curve |
| 2.1 (b) greedy samples | 3: greedy = argmax, deterministic, generation = argmax decoding | 7: five samples at evenly spaced steps and how they change |
| 2.1 (c) temperature | 5: sampled frequencies (of sample_next and of generate) follow softmax(logits / tau), a seeded generator repeats, generation feeds back what it sampled, a negative or non-finite temperature is an error | 5: the samples at 0.5, 1.0, 2.0 and the trade-off |
| 2.2 bonus | 4: generation carries (h, c) (never re-runs the text) and is batched, to any length | 4: finished sentences, punctuation, what the model cannot learn |

Each test is a check with its probes next to it (``grader/probes.py``): a probe (``@probe``) runs the
student's code on inputs the check chooses and returns plain data. The check chooses the weights
too: a state_dict with the names and shapes of the spec (``lstm.weight_ih_l0``, ...,
``output.weight``, ``output.bias``), which the probe loads (strictly) into the student's
``TextGenerationModel``. The check never imports student code; it compares with an independent
computation on the same weights: torch.nn.LSTM and F.cross_entropy, autograd, argmax decoding that
re-runs the whole text, and the exact softmax(logits / tau) (a chi-square test with a fixed seed).

The student's model runs in float32, as nn.LSTM builds it and as training uses it (so a one-hot made
with ``.float()`` is right); the check computes in float64 from the same float32 weights and allows
float32's rounding (``TOL``), far below what any mistake changes. Where a check recognises a common
mistake (it computes what that mistake would give), its message names it.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grader.probes import probe

try:  # common wrong generation loops, to name the one a wrong text follows: written out, they are the right
    from tests.hidden.part2_mistakes import decoding_mistakes  # loop too, so they stay with the hidden tests
except ImportError:  # the student edition: the comparison says what differs, without naming the mistake
    decoding_mistakes = None

V, H, LAYERS, B, T = 7, 6, 2, 3, 9
GEN_H = 16  # generation tests: a wider model with large weights, whose greedy texts vary and depend on the past
DTYPE = torch.float32  # the student's model; the references run in float64 from the same weights
TOL = {"rtol": 1e-5, "atol": 1e-5}  # float32 rounding here is about 1e-7; every mistake below changes far more
TIE = 1e-3  # the reference decodings' smallest gap between the two best logits (float32 cannot flip it)

# Upper 0.1% points of the chi-square distribution, by degrees of freedom (a fixed seed, so the
# test is deterministic; a correct sampler exceeds them with probability 0.001).
CHI2_999 = {4: 18.467, 5: 20.515, 6: 22.458}


# ---------------------------------------------------------------- inputs and references
# (the check's side: nothing here imports student code)


def make_weights(vocab=V, hidden=H, layers=LAYERS, seed=0, scale=1.0, dtype=DTYPE):
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


def random_state(layers=LAYERS, batch=B, hidden=H, seed=5):
    """A random (h, c) in the student's dtype."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(layers, batch, hidden, generator=g, dtype=torch.float64).to(DTYPE) for _ in range(2))


def reference_forward(weights, x, state=None):
    """What forward must compute: one-hot -> nn.LSTM -> output layer, in float64, from ``weights``
    (autograd reaches the tensors of ``weights``)."""
    vocab, hidden, layers = sizes(weights)
    lstm = torch.nn.LSTM(vocab, hidden, layers, batch_first=True).double()
    own = {name.removeprefix("lstm."): w.double() for name, w in weights.items() if name.startswith("lstm.")}
    state = None if state is None else tuple(s.double() for s in state)
    out, state = torch.func.functional_call(lstm, own, (F.one_hot(x, vocab).double(), state))
    return out @ weights["output.weight"].double().T + weights["output.bias"].double(), state


def argmax_decoding(weights, prompt, length):
    """Greedy decoding that re-runs the whole text at every step (no state carried)."""
    seq = prompt.clone()
    with torch.no_grad():
        for _ in range(length):
            last = reference_forward(weights, seq)[0][:, -1]
            top2 = last.topk(2, dim=-1).values
            assert (top2[:, 0] - top2[:, 1]).min() > TIE, "test set-up: a near tie in the reference decoding"
            seq = torch.cat([seq, last.argmax(-1, keepdim=True)], dim=1)
    want = seq[:, prompt.shape[1]:]
    assert len({tuple(row.tolist()) for row in want}) == len(want), "test set-up: two rows decode alike"
    return want


def is_close(got, want):
    """Equal shapes and values within float32's rounding (compared in float64)."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False
    return torch.allclose(got.double(), want.double(), **TOL)


def assert_close(got, want, message):
    """assert_close in float64 with float32's tolerance; ``message`` first, then torch's details."""
    assert isinstance(got, torch.Tensor), f"{message}: got a {type(got).__name__}, not a tensor"
    assert got.shape == want.shape, f"{message}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    torch.testing.assert_close(got.double(), want.double(), **TOL, msg=lambda m: f"{message}\n{m}")


def require(condition, message):
    """Fail with ``message`` alone (what the student reads first) unless ``condition``."""
    if not condition:
        pytest.fail(message, pytrace=False)


def run_explained(run, hint, function, **arguments):
    """``run``, with ``hint`` put before the student's traceback when the probe fails."""
    try:
        return run(function, **arguments)
    except pytest.fail.Exception as exc:  # the autograder: the probe failed in its sandbox
        pytest.fail(f"{hint}\n{exc.msg}", pytrace=False)
    except Exception as exc:  # one process (pytest tests/graded): the student's exception itself
        raise AssertionError(f"{hint}\n{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- probes' helpers (run with student code)


def build_model(load, weights):
    """The student's TextGenerationModel of the sizes of ``weights``, in their dtype, with ``weights`` loaded."""
    model = load("part2.model").TextGenerationModel(*sizes(weights)).to(weights["output.weight"].dtype)
    model.load_state_dict(weights)  # strict: the parameter names and shapes of the spec
    return model


# ---------------------------------------------------------------- 2.1 (a) the model


@probe
def model_facts(load, weights, x):
    """How the model builds its layers, then the shapes forward returns and what ``model.lstm`` is (also with
    dropout=0.25); ``load_error`` if the weights of the spec do not fit the model."""
    built = load("part2.model").TextGenerationModel(*sizes(weights))
    lstm, output = getattr(built, "lstm", None), getattr(built, "output", None)
    layers = {"input_size": getattr(lstm, "input_size", None), "hidden_size": getattr(lstm, "hidden_size", None),
              "bidirectional": getattr(lstm, "bidirectional", None), "batch_first": getattr(lstm, "batch_first", None),
              "output": list(output.weight.shape) if isinstance(getattr(output, "weight", None), torch.Tensor) else None}
    try:
        model = build_model(load, weights)
    except RuntimeError as error:
        return {"built": layers, "load_error": str(error)}
    lstm = model.lstm
    with torch.no_grad():
        logits, (h, c) = model(x)
    with_dropout = load("part2.model").TextGenerationModel(*sizes(weights), dropout=0.25)
    return {"built": layers, "logits": list(logits.shape), "h": list(h.shape), "c": list(c.shape),
            "is_nn_LSTM": isinstance(lstm, torch.nn.LSTM), "num_layers": getattr(lstm, "num_layers", None),
            "hidden_size": getattr(lstm, "hidden_size", None), "batch_first": getattr(lstm, "batch_first", None),
            "dropout": getattr(lstm, "dropout", None),
            "dropout_given": getattr(getattr(with_dropout, "lstm", None), "dropout", None)}


@pytest.mark.points(1, question="2.1 (a)")
def test_model_shapes(run):
    """TextGenerationModel: logits (B, T, V) and a state (h, c) of shape (layers, B, H)."""
    for vocab, hidden, layers in ((V, H, LAYERS), (5, 4, 3)):
        facts = run(model_facts, weights=make_weights(vocab, hidden, layers), x=ids(vocab=vocab))
        setting = f"TextGenerationModel({vocab}, hidden={hidden}, num_layers={layers}) on ids ({B}, {T})"
        built = facts["built"]
        for wrong, mistake in (
                (built["bidirectional"], "a bidirectional LSTM reads the characters it must predict: one direction"),
                (built["batch_first"] is False, "nn.LSTM is built without batch_first=True, so it reads the (B, T, V) "
                                               "one-hot as (T, B, V)"),
                (built["input_size"] == hidden and built["hidden_size"] == vocab != hidden,
                 "the LSTM's input size and hidden size are swapped: nn.LSTM(V, H)"),
                (built["hidden_size"] == vocab != hidden, "the LSTM's hidden size is the vocabulary size, not H"),
                (built["output"] == [hidden, vocab] != [vocab, hidden], "the output layer maps V to H; it maps H to V")):
            assert not wrong, f"{setting}: {mistake}"
        if "load_error" in facts:
            raise AssertionError(f"{setting}: the parameters of the spec do not fit the model: {facts['load_error']}")
        assert facts["logits"] != [T, B, vocab] or B == T, \
            f"{setting}: logits of shape {facts['logits']}, time-major (T, B, V); the model is batch-first (B, T, V)"
        assert facts["logits"] != [B, vocab], \
            f"{setting}: logits of shape {facts['logits']}: the output layer was applied to the last step only"
        assert facts["logits"] == [B, T, vocab], f"{setting}: logits of shape {facts['logits']}"
        assert facts["h"] == [layers, B, hidden] and facts["c"] == [layers, B, hidden], (
            f"{setting}: h of shape {facts['h']} and c of shape {facts['c']}, not (layers, B, H)")
        assert facts["is_nn_LSTM"], "model.lstm must be a torch.nn.LSTM"
        assert facts["num_layers"] == layers and facts["hidden_size"] == hidden, (
            f"{setting}: model.lstm has {facts['num_layers']} layers of {facts['hidden_size']} units")
        assert facts["batch_first"] is True, "model.lstm must take (B, T, V) inputs: batch_first=True"
        assert facts["dropout"] == 0, (
            f"{setting}: model.lstm has dropout {facts['dropout']}: the default (2019's) is none, dropout=0.0")
        assert facts["dropout_given"] == 0.25, (
            f"TextGenerationModel({vocab}, {hidden}, {layers}, dropout=0.25): model.lstm has dropout "
            f"{facts['dropout_given']}: pass the dropout argument to nn.LSTM")


@probe
def forward_pass(load, weights, x, state=None):
    """model(x, state) with the given weights, twice: the logits and the final (h, c), and the
    second call's logits."""
    model = build_model(load, weights)
    given = None if state is None else tuple(state)
    with torch.no_grad():
        logits, (h, c) = model(x, given)
        again, _ = model(x, given)
    return {"logits": logits, "h": h, "c": c, "again": again}


def forward_mistake(got, weights, x, state):
    """The name of a common mistake that explains ``got`` (forward_pass's data), or ''."""
    logits, (h, c) = reference_forward(weights, x, state)
    if is_close(got["logits"], torch.softmax(logits, dim=-1)):
        return "forward returns probabilities (a softmax of the logits): return the logits themselves"
    if is_close(got["h"], c) and is_close(got["c"], h):
        return "the state is returned as (c, h): nn.LSTM's order is (h, c)"
    if state is not None:
        zero, (h0, c0) = reference_forward(weights, x)
        if is_close(got["logits"], zero) and is_close(got["h"], h0):
            return "forward ignores the state it is given and starts from zeros: pass it to self.lstm"
    if got["logits"].dim() == 2:
        return "the output layer was applied to the last step only: apply it at every step, (B, T, V)"
    lstm_out = (logits - weights["output.bias"].double()) @ torch.linalg.pinv(weights["output.weight"].double().T)
    squashed = torch.tanh(lstm_out) @ weights["output.weight"].double().T + weights["output.bias"].double()
    if is_close(got["logits"], squashed):
        return "a tanh was applied to the LSTM's output before the output layer; nn.LSTM's h is already squashed"
    if state is None and not is_close(got["logits"], logits) and not is_close(got["again"], got["logits"]):
        return "the state does not start at zeros (random?): without a state, start from h = c = 0"
    return ""


def assert_forward(got, want, what, mistake=""):
    logits, (h, c) = want
    ok = all(is_close(value, expected) for value, expected in ((got["logits"], logits), (got["h"], h), (got["c"], c)))
    require(ok or not mistake, f"{what}: {mistake}")
    for name, value, expected in (("logits", got["logits"], logits), ("h", got["h"], h), ("c", got["c"], c)):
        assert_close(value, expected, f"{what}: {name} differ from nn.LSTM's")
    require(torch.equal(got["again"], got["logits"]), (
        f"{what}: a second call with the same input and state gave other logits: forward must not keep "
        "a state of its own between calls (and nothing random, such as dropout, may be on)"))


@pytest.mark.points(2, question="2.1 (a)")
def test_forward_matches_lstm_on_one_hot(run):
    """forward = output layer of a two-layer nn.LSTM run on one-hot characters."""
    weights, x = make_weights(seed=0), ids()
    got = run(forward_pass, weights=weights, x=x)
    assert_forward(got, reference_forward(weights, x), "model(ids) from the zero state",
                   forward_mistake(got, weights, x, None))
    # A batch that never uses the last two characters: the one-hot still has V entries.
    rare = ids(vocab=V - 2, seed=2)
    got = run_explained(run, f"model(ids) on ids that are all below {V - 2} failed: one-hot with "
                             f"num_classes=V ({V}), not the largest id in the batch", forward_pass, weights=weights, x=rare)
    assert_forward(got, reference_forward(weights, rare), f"model(ids) with ids all below {V - 2}",
                   forward_mistake(got, weights, rare, None))


@pytest.mark.points(1, question="2.1 (a)")
def test_forward_starts_from_given_state(run):
    """forward(ids, state) starts from that state: two halves give the logits of the whole."""
    weights, x = make_weights(seed=1), ids()
    whole, final = reference_forward(weights, x)
    _, after_four = reference_forward(weights, x[:, :4])
    after_four = tuple(s.to(DTYPE) for s in after_four)
    got = run(forward_pass, weights=weights, x=x[:, 4:], state=after_four)
    assert_forward(got, (whole[:, 4:], final), "model(ids[:, 4:], state after ids[:, :4])",
                   forward_mistake(got, weights, x[:, 4:], after_four))
    start = random_state()
    got = run(forward_pass, weights=weights, x=x, state=start)
    assert_forward(got, reference_forward(weights, x, start), "model(ids, a random (h, c))",
                   forward_mistake(got, weights, x, start))


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


def expected_update(weights, x, y, lr, max_norm, stale=None):
    """Loss, logits, parameters after one SGD step on the globally clipped gradient (autograd), gradient
    norm, and the parameters common mistakes would give instead ({mistake: parameters})."""
    params = {name: w.detach().double().clone().requires_grad_() for name, w in weights.items()}
    logits, _ = reference_forward(params, x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))

    def norm_of(gs):
        return torch.sqrt(sum((g ** 2).sum() for g in gs)).item()

    def step(gs, clip=True):
        scale = min(1.0, max_norm / (norm_of(gs.values()) + 1e-6)) if clip else 1.0  # clip_grad_norm_'s
        return {name: params[name].detach() - lr * scale * gs[name] for name in params}

    norm = norm_of(grads.values())
    after = step(grads)
    mistakes = {
        "the gradient was not clipped (clip after backward() and before step(), with clip_grad_norm_ at max_norm, "
        "the argument, not a fixed number)": step(grads, False),
        "each parameter's gradient was clipped on its own: clip_grad_norm_ on model.parameters() rescales them "
        "together, by their global norm": {name: params[name].detach() - lr * min(1.0, max_norm / (g.norm().item() + 1e-6)) * g
                                           for name, g in grads.items()},
        "the gradient entries were clamped (clip_grad_value_) instead of rescaling the global norm (clip_grad_norm_)":
            {name: params[name].detach() - lr * g.clamp(-max_norm, max_norm) for name, g in grads.items()},
        "no parameter changed: is zero_grad() called after backward(), or step() never called?":
            {name: p.detach() for name, p in params.items()},
        "only the output layer learned: the LSTM's output is detached, so no gradient reaches the LSTM":
            step({name: g if name.startswith("output.") else torch.zeros_like(g) for name, g in grads.items()}),
    }
    if stale is not None:
        mistakes["the earlier gradients left in .grad were added to the new ones: call optimizer.zero_grad() "
                 "before backward()"] = step({name: g + stale[name].double() for name, g in grads.items()})
    return loss.detach(), logits.detach(), after, norm, mistakes


@pytest.mark.points(1.5, question="2.1 (a)")  # x 2 cases
@pytest.mark.parametrize("max_norm", [0.05, 100.0])
def test_train_step_loss_clipping_and_update(run, max_norm):
    """train_step: mean cross-entropy over B*T, global-norm clipping, one optimiser step."""
    weights, x, y, lr = make_weights(seed=2), ids(seed=3), ids(seed=4), 0.5
    # Without clipping, .grad starts with an earlier step's gradients, which train_step must clear.
    stale = None if max_norm < 1 else make_weights(seed=9)
    want_loss, want_logits, want_params, norm, mistakes = expected_update(weights, x, y, lr, max_norm, stale)
    assert (norm > max_norm) == (max_norm < 1), "test set-up: clipping in one case only"
    got = run_explained(run, "train_step raised an error. If F.cross_entropy raised it: it takes logits (N, V) and "
                             "targets (N,), so flatten the (B, T, V) logits and the (B, T) targets first",
                        one_train_step, weights=weights, x=x, y=y, lr=lr, max_norm=max_norm, stale_grads=stale)
    loss = got["loss"]
    for factor, mistake in ((B * T, "summed over the B*T predictions instead of averaged"),
                            (T, "averaged over the batch but summed over time")):
        require(not is_close(loss, want_loss * factor), f"the loss is {mistake}: average over all B*T = {B * T}")
    misaligned = F.cross_entropy(want_logits.transpose(0, 1).reshape(-1, V), y.reshape(-1))
    require(not is_close(loss, misaligned), "the logits and the targets are flattened in different orders (one "
                                            "time-major, one batch-major): reshape both (B, T, ...) the same way")
    assert_close(loss, want_loss, f"the loss is not the cross-entropy averaged over all B*T = {B * T} predictions "
                                  "(targets[:, t] is already the character after inputs[:, t])")
    assert list(got["logits"].shape) == [B, T, V], f"logits of shape {list(got['logits'].shape)}"
    if not is_close(got["logits"], want_logits) and is_close(got["logits"], reference_forward(want_params, x)[0]):
        pytest.fail("the logits returned were computed after the step: return those the loss came from", pytrace=False)
    assert_close(got["logits"], want_logits, "the logits returned are not those of the batch (before the step)")
    assert set(got["parameters"]) == set(want_params)
    clipping = (f"the gradient's global norm {norm:.3f} is above max_norm={max_norm}: scale the whole gradient "
                "(all parameters together) to norm max_norm" if norm > max_norm
                else f"the gradient's global norm {norm:.3f} is below max_norm={max_norm}: no clipping; "
                "but .grad held an earlier step's gradients: clear them before backward()")
    if not all(is_close(got["parameters"][name], want) for name, want in want_params.items()):
        for mistake, params in mistakes.items():
            if all(is_close(got["parameters"][name], p) for name, p in params.items()):
                pytest.fail(f"the parameters after one SGD step are what they would be if {mistake}", pytrace=False)
    for name, want in want_params.items():
        assert_close(got["parameters"][name], want, f"{name} after one SGD step ({clipping})")


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
    start = make_weights(PERIOD, 16, 2, seed=0, scale=16 ** -0.5)  # nn.LSTM's own init range
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


def assert_ids(got, batch, what="sample_next"):
    """``got`` is a LongTensor (batch,); the message names the usual shape mistakes."""
    require(isinstance(got, torch.Tensor), f"{what} must return a LongTensor (B,), not a {type(got).__name__}")
    shape = tuple(got.shape)
    require(shape != (), f"{what} returned one number for {batch} rows: take the argmax over each row, dim=-1")
    require(shape != (batch, 1), f"{what} returned shape {shape}: return (B,), without keepdim (squeeze(-1))")
    require(shape == (batch,), (f"{what} returned shape {shape} for {batch} rows, not ({batch},)"
                               + (": the argmax was taken over the batch (dim 0) instead of each row (dim -1)"
                                  if shape == (V,) else "")))
    require(got.dtype == torch.long, f"{what} must return a LongTensor (B,), not {got.dtype}")


@pytest.mark.points(1, question="2.1 (b)")
def test_greedy_is_argmax_and_deterministic(run):
    """sample_next at temperature 0 returns the argmax of each row, the same every time."""
    logits = torch.randn(50, V, generator=torch.Generator().manual_seed(0))
    first = run(draws, logits=logits, temperature=0.0, seed=1)
    second = run(draws, logits=logits, temperature=0.0, seed=2)
    assert_ids(first, 50)
    require(torch.equal(second, first),
            "at temperature 0, sample_next must not depend on the generator: it is greedy (argmax), not sampling")
    assert torch.equal(first, logits.argmax(-1)), "at temperature 0, sample_next must return each row's argmax"


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
    assert isinstance(out, torch.Tensor), f"generate must return a LongTensor (B, length), not a {type(out).__name__}"
    assert out.shape == (3, 29), f"generate returned shape {tuple(out.shape)} for 3 prompts and 29 characters" + (
        ": stack the characters along dim=1, (B, length)" if out.shape == (29, 3) else
        ": return the generated characters only, without the prompt" if out.shape == (3, 30) else
        ": one character short; generate exactly `length` new characters" if out.shape == (3, 28) else "")
    want = argmax_decoding(weights, prompt, 29)
    named = decoding_mistakes(reference_forward, weights, prompt, 29) if decoding_mistakes else {}
    for mistake, wrong in named.items():
        assert torch.equal(out, want) or not torch.equal(out, wrong), f"greedy generation: {mistake}"
    assert torch.equal(out, want), f"greedy generation\n{out}\nis not argmax decoding\n{want}"
    assert torch.equal(again, out), (
        "a second greedy generation with the same model and prompt differs from the first: "
        "each call of generate starts from the zero state, not from the previous call's")


# ---------------------------------------------------------------- 2.1 (c) temperature


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return (((counts - expected) ** 2) / expected).sum().item()


def temperature_mistake(counts, logits, temperature):
    """The name of a common mistake whose distribution explains the ``counts`` of one row, or ''."""
    df = CHI2_999[len(counts) - 1]
    if counts[logits.argmax()] == counts.sum():
        return "every sample is the argmax: at temperature > 0, sample from softmax(logits / tau)"
    if temperature != 1 and chi_square(counts, torch.softmax(logits.double() * temperature, -1)) < df:
        return "the logits are multiplied by the temperature instead of divided by it"
    if temperature != 1 and chi_square(counts, torch.softmax(logits.double(), -1)) < df:
        return ("the temperature has no effect: divide the logits by tau before the softmax "
                "(dividing the probabilities after it changes nothing once they are renormalised)")
    return ""


@probe
def sampled_generation(load, weights, prompt, length, temperature, seed):
    """generate(model, prompt, length, temperature, a generator seeded with ``seed``)."""
    return load("part2.sampling").generate(build_model(load, weights), prompt, length, temperature=temperature,
                                           generator=torch.Generator().manual_seed(seed))


SAMPLING_WEIGHTS = {"vocab": V, "hidden": H, "layers": LAYERS, "seed": 1}  # next-character probabilities 0.004-0.6


@pytest.mark.points(1, question="2.1 (c)")  # x 3 temperatures
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_frequencies_follow_softmax(run, temperature):
    """Sampled frequencies match softmax(logits / tau) (chi-square, 0.1% level, fixed seed), for
    sample_next and for the first character generate samples."""
    rows = torch.tensor([[1.0, 0.0, -0.5, 0.5, -1.0], [-1.0, 1.5, 0.0, 0.2, 0.1]])
    n = 20000
    logits = rows.repeat_interleave(n, dim=0)  # (2n, 5): every row of a batch is sampled on its own
    got = run(draws, logits=logits, temperature=temperature, seed=0)
    assert_ids(got, 2 * n)
    assert 0 <= got.min() and got.max() < 5, "sample_next returned ids outside the vocabulary"
    for r, row in enumerate(rows):
        counts = torch.bincount(got[r * n:(r + 1) * n], minlength=5).double()
        probs = torch.softmax(row.double() / temperature, dim=-1)
        stat = chi_square(counts, probs)
        mistake = temperature_mistake(counts, row, temperature)
        across = torch.exp(rows.double() / temperature)  # a softmax over the batch: each column sums to 1
        across = across[r] / across.sum(dim=0)
        if not mistake and stat >= CHI2_999[4] and chi_square(counts, across / across.sum()) < CHI2_999[4]:
            mistake = "the softmax normalises over the batch (dim 0) instead of each row's vocabulary (dim -1)"
        require(stat < CHI2_999[4], (f"{mistake + ': ' if mistake else ''}tau={temperature}, row {r}: frequencies "
                                    f"{(counts / n).tolist()} are far from softmax(logits/tau) = {probs.tolist()} "
                                    f"(chi2 {stat:.1f})"))
    # generate samples its first character from the prompt's last logits at the same temperature.
    weights, prompt = make_weights(**SAMPLING_WEIGHTS), ids(batch=1, steps=3, seed=1)
    out = run(sampled_generation, weights=weights, prompt=prompt.expand(n, 3).contiguous(), length=1,
              temperature=temperature, seed=0)
    assert isinstance(out, torch.Tensor) and out.shape == (n, 1), (
        f"generate returned {tuple(getattr(out, 'shape', ()))} for {n} prompts and 1 character")
    with torch.no_grad():
        last = reference_forward(weights, prompt)[0][0, -1]
    counts = torch.bincount(out[:, 0], minlength=V).double()
    probs = torch.softmax(last / temperature, dim=-1)
    stat = chi_square(counts, probs)
    mistake = temperature_mistake(counts, last, temperature)
    require(stat < CHI2_999[6], (f"{mistake + ': ' if mistake else ''}generate(prompt, 1, temperature={temperature}): "
                                f"the first characters' frequencies {(counts / n).tolist()} are far from "
                                f"softmax(logits/tau) = {probs.tolist()} (chi2 {stat:.1f}): pass the temperature "
                                "and the last logits (logits[:, -1]) of the prompt to sample_next"))


class RecordingModel(torch.nn.Module):
    """Wraps a model and records every call: the ids it is given, the state given and returned, the logits."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, state=None):
        logits, new = self.model(x, state)
        self.calls.append({"ids": x.clone(), "state_in": None if state is None else [s.clone() for s in state],
                           "state_out": [s.clone() for s in new], "logits": logits.clone()})
        return logits, new

    def __getattr__(self, name):  # model.vocab_size and the like: the wrapped model's
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if model is None:
                raise
            return getattr(model, name)


@probe
def recorded_generation(load, weights, prompt, length, temperature=0.0, seed=None):
    """generate() on a RecordingModel: the characters and every call generate made to the model."""
    recording = RecordingModel(build_model(load, weights))
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    out = load("part2.sampling").generate(recording, prompt, length, temperature=temperature, generator=generator)
    return {"ids": out, "calls": recording.calls}


def greedy_choices(got, p, length):
    """The argmax of the recorded logits after each generated position's text, and all those logits."""
    logits = torch.cat([call["logits"] for call in got["calls"]], dim=1)  # after each character fed
    return logits[:, p - 1:p - 1 + length].argmax(-1), logits


def assert_generation_calls(got, prompt, length, greedy=True):
    """How generate ran the model, from the calls the probe recorded: the prompt, then each generated
    character fed back once, each call starting from the state the previous one returned; greedily,
    each character the argmax of the logits after the text before it. (The student's side reports
    these calls; what was generated is checked independently, against the check's own decoding.)"""
    out, calls = got["ids"], got["calls"]
    batch, p = prompt.shape
    assert isinstance(out, torch.Tensor), f"generate must return a LongTensor (B, length), not a {type(out).__name__}"
    assert tuple(out.shape) == (batch, length), (
        f"generate returned shape {tuple(out.shape)} for {batch} prompts and {length} characters")
    if not length:
        return
    fed = [call["ids"] for call in calls]
    total = sum(f.shape[1] for f in fed)
    require(total <= p + length, f"the model was run on {total} characters for a {p} + {length} text: "
                                 "carry the state instead of re-running the text")
    text = torch.cat([prompt, out], dim=1)
    start = 0
    for k, (x, call) in enumerate(zip(fed, calls)):
        where = text[:, start:start + x.shape[1]]
        if not torch.equal(x, where):
            if 0 < start < p:
                pytest.fail(f"only the prompt's first {start} character(s) were run before generating: run the "
                            "whole prompt", pytrace=False)
            if k == 0 and x.shape[1] < p and torch.equal(x, prompt[:, p - x.shape[1]:]):
                pytest.fail(f"only the prompt's last {x.shape[1]} character(s) were run, from the zero state: run "
                            "the whole prompt", pytrace=False)
            if start >= p and k and torch.equal(x[:, -1], calls[k - 1]["logits"][:, -1].argmax(-1)) and not greedy:
                pytest.fail("the argmax was fed back to the model instead of the character that was sampled",
                            pytrace=False)
            pytest.fail(f"model call {k} was given {x.tolist()}, not the text there, {where.tolist()}: run the "
                        "prompt, then feed back each generated character in turn", pytrace=False)
        if k == 0:
            require(call["state_in"] is None or all(not s.any() for s in call["state_in"]),
                    "the first call of the model must start from the zero state (None), not a state left from before")
        else:
            before, given = calls[k - 1]["state_out"], call["state_in"]
            require(given is not None,
                    f"model call {k} started from the zero state: pass the (h, c) the previous call returned")
            if not (torch.equal(given[0], before[0]) and torch.equal(given[1], before[1])):
                if torch.equal(given[0], before[0]) and not given[1].any():
                    pytest.fail("only h is carried from one step to the next; c restarts from zero: carry (h, c)",
                                pytrace=False)
                pytest.fail(f"model call {k} did not start from the (h, c) the previous call returned", pytrace=False)
        start += x.shape[1]
    assert start >= p + length - 1, (
        f"the model was run on {start} characters: the prompt ({p}) and the first {length - 1} generated ones at least")
    if greedy:
        chosen, logits = greedy_choices(got, p, length)
        if not torch.equal(out, chosen):
            if p > 1 and torch.equal(out[:, 0], logits[:, 0].argmax(-1)):
                pytest.fail("the first character was picked from logits[:, 0], the prediction after the prompt's "
                            "first character: use logits[:, -1]", pytrace=False)
            j = (out != chosen).any(0).int().argmax().item()
            pytest.fail(f"generated character {j} is not the argmax of the logits the model returned after the "
                        "text before it", pytrace=False)


@pytest.mark.points(1, question="2.1 (c)")
def test_temperature_sampling_uses_the_generator(run):
    """The same seeded generator gives the same samples; the samples are not all the argmax; generate
    samples with the generator it is given and feeds back what it sampled."""
    logits = torch.randn(200, V, generator=torch.Generator().manual_seed(3))
    a = run(draws, logits=logits, temperature=1.0, seed=11)
    b = run(draws, logits=logits, temperature=1.0, seed=11)
    c = run(draws, logits=logits, temperature=1.0, seed=12)
    assert torch.equal(a, b), "two generators seeded alike gave different samples: draw with the generator given"
    assert not torch.equal(a, c), "generators seeded differently gave the same samples: draw with the generator given"
    assert not torch.equal(a, logits.argmax(-1)), "at temperature 1 the samples were all the argmax"
    weights, prompt = make_weights(**SAMPLING_WEIGHTS), ids(batch=B, steps=3, seed=6)
    a, b, c = (run(recorded_generation, weights=weights, prompt=prompt, length=30, temperature=1.0, seed=seed)
               for seed in (11, 11, 12))
    assert_generation_calls(a, prompt, 30, greedy=False)
    assert torch.equal(a["ids"], b["ids"]), (
        "generate with two generators seeded alike gave different texts: pass the generator to sample_next")
    assert not torch.equal(a["ids"], c["ids"]), (
        "generate with generators seeded differently gave the same texts: pass the generator to sample_next")
    assert not torch.equal(a["ids"], greedy_choices(a, 3, 30)[0]), (
        "generate at temperature 1 picked the argmax every time: pass the temperature to sample_next")


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
    """A negative (or non-finite: NaN, and with it infinity) temperature raises ValueError."""
    for tau in [temperature] if temperature < 0 else [temperature, float("inf")]:
        error = run(error_raised, logits=torch.zeros(2, V), temperature=tau)
        nan = (" (NaN fails every comparison: `temperature < 0` is False for it; test `not temperature >= 0`)"
               if tau != tau else "")
        assert error is not None, f"sample_next(logits, temperature={tau}) raised nothing: raise ValueError{nan}"
        assert error["value_error"], (
            f"sample_next(logits, temperature={tau}) raised {error['raised']}: {error['message']}, not ValueError"
            + (": an assert is not input validation (python -O removes it); raise ValueError"
               if error["raised"] == "AssertionError" else ""))
        assert "temperature" in error["message"], (
            f"the ValueError's message should mention the temperature: {error['message']!r}")


# ---------------------------------------------------------------- 2.2 long generation


@pytest.mark.points(2, question="2.2")
def test_generation_carries_the_state(run):
    """A 200-character continuation feeds each new character once, carrying (h, c)."""
    weights = make_weights(V, GEN_H, LAYERS, seed=7, scale=3.0)
    prompt = ids(steps=5, seed=8)
    got = run(recorded_generation, weights=weights, prompt=prompt, length=200)
    # The calls are reported by the child: they say *how* generate ran the model, and only the
    # student's code can report them. *What* it generated is checked independently, against the
    # check's own argmax decoding from the weights.
    assert_generation_calls(got, prompt, 200)
    out, want = got["ids"], argmax_decoding(weights, prompt, 200)
    assert torch.equal(out, want), (
        f"greedy generation differs from argmax decoding from character {(out != want).any(0).int().argmax()} on")
    none = run_explained(run, "generate(model, prompt, 0) failed: 0 characters is a valid length",
                         recorded_generation, weights=weights, prompt=prompt, length=0)
    assert_generation_calls(none, prompt, 0)


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
