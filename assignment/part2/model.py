"""``TextGenerationModel``: a stacked character LSTM that predicts the next character.

Shapes (B: batch, T: time steps, V: vocabulary size, H: hidden units, N: layers):

    ids (B, T) --one-hot--> (B, T, V) --nn.LSTM(N layers)--> (B, T, H) --Linear--> logits (B, T, V)

The state ``(h, c)`` has two tensors of shape (N, B, H). ``forward`` starts from the state it is
given (zeros when None) and returns the state after the last step, so a long text can be run
piece by piece: running ``ids[:, :5]`` and then ``ids[:, 5:]`` with the returned state gives the
same logits as running ``ids`` at once. That is what generation (Question 2.2) relies on.

The input is the one-hot vector of each character, as in 2019. (An ``nn.Embedding(V, V)`` would
learn the same thing: the first layer's input weights already multiply a one-hot vector.)

    >>> import torch
    >>> model = TextGenerationModel(vocab_size=5, hidden=8, num_layers=2)
    >>> logits, (h, c) = model(torch.tensor([[0, 1, 2], [3, 4, 0]]))
    >>> tuple(logits.shape), tuple(h.shape), tuple(c.shape)
    ((2, 3, 5), (2, 2, 8), (2, 2, 8))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class TextGenerationModel(nn.Module):
    """Stacked character LSTM (the sizes the course trains are the settings of ``train.Config``).

    Args:
        vocab_size: V, the number of distinct characters.
        hidden: H, the hidden units of each LSTM layer.
        num_layers: N, the stacked LSTM layers.
        dropout: dropout between the LSTM layers (2019: keep probability 1.0, i.e. 0.0).
    """

    def __init__(self, vocab_size: int, hidden: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.vocab_size, self.hidden, self.num_layers = vocab_size, hidden, num_layers
        # Create the layers: ``self.lstm``, an nn.LSTM with input size V, H hidden units, N layers
        # and batch_first=True (inputs (B, T, V)); ``self.output``, an nn.Linear from H to V.
        raise NotImplementedError("Question 2.1 (a): create the LSTM and the output layer")

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits of the next character after each position, and the final state.

        Args:
            ids: LongTensor (B, T) of character ids.
            state: (h, c), each (N, B, H), the state before the first step; None means zeros.

        Returns:
            logits: (B, T, V); ``logits[b, t]`` scores the character that follows ``ids[b, t]``.
            state: (h, c), each (N, B, H), after the last step.

        One-hot encode ``ids`` as floats (``F.one_hot``), run ``self.lstm`` from ``state`` and apply
        ``self.output`` at every time step.
        """
        raise NotImplementedError("Question 2.1 (a): implement TextGenerationModel.forward")
