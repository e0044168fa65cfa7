"""A GNN inside an RNN: a graph convolutional recurrent network over snapshots of a changing
graph (Question 3.3 (b)).

At every time step ``t`` a GCN layer mixes each node's input with its neighbours' in the current
snapshot ``A_t``; a GRU cell per node (weights shared by all nodes) then folds the result into
that node's memory. This is the first model of Seo et al. (2018), "GCRN": the GCN handles space,
the GRU handles time.

The toy task needs both: node ``i``'s target is the sum over time of its neighbourhood
averages, ``y = sum_t A_hat_t x_t``, on snapshots whose edges come and go. Without the graph a
model sees only ``x_{t,i}``; without memory it sees only the last snapshot.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .gcn import GCNLayer, block_diagonal, check_adjacency, normalized_adjacency

__all__ = ["GCRN", "changing_graph_task"]


class GCRN(nn.Module):
    """``h_i <- GRU(GCN(A_hat_t, x_t)_i, h_i)`` for ``t = 1..T``, then a linear read-out per node.

    ``forward(adj_hats, xs)``: ``adj_hats`` is a list of ``T`` normalised ``(n, n)`` adjacencies
    (dense or sparse), ``xs`` has shape ``(T, n, in_features)``; returns ``(n, out_features)``.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.gcn = GCNLayer(in_features, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.readout = nn.Linear(hidden, out_features)

    def forward(self, adj_hats: list[Tensor], xs: Tensor) -> Tensor:
        if len(adj_hats) != xs.shape[0]:
            raise ValueError(f"got {len(adj_hats)} snapshots but {xs.shape[0]} time steps of features")
        h = xs.new_zeros(xs.shape[1], self.gru.hidden_size)
        for adj_hat, x in zip(adj_hats, xs):
            h = self.gru(self.gcn(adj_hat, x), h)
        return self.readout(h)


def changing_graph_task(adj: Tensor, num_graphs: int, steps: int, keep: float = 0.7,
                        seed: int = 0) -> tuple[list[Tensor], Tensor, Tensor]:
    """``num_graphs`` independent sequences of ``steps`` snapshots of the undirected graph ``adj``
    ``(n, n)``, each edge kept with probability ``keep`` in each snapshot, with random node signals.

    Returns ``(adj_hats, xs, y)``, all graphs batched into one block-diagonal graph of
    ``N = num_graphs * n`` nodes: ``adj_hats`` is a list of ``steps`` sparse normalised ``(N, N)``
    adjacencies, ``xs`` is ``(steps, N, 1)`` with standard normal entries, and the target ``y``,
    ``(N, 1)``, is ``sum_t A_hat_t x_t / sqrt(steps)``.
    """
    adj = check_adjacency(adj)
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu(adj, diagonal=1)
    adj_hats = []
    for _ in range(steps):
        snapshots = []
        for _ in range(num_graphs):
            kept = upper * (torch.rand(adj.shape, generator=g) < keep)
            snapshots.append(kept + kept.T)
        adj_hats.append(normalized_adjacency(block_diagonal(snapshots)))
    xs = torch.randn(steps, num_graphs * adj.shape[0], 1, generator=g)
    y = sum(torch.sparse.mm(a, x) for a, x in zip(adj_hats, xs)) / steps ** 0.5
    return adj_hats, xs, y
