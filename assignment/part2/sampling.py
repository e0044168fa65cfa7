"""Sampling text from the model: greedy, with a temperature, and long generation that carries the state.

With logits $z$ for the next character, temperature $\\tau$ samples from

    p_tau(k) = softmax(z / tau)_k = exp(z_k / tau) / sum_j exp(z_j / tau).

tau = 1 is the model's own distribution, tau < 1 sharpens it, tau > 1 flattens it, and tau -> 0
puts all the mass on the largest logit: temperature 0 *is* greedy decoding (argmax).

    >>> import torch
    >>> sample_next(torch.tensor([[0.1, 2.0, -1.0]]), temperature=0.0)
    tensor([1])
"""
from __future__ import annotations

import torch

from .dataset import decode, encode


def sample_next(logits: torch.Tensor, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One next character per row of ``logits``.

    Args:
        logits: (B, V), unnormalised scores of the next character.
        temperature: 0 for greedy (the argmax of each row); tau > 0 to sample from softmax(logits / tau).
        generator: the random generator for ``torch.multinomial`` (on the device of ``logits``).

    Returns:
        LongTensor (B,) of character ids.

    Raises:
        ValueError: for a negative or non-finite temperature, or one so small that logits / temperature
            overflows (use 0 for greedy).
    """
    raise NotImplementedError("Question 2.1 (b), (c): implement sample_next (greedy and with temperature)")


@torch.no_grad()
def generate(model, prompt: torch.Tensor, length: int, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each prompt by ``length`` characters, feeding each new character back in.

    Args:
        model: a ``TextGenerationModel`` (``model(ids, state) -> (logits, state)``).
        prompt: LongTensor (B, P), P >= 1, the first characters of each sequence.
        length: the number of characters to generate (any length: the state carries the past).
        temperature, generator: as in ``sample_next``.

    Returns:
        LongTensor (B, length), the generated characters (without the prompt).

    Run the whole prompt once, then repeat ``length`` times: pick the next character from the
    last logits with ``sample_next`` and run the model on that one character (B, 1), starting from
    the state ``(h, c)`` the previous call returned. Never re-run the text generated so far.
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be a LongTensor (B, P) with P >= 1, got shape {tuple(prompt.shape)}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    was_training = model.training
    model.eval()
    try:
        raise NotImplementedError("Question 2.1 (b) and 2.2: implement generate (carry the hidden and cell state)")
    finally:
        model.train(was_training)


def sample_text(model, vocab: list[str], prompts: list[str], length: int, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> list[str]:
    """Each prompt followed by ``length`` generated characters. Prompts of a batch must have equal length."""
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts of one batch must have the same length; generate them one at a time")
    device = next(model.parameters()).device
    ids = torch.stack([encode(vocab, p) for p in prompts]).to(device)
    new = generate(model, ids, length, temperature, generator)
    return [p + decode(vocab, row) for p, row in zip(prompts, new.cpu())]


def random_first_characters(vocab: list[str], n: int, generator: torch.Generator) -> list[str]:
    """``n`` characters drawn uniformly from the vocabulary (the 2019 'random first character')."""
    ids = torch.randint(0, len(vocab), (n,), generator=generator, device=generator.device)
    return [vocab[i] for i in ids.tolist()]
