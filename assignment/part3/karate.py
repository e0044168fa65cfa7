"""Node classification on Zachary's karate club (1977) with a two-layer GCN, against an MLP
that sees the same features but not the graph.

The club split into two factions, one around the instructor ("Mr. Hi", node 0) and one around
the administrator ("Officer", node 33). The task: label every member from a few labelled ones.
There are no node features, so each node gets a one-hot identity feature (as in Kipf and
Welling's karate demo); all that can tell two members apart is then where they sit in the graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gcn import GCN, normalized_adjacency
from .full_batch import fit

FACTIONS = ("Mr. Hi", "Officer")
LEADERS = (0, 33)  # the two nodes the factions formed around


@dataclass
class KarateClub:
    graph: nx.Graph
    adj: Tensor       # (34, 34) unweighted, symmetric, no self-loops
    features: Tensor  # (34, 34) one-hot node identities
    labels: Tensor    # (34,) 0 = Mr. Hi, 1 = Officer


def karate_club(dtype: torch.dtype = torch.float32) -> KarateClub:
    """The karate club as shipped with networkx (no download), ignoring its edge weights."""
    graph = nx.karate_club_graph()
    nodes = sorted(graph.nodes)
    adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=nodes, weight=None), dtype=dtype)
    labels = torch.tensor([FACTIONS.index(graph.nodes[v]["club"]) for v in nodes])
    return KarateClub(graph, adj, torch.eye(len(nodes), dtype=dtype), labels)


def labelled_nodes(labels: Tensor, per_class: int | None, seed: int) -> Tensor:
    """Indices of the labelled (training) nodes: ``per_class=None`` gives the two leaders,
    otherwise ``per_class`` nodes drawn at random from each faction (with ``seed``)."""
    if per_class is None:
        return torch.tensor(LEADERS)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(int(labels.max()) + 1):
        members = (labels == c).nonzero().flatten().numpy()
        if not 1 <= per_class <= len(members):
            raise ValueError(f"per_class must be between 1 and {len(members)}, got {per_class}")
        chosen.extend(rng.choice(members, size=per_class, replace=False).tolist())
    return torch.tensor(sorted(chosen))


class MLP(nn.Module):
    """The baseline without the graph: the same two layers as ``GCN`` with ``A_hat = I``.
    ``forward(adj_hat, x)`` ignores ``adj_hat`` so that both models train with the same code."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def embed(self, adj_hat: Tensor, x: Tensor) -> Tensor:
        return self.net[:3](x)

    def forward(self, adj_hat: Tensor, x: Tensor) -> Tensor:
        return self.net(x)


MODELS = {"gcn": GCN, "mlp": MLP}
DEFAULTS = dict(hidden=16, dropout=0.5, lr=0.01, weight_decay=5e-4, epochs=200)  # Kipf and Welling's


def train_once(model_name: str, club: KarateClub, train_idx: Tensor, seed: int,
               **settings) -> tuple[nn.Module, float]:
    """Train one model (``"gcn"`` or ``"mlp"``) on the labelled nodes ``train_idx``; return it
    and its accuracy on all the other nodes. ``settings`` override ``DEFAULTS``."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    torch.manual_seed(seed)
    model = MODELS[model_name](club.features.shape[1], s["hidden"], len(FACTIONS), s["dropout"])
    adj_hat = normalized_adjacency(club.adj)
    fit(model, lambda: F.cross_entropy(model(adj_hat, club.features)[train_idx], club.labels[train_idx]),
        steps=s["epochs"], lr=s["lr"], weight_decay=s["weight_decay"])
    test = torch.ones(len(club.labels), dtype=torch.bool)
    test[train_idx] = False
    with torch.no_grad():
        predicted = model(adj_hat, club.features).argmax(dim=1)
    return model, (predicted[test] == club.labels[test]).float().mean().item()


def accuracy_over_seeds(seeds, per_class: int | None, club: KarateClub | None = None,
                        **settings) -> dict[str, list[float]]:
    """Test accuracy of the GCN and the MLP for each seed (the seed draws the labelled nodes
    when ``per_class`` is a number, and always the initial weights and dropout masks)."""
    club = club or karate_club()
    results: dict[str, list[float]] = {name: [] for name in MODELS}
    for seed in seeds:
        train_idx = labelled_nodes(club.labels, per_class, seed)
        for name in MODELS:
            results[name].append(train_once(name, club, train_idx, seed, **settings)[1])
    return results
