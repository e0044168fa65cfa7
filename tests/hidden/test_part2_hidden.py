"""Hidden graded tests of Part 2: not in the student release, counted by the autograder (1 point each).

They check the same questions as the public suite at other sizes (a vocabulary of 30 or 3, one or
three layers, a batch of one, other seeds), so that code fitted to the public sizes alone does not
collect every point. Gradescope shows them after the due date. They run the student's code only
through the public probes of ``tests/graded/test_part2_lstm.py``.
"""
from __future__ import annotations

import pytest
import torch

from tests.graded.test_part2_lstm import (GEN_H, argmax_decoding, assert_forward, assert_generation_calls, forward_mistake,
                                          forward_pass, ids, make_weights, random_state, recorded_generation,
                                          reference_forward)


@pytest.mark.points(1, question="2.1 (a)", visibility="after_due_date")
def test_forward_other_sizes(run):
    """forward with a vocabulary of 30 and one layer on a batch of one, and of 3 with three layers,
    from the zero state and from a random (h, c), matches nn.LSTM's."""
    for vocab, hidden, layers, batch, steps, seed in ((30, 5, 1, 1, 12, 11), (3, 4, 3, 2, 7, 12)):
        weights = make_weights(vocab, hidden, layers, seed=seed)
        x = ids(batch=batch, steps=steps, vocab=vocab, seed=seed + 1)
        setting = f"TextGenerationModel({vocab}, hidden={hidden}, num_layers={layers}) on ids ({batch}, {steps})"
        for start in (None, random_state(layers, batch, hidden, seed=seed + 2)):
            got = run(forward_pass, weights=weights, x=x, state=start)
            assert_forward(got, reference_forward(weights, x, start),
                           f"{setting} from {'the zero state' if start is None else 'a random (h, c)'}",
                           forward_mistake(got, weights, x, start))


@pytest.mark.points(1, question="2.2", visibility="after_due_date")
def test_long_generation_other_sizes(run):
    """Greedy generation with a vocabulary of 30 and three layers (a batch of one), and of 3 with one
    layer, carries (h, c) and equals argmax decoding."""
    for vocab, layers, batch, p, length, seed in ((30, 3, 1, 4, 80, 21), (3, 1, 2, 2, 60, 22)):
        weights = make_weights(vocab, GEN_H, layers, seed=seed, scale=3.0)
        prompt = ids(batch=batch, steps=p, vocab=vocab, seed=seed + 1)
        got = run(recorded_generation, weights=weights, prompt=prompt, length=length)
        assert_generation_calls(got, prompt, length)
        want = argmax_decoding(weights, prompt, length)
        assert torch.equal(got["ids"], want), (
            f"vocabulary {vocab}, {layers} layer(s), batch {batch}: greedy generation differs from argmax decoding "
            f"from character {(got['ids'] != want).any(0).int().argmax()} on")
