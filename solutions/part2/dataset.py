"""``TextDataset``: random ``seq_length``-character pieces of a book and their next-character targets.

Reading the text, deliberately:

- The file must be UTF-8. Anything else is refused with the byte offset of the first bad byte.
- A **byte-order mark** (U+FEFF) at the very start is dropped: it is a note about the encoding,
  not text, and the 2019 code, which kept it, gave the model a character that occurs exactly once.
- **Line endings** are normalised to ``\\n`` (``\\r\\n`` and a lone ``\\r`` both become ``\\n``), as Python's
  text mode does. The model then never has to learn that ``\\r`` always precedes ``\\n``.
- The **vocabulary** is the sorted set of the remaining characters, so character ``i`` is the same
  in every run (the 2019 code used an unsorted set, whose order changes from run to run).

A piece starts at offset ``o``: the input is ``ids[o : o+L]`` and the target ``ids[o+1 : o+L+1]``,
the same characters shifted by one. Optionally a block in the middle of the text is held out
for validation (the beginning and end of a Gutenberg book are its header and licence); no
training piece overlaps it.

    >>> ds = TextDataset.from_text("hello world", seq_length=4)
    >>> ds.vocab
    [' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
    >>> x, y = ds[0]
    >>> ds.decode(x), ds.decode(y)
    ('hell', 'ello')
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

BOM = "\ufeff"


def read_text(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file without a leading byte-order mark, with ``\\n`` line endings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: byte {exc.start} is {data[exc.start:exc.start + 1]!r} "
                         f"({exc.reason}); convert the file to UTF-8 first") from None
    return normalise(text)


def encode(vocab: list[str], text: str) -> torch.Tensor:
    """Character ids of ``text`` in ``vocab``, LongTensor (len(text),); ValueError for unknown characters."""
    index = {ch: i for i, ch in enumerate(vocab)}
    missing = sorted(set(text) - index.keys())
    if missing:
        raise ValueError(f"characters {missing!r} are not in the vocabulary ({len(vocab)} characters)")
    return torch.tensor([index[ch] for ch in text], dtype=torch.long)


def decode(vocab: list[str], ids) -> str:
    """The text of a sequence of ids (a LongTensor (T,) or a list of ints)."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    bad = [i for i in ids if not 0 <= i < len(vocab)]
    if bad:
        raise ValueError(f"ids {bad[:5]} are outside the vocabulary 0..{len(vocab) - 1}")
    return "".join(vocab[i] for i in ids)


def normalise(text: str) -> str:
    """Drop a leading byte-order mark and turn ``\\r\\n`` and ``\\r`` into ``\\n``."""
    if text.startswith(BOM):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


class TextDataset(Dataset):
    """Pieces of ``seq_length`` characters of a text; ``ds[o]`` is the pair (input, target) at offset o.

    Args:
        filename: a UTF-8 text file.
        seq_length: L, the characters in one piece (2019 default: 30).
        valid_fraction: the share of the text held out in the middle for validation (0: none).
        valid_max_chars: at most this many held-out characters (keeps evaluation cheap on long books).

    Attributes:
        vocab: the sorted list of distinct characters; ``vocab_size = len(vocab)``.
        data: LongTensor (N,) of character ids of the whole text.
        valid_span: (start, stop), the held-out block ``data[start:stop]`` ((0, 0) if none).
    """

    def __init__(self, filename: str | os.PathLike, seq_length: int, valid_fraction: float = 0.0,
                 valid_max_chars: int | None = None, *, _text: str | None = None):
        if not isinstance(seq_length, int) or isinstance(seq_length, bool) or seq_length < 1:
            raise ValueError(f"seq_length must be a positive integer, got {seq_length!r}")
        if not 0.0 <= valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
        self.filename = str(filename)
        text = read_text(filename) if _text is None else normalise(_text)
        if not text:
            raise ValueError(f"{self.filename} is empty")
        self.seq_length = seq_length
        self.vocab = sorted(set(text))
        self.vocab_size = len(self.vocab)
        self.data = encode(self.vocab, text)

        n = len(text)
        held = int(n * valid_fraction)
        if valid_max_chars is not None:
            held = min(held, valid_max_chars)
        start = (n - held) // 2 if held else 0
        self.valid_span = (start, start + held)
        # Offsets o with data[o : o+L+1] inside the text and clear of the held-out block.
        before = max(start - seq_length, 0) if held else max(n - seq_length, 0)
        after = max(n - (start + held) - seq_length, 0) if held else 0
        self._before, self._after_start = before, start + held
        self._len = before + after
        if self._len == 0:
            raise ValueError(f"{self.filename} is too short: {n} characters"
                             f"{f' ({n - held} outside the held-out block)' if held else ''}, "
                             f"a piece needs seq_length + 1 = {seq_length + 1}")

    @classmethod
    def from_text(cls, text: str, seq_length: int, **kwargs) -> "TextDataset":
        """A dataset of a string instead of a file (for examples and tests)."""
        return cls("<text>", seq_length, _text=text, **kwargs)

    def __len__(self) -> int:
        """The number of distinct pieces (training offsets)."""
        return self._len

    def offset(self, index: int) -> int:
        """The text offset of piece ``index`` (skipping the held-out block)."""
        if not 0 <= index < self._len:
            raise IndexError(f"piece {index} out of range for {self._len} pieces")
        return index if index < self._before else self._after_start + index - self._before

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target), LongTensors (L,): ``data[o:o+L]`` and ``data[o+1:o+L+1]``."""
        o, L = self.offset(int(index)), self.seq_length
        return self.data[o:o + L], self.data[o + 1:o + L + 1]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the pieces of ``indices`` (B,) into inputs and targets, LongTensors (B, L)."""
        pairs = [self[i] for i in indices.tolist()]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def random_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of ``batch_size`` pieces at uniformly random offsets drawn with ``generator``."""
        return self.batch(torch.randint(0, self._len, (batch_size,), generator=generator))

    def valid_data(self) -> torch.Tensor:
        """The held-out character ids, LongTensor (held,)."""
        return self.data[self.valid_span[0]:self.valid_span[1]]

    def encode(self, text: str) -> torch.Tensor:
        """Character ids of ``text``, LongTensor (len(text),); ValueError for characters outside the vocabulary."""
        try:
            return encode(self.vocab, text)
        except ValueError as exc:
            raise ValueError(f"{self.filename}: {exc}") from None

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a LongTensor (T,) or a list of ints)."""
        return decode(self.vocab, ids)
