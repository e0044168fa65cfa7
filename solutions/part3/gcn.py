"""The graph convolutional network (GCN) of Kipf and Welling (2017), from scratch.

One GCN layer maps node features ``H`` of shape ``(n, d_in)`` to ``(n, d_out)``::

    H' = sigma(A_hat @ H @ W),    A_hat = D~^(-1/2) (A + I) D~^(-1/2)

where ``A`` is the ``(n, n)`` adjacency matrix, ``I`` adds a self-loop to every node and
``D~`` is the diagonal matrix of the row sums (degrees) of ``A + I``.

Conventions used everywhere in this package:

* ``adj[i, j]`` is the weight of the edge along which node ``i`` *receives* from node ``j``,
  so row ``i`` of ``A_hat @ H`` mixes the features of node ``i``'s neighbours. An undirected
  graph has a symmetric ``adj``.
* An adjacency is a floating ``torch.Tensor``, either dense or sparse (``torch.sparse_coo``);
  every function returns the same layout it is given.

Two normalisations are provided, clearly apart:

* ``normalized_adjacency``: Kipf and Welling's symmetric ``D~^(-1/2) (A + I) D~^(-1/2)``;
* ``mean_adjacency``: the random-walk (mean) form ``D~^(-1) (A + I)``, whose row ``i`` averages
  node ``i``'s neighbourhood. Several tutorials write the first and implement the second.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "check_adjacency", "check_features", "add_self_loops", "degrees", "scale",
    "normalized_adjacency", "mean_adjacency", "edge_list", "propagate", "block_diagonal",
    "gcn_message_passing", "receptive_field", "GCNLayer", "GCN",
]


# --------------------------------------------------------------------------------------------
# Validation (complete: a wrong input gets a clear error, not a silent wrong result)
# --------------------------------------------------------------------------------------------

def check_adjacency(adj: Tensor) -> Tensor:
    """Check that ``adj`` is a valid ``(n, n)`` adjacency; return it (sparse: coalesced).

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and ``ValueError`` for a
    matrix that is not 2-D and square, that has negative entries, or NaN/inf entries.
    """
    if not isinstance(adj, Tensor):
        raise TypeError(f"adjacency must be a torch.Tensor, got {type(adj).__name__}; "
                        "use torch.as_tensor(..., dtype=torch.float32)")
    if adj.layout not in (torch.strided, torch.sparse_coo):
        raise TypeError(f"adjacency must be dense or sparse COO, got layout {adj.layout}; use .to_sparse_coo()")
    if not adj.dtype.is_floating_point:
        raise TypeError(f"adjacency must have a floating dtype, got {adj.dtype}; use adj.float()")
    if adj.dim() != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be a square (n, n) matrix, got shape {tuple(adj.shape)}")
    if adj.is_sparse:
        adj = adj.coalesce()
        values = adj.values()
    else:
        values = adj
    if not torch.isfinite(values).all():
        raise ValueError("adjacency has NaN or infinite entries")
    if (values < 0).any():
        raise ValueError(f"adjacency has negative entries (smallest {values.min().item():g}); "
                         "edge weights of a GCN must be >= 0")
    return adj


def check_features(adj: Tensor, h: Tensor, weight: Tensor | None = None) -> None:
    """Check that node features ``h`` of shape ``(n, d_in)`` fit ``adj`` of shape ``(n, n)``,
    and, if given, that ``weight`` has shape ``(d_in, d_out)``. Raises ``ValueError``."""
    if not isinstance(h, Tensor):
        raise TypeError(f"node features must be a torch.Tensor, got {type(h).__name__}")
    if h.dim() != 2:
        raise ValueError(f"node features must have shape (n, d), one row per node; got shape {tuple(h.shape)}")
    if h.shape[0] != adj.shape[0]:
        raise ValueError(f"adjacency is {adj.shape[0]}x{adj.shape[1]} but the features have {h.shape[0]} rows; "
                         "they need one row per node")
    if h.dtype != adj.dtype:
        raise TypeError(f"features are {h.dtype} but the adjacency is {adj.dtype}; use the same dtype")
    if weight is not None and (weight.dim() != 2 or weight.shape[0] != h.shape[1]):
        raise ValueError(f"weight must have shape (d_in, d_out) = ({h.shape[1]}, d_out) for features of "
                         f"shape {tuple(h.shape)}; got {tuple(weight.shape)}")


# --------------------------------------------------------------------------------------------
# Small helpers that work for dense and sparse adjacency alike (complete)
# --------------------------------------------------------------------------------------------

def add_self_loops(adj: Tensor) -> Tensor:
    """``A + I``, shape ``(n, n)``, in the layout of ``adj``."""
    n = adj.shape[0]
    if not adj.is_sparse:
        return adj + torch.eye(n, dtype=adj.dtype, device=adj.device)
    loops = torch.arange(n, device=adj.device).expand(2, n)
    eye = torch.sparse_coo_tensor(loops, torch.ones(n, dtype=adj.dtype, device=adj.device), (n, n),
                                  check_invariants=True)
    return (adj + eye).coalesce()


def degrees(adj: Tensor) -> Tensor:
    """Row sums ``d_i = sum_j adj[i, j]``, a dense vector of shape ``(n,)``."""
    if adj.is_sparse:
        return torch.sparse.sum(adj, dim=1).to_dense()
    return adj.sum(dim=1)


def scale(adj: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``diag(left) @ adj @ diag(right)``, i.e. entry ``(i, j)`` times ``left[i] * right[j]``.

    ``left`` and ``right`` have shape ``(n,)``; the result has the layout of ``adj``.
    """
    if not adj.is_sparse:
        return left[:, None] * adj * right[None, :]
    adj = adj.coalesce()
    rows, cols = adj.indices()
    values = adj.values() * left[rows] * right[cols]
    return torch.sparse_coo_tensor(adj.indices(), values, adj.shape, check_invariants=True).coalesce()


def edge_list(adj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The non-zero entries of ``adj`` as edges ``(receivers, senders, weights)``, each ``(E,)``.

    Entry ``adj[i, j] = w`` is the edge along which node ``i`` receives ``w`` times node ``j``'s
    message, so ``receivers[e] = i``, ``senders[e] = j``, ``weights[e] = w``.
    """
    if adj.is_sparse:
        adj = adj.coalesce()
        receivers, senders = adj.indices()
        return receivers, senders, adj.values()
    receivers, senders = adj.nonzero(as_tuple=True)
    return receivers, senders, adj[receivers, senders]


def propagate(adj_hat: Tensor, h: Tensor) -> Tensor:
    """``adj_hat @ h``, shape ``(n, d)``, for a dense or a sparse ``adj_hat`` of shape ``(n, n)``."""
    return torch.sparse.mm(adj_hat, h) if adj_hat.is_sparse else adj_hat @ h


def block_diagonal(adjs: list[Tensor]) -> Tensor:
    """Batch graphs into one big graph: the sparse block-diagonal ``(sum n_b, sum n_b)`` matrix of
    the ``(n_b, n_b)`` adjacencies ``adjs``, so that no message crosses from one graph to another."""
    indices, values, offset = [], [], 0
    for adj in adjs:
        adj = check_adjacency(adj).to_sparse_coo().coalesce()
        indices.append(adj.indices() + offset)
        values.append(adj.values())
        offset += adj.shape[0]
    return torch.sparse_coo_tensor(torch.cat(indices, 1), torch.cat(values), (offset, offset),
                                   check_invariants=True).coalesce()


# --------------------------------------------------------------------------------------------
# Question 3.1 (a): the normalised adjacency and the layer
# --------------------------------------------------------------------------------------------

def normalized_adjacency(adj: Tensor) -> Tensor:
    """Kipf and Welling's symmetric normalisation ``A_hat = D~^(-1/2) (A + I) D~^(-1/2)``.

    ``adj``: ``(n, n)``, dense or sparse; returns ``(n, n)`` in the same layout. ``D~`` is the
    diagonal of the row sums of ``A + I``, so that ``A_hat[i, j] = (A + I)[i, j] / sqrt(d~_i d~_j)``.
    Every node has ``d~_i >= 1`` thanks to its self-loop, so an isolated node is no problem.

    Use ``add_self_loops``, ``degrees`` and ``scale`` (they handle dense and sparse for you).
    Example, the path 0 - 1 - 2 (degrees with self-loops 2, 3, 2)::

        [[1/2,     1/sqrt6, 0      ],
         [1/sqrt6, 1/3,     1/sqrt6],
         [0,       1/sqrt6, 1/2    ]]
    """
    adj = check_adjacency(adj)
    ### BEGIN SOLUTION Question 3.1 (a): implement normalized_adjacency, D~^(-1/2) (A + I) D~^(-1/2)
    a_tilde = add_self_loops(adj)
    d_inv_sqrt = degrees(a_tilde).rsqrt()
    return scale(a_tilde, d_inv_sqrt, d_inv_sqrt)
    ### END SOLUTION


def mean_adjacency(adj: Tensor) -> Tensor:
    """The mean (random-walk) normalisation ``D~^(-1) (A + I)``: row ``i`` averages node ``i``
    and its neighbours, so every row sums to 1.

    ``adj``: ``(n, n)``, dense or sparse; returns ``(n, n)`` in the same layout. It is *not*
    ``normalized_adjacency``: that one divides entry ``(i, j)`` by ``sqrt(d~_i d~_j)``, this one
    by ``d~_i``. Path 0 - 1 - 2: ``[[1/2, 1/2, 0], [1/3, 1/3, 1/3], [0, 1/2, 1/2]]``.
    """
    adj = check_adjacency(adj)
    ### BEGIN SOLUTION Question 3.1 (a): implement mean_adjacency, D~^(-1) (A + I)
    a_tilde = add_self_loops(adj)
    d = degrees(a_tilde)
    return scale(a_tilde, 1.0 / d, torch.ones_like(d))
    ### END SOLUTION


def gcn_message_passing(adj_hat: Tensor, h: Tensor, weight: Tensor) -> Tensor:
    """The GCN layer ``adj_hat @ h @ weight`` written as message passing, without a matrix product
    over nodes.

    ``adj_hat``: ``(n, n)`` normalised adjacency, dense or sparse; ``h``: ``(n, d_in)``;
    ``weight``: ``(d_in, d_out)``; returns ``(n, d_out)``.

    1. every node transforms its features: ``z = h @ weight``, ``(n, d_out)``;
    2. every edge ``e = (i <- j)`` with weight ``w_e`` (from ``edge_list(adj_hat)``) carries
       the message ``w_e * z[j]``, an ``(E, d_out)`` tensor of messages;
    3. every node sums the messages it receives: use ``index_add_`` on a zero ``(n, d_out)``
       tensor, indexed by the receivers.
    """
    adj_hat = check_adjacency(adj_hat)
    check_features(adj_hat, h, weight)
    ### BEGIN SOLUTION Question 3.1 (a): implement gcn_message_passing (per-edge messages, per-node sums)
    z = h @ weight
    receivers, senders, weights = edge_list(adj_hat)
    messages = weights[:, None] * z[senders]
    return torch.zeros_like(z).index_add_(0, receivers, messages)
    ### END SOLUTION


class GCNLayer(nn.Module):
    """One GCN layer: ``H' = activation(A_hat @ H @ W + b)``.

    ``W`` has shape ``(in_features, out_features)`` and Glorot (Xavier) uniform initial values,
    as in Kipf and Welling; the bias ``b`` (``(out_features,)``, zeros) is optional.
    ``activation`` is ``None`` (identity, e.g. for the last layer) or a function such as
    ``torch.relu``. The layer takes the *normalised* adjacency, so that it is computed once per
    graph rather than once per layer and step.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.activation = activation
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, adj_hat: Tensor, h: Tensor) -> Tensor:
        """``adj_hat``: ``(n, n)`` normalised adjacency, dense or sparse; ``h``: ``(n, in_features)``.
        Returns ``(n, out_features)``.

        Multiply by ``W`` first and then propagate (``propagate`` handles sparse): ``(A_hat H) W``
        and ``A_hat (H W)`` are equal, but the second is cheaper when ``out_features < in_features``.
        Then add the bias (if any) and apply the activation (if any).
        """
        adj_hat = check_adjacency(adj_hat)
        check_features(adj_hat, h, self.weight)
        ### BEGIN SOLUTION Question 3.1 (a): implement GCNLayer.forward, activation(A_hat H W + b)
        out = propagate(adj_hat, h @ self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out if self.activation is None else self.activation(out)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[0]}, out_features={self.weight.shape[1]}, bias={self.bias is not None}"


class GCN(nn.Module):
    """Kipf and Welling's two-layer GCN for node classification::

        logits = A_hat @ dropout(relu(A_hat @ dropout(X) @ W0)) @ W1

    ``forward(adj_hat, x)`` takes the normalised adjacency ``(n, n)`` and features
    ``(n, in_features)`` and returns class logits ``(n, num_classes)`` (softmax is left to the
    loss). ``embed`` returns the hidden representation ``(n, hidden)``.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__()
        self.layer1 = GCNLayer(in_features, hidden, activation=torch.relu)
        self.layer2 = GCNLayer(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    def embed(self, adj_hat: Tensor, x: Tensor) -> Tensor:
        return self.layer1(adj_hat, self.dropout(x))

    def forward(self, adj_hat: Tensor, x: Tensor) -> Tensor:
        return self.layer2(adj_hat, self.dropout(self.embed(adj_hat, x)))


# --------------------------------------------------------------------------------------------
# Question 3.1 (b): the receptive field
# --------------------------------------------------------------------------------------------

def receptive_field(adj: Tensor, num_layers: int) -> Tensor:
    """Which input nodes can influence which output node after ``num_layers`` GCN layers.

    ``adj``: ``(n, n)`` adjacency (dense or sparse, without normalisation); returns a dense
    boolean ``(n, n)`` matrix ``R`` with ``R[i, j]`` True iff the features of node ``j`` reach
    node ``i``'s output. ``num_layers = 0`` gives the identity.

    Measure it: give every node a one-hot feature (``X = I``, so column ``j`` follows node
    ``j``'s contribution) and propagate it ``num_layers`` times, as the layers do. Propagate with
    ``A + I`` (``a_tilde`` below): ``A_hat`` only rescales its entries by positive numbers, so both
    have the same non-zero entries, and so do their powers (no entry is negative, nothing cancels).
    After each step keep only *whether* something arrived (``> 0``, as 0/1 in the adjacency's
    dtype), so that walk counts cannot overflow on a large graph.
    """
    if not isinstance(num_layers, int) or num_layers < 0:
        raise ValueError(f"num_layers must be an integer >= 0, got {num_layers!r}")
    a_tilde = add_self_loops(check_adjacency(adj))
    n = adj.shape[0]
    ### BEGIN SOLUTION Question 3.1 (b): implement receptive_field, propagate one-hot features num_layers times
    reached = torch.eye(n, dtype=adj.dtype, device=adj.device)
    for _ in range(num_layers):
        reached = (propagate(a_tilde, reached) > 0).to(adj.dtype)
    return reached > 0
    ### END SOLUTION
