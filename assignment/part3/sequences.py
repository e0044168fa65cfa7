"""A sequence as a chain graph, and a GCN that encodes a whole graph (Question 3.3 (a)).

A sequence ``x_1, ..., x_T`` becomes the path graph ``1 - 2 - ... - T`` with node features
``x_t``. The GCN sees who neighbours whom, but not which way the chain runs nor where a node
sits in it: reversing the sequence maps the chain onto itself, so a GCN that pools its node
states cannot tell a sequence from its reverse. Appending position features (``positions > 0``)
gives it back the order.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .gcn import GCNLayer, check_adjacency, check_features, normalized_adjacency

__all__ = ["chain_adjacency", "positional_encoding", "sequence_to_graph", "GraphEncoder"]


def chain_adjacency(length: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The undirected path graph ``0 - 1 - ... - (length - 1)``: ``(length, length)``, with
    ``adj[t, t + 1] = adj[t + 1, t] = 1`` and zeros elsewhere."""
    if length < 1:
        raise ValueError(f"a chain needs at least one node, got length {length}")
    ones = torch.ones(length - 1, dtype=dtype)
    return torch.diag(ones, 1) + torch.diag(ones, -1)


def positional_encoding(length: int, dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal positions (Vaswani et al., 2017), ``(length, dim)``:
    ``P[t, 2i] = sin(t / 10000^(2i / dim))`` and ``P[t, 2i + 1] = cos(t / 10000^(2i / dim))``."""
    if dim < 1:
        raise ValueError(f"positional encoding needs dim >= 1, got {dim}")
    t = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return pe.to(dtype)


def sequence_to_graph(x: Tensor, positions: int = 0) -> tuple[Tensor, Tensor]:
    """Turn a sequence ``x`` of shape ``(T, d)`` into a chain graph ``(adj, features)``.

    ``adj`` is ``chain_adjacency(T)`` (in ``x``'s dtype), ``(T, T)``; ``features`` is ``x`` itself,
    ``(T, d)``, or, when ``positions > 0``, ``x`` with ``positional_encoding(T, positions)``
    appended on the right, ``(T, d + positions)``.
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"a sequence must be a tensor of shape (T, d), got {getattr(x, 'shape', type(x))}")
    if positions < 0:
        raise ValueError(f"positions must be >= 0, got {positions}")
    raise NotImplementedError("Question 3.3 (a): implement sequence_to_graph (chain adjacency, optional positions)")


class GraphEncoder(nn.Module):
    """A graph-level GCN: ``num_layers`` GCN layers, then the mean over the nodes.

    ``forward(adj, x)`` takes a raw adjacency ``(n, n)`` (it normalises it itself) and node
    features ``(n, in_features)`` and returns one vector ``(out_features,)`` for the whole graph;
    ``node_states`` returns the ``(n, out_features)`` states before the mean (to encode many graphs
    at once, put them in one ``block_diagonal`` graph and average each graph's rows yourself).
    Hidden layers have width ``hidden`` and a tanh; the last layer has no activation.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, num_layers: int = 2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        sizes = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.layers = nn.ModuleList(
            GCNLayer(a, b, activation=torch.tanh if i < num_layers - 1 else None)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))

    def node_states(self, adj: Tensor, x: Tensor) -> Tensor:
        """``adj`` ``(n, n)``, ``x`` ``(n, in_features)`` -> ``(n, out_features)``: normalise
        ``adj`` with ``normalized_adjacency``, then apply the layers in turn."""
        adj = check_adjacency(adj)
        check_features(adj, x)
        raise NotImplementedError("Question 3.3 (a): implement GraphEncoder.node_states (normalise, then the layers)")

    def forward(self, adj: Tensor, x: Tensor) -> Tensor:
        """``adj`` ``(n, n)``, ``x`` ``(n, in_features)`` -> ``(out_features,)``: the mean over the
        nodes of ``node_states``, one vector for the whole graph."""
        raise NotImplementedError("Question 3.3 (a): implement GraphEncoder.forward (the mean of the node states)")
