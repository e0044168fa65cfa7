"""The palindrome task of the 2019 assignment.

A palindrome of length L is ceil(L/2) random digits 0-9 followed by their mirror image, without
repeating the middle digit when L is odd: for L = 5, ``3 1 4`` becomes ``3 1 4 1 3``. The model
sees the first L - 1 digits, one scalar per time step, and predicts the last digit, which equals the
first: it must remember the first digit for L - 1 steps.

Two lengths are easy to confuse, so they have different names here:

* ``input_length`` (T): the number of digits the model sees, the training option of 2019 (default 10);
* ``palindrome_length`` (L): the length of the palindrome, always ``input_length + 1``.

>>> g = torch.Generator().manual_seed(0)
>>> x, y = palindrome_batch(batch_size=2, input_length=4, generator=g)
>>> x.shape, x.dtype, y.shape, y.dtype
(torch.Size([2, 4]), torch.float32, torch.Size([2]), torch.int64)
>>> bool((x[:, 0].long() == y).all())
True
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

NUM_CLASSES = 10  # the digits 0-9


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def palindromes(batch_size: int, palindrome_length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random palindromes of digits, as a long tensor of shape [batch_size, palindrome_length]."""
    _check_positive_int("batch_size", batch_size)
    if _check_positive_int("palindrome_length", palindrome_length) < 2:
        raise ValueError(f"palindrome_length must be at least 2 (one digit seen, one predicted), got {palindrome_length}")
    half = torch.randint(NUM_CLASSES, (batch_size, math.ceil(palindrome_length / 2)), generator=generator)
    mirror = half.flip(1)[:, palindrome_length % 2:]  # leave out the middle digit when the length is odd
    return torch.cat([half, mirror], dim=1)


def palindrome_batch(batch_size: int, input_length: int, generator: torch.Generator | None = None,
                     one_hot: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the task: the first ``input_length`` digits and the digit that follows.

    Returns ``x`` and ``y``:
      * ``x``: float32 [batch_size, input_length] (digits as scalars, input_dim = 1), or with
        ``one_hot=True`` float32 [batch_size, input_length, 10];
      * ``y``: int64 [batch_size], the last digit of each palindrome of length input_length + 1.
    """
    _check_positive_int("input_length", input_length)
    digits = palindromes(batch_size, input_length + 1, generator)
    x, y = digits[:, :-1], digits[:, -1]
    if one_hot:
        return torch.nn.functional.one_hot(x, NUM_CLASSES).float(), y
    return x.float(), y


def palindrome_stream(input_length: int, batch_size: int, seed: int = 0,
                      one_hot: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless, reproducible stream of batches: the same seed gives the same batches."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield palindrome_batch(batch_size, input_length, generator, one_hot)
