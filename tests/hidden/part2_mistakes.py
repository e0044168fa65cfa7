"""Common wrong generation loops of Part 2, run by the check of ``tests/graded/test_part2_lstm.py`` to name
the mistake a wrong greedy text follows. Written out, they are the right loop too (2.1 (b) and 2.2), so they
stay with the hidden tests, out of the student edition; without them the check still fails, without the name."""
from __future__ import annotations

import torch


@torch.no_grad()
def decoding_mistakes(forward, weights, prompt, length):
    """The greedy texts that common wrong generate loops give, by mistake: to name the mistake. ``forward(weights,
    ids, state) -> (logits, state)`` is the check's reference model."""
    def decode(carry=True, feed_first=False):
        logits, state = forward(weights, prompt)
        out = []
        for _ in range(length):
            out.append(logits[:, -1].argmax(-1))
            fed = out[0] if feed_first else out[-1]
            logits, state = forward(weights, fed[:, None], state if carry else None)
        return torch.stack(out, dim=1)
    return {"each new character is run from the zero state: carry the state from one step to the next":
            decode(carry=False),
            "the first generated character is fed back at every step instead of the newest": decode(feed_first=True)}
