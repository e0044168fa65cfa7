"""Graded tests of Part 3 (graph neural networks): 11 of its 20 points.

Points tested here (every test fails on the pristine stubs):

* 3.1 (a), 6 points: ``normalized_adjacency``, ``mean_adjacency``, ``GCNLayer.forward`` and
  ``gcn_message_passing`` in ``part3/gcn.py``: a hand-checkable 3-node path, symmetric against
  mean normalisation, dense against sparse, the layer against an independent computation,
  message passing against the matrix form, permutation equivariance and isolated nodes.
* 3.1 (b), 2 points: ``receptive_field`` against networkx's shortest-path lengths.
* 3.3 (a), 3 of its 6 points: ``sequence_to_graph`` and ``GraphEncoder`` (``node_states``, ``forward``) in
  ``part3/sequences.py``: a sequence as a chain graph, and a pooled GCN that cannot tell a
  sequence from its reverse until positions are added.

Points graded by hand from the written answers (9): 3.2 applications (4), 3.3 (a) the written
comparison of RNNs and GNNs (3) and 3.3 (b) models that combine a GNN and an RNN (2).

The references below are computed independently with numpy and networkx, in float64.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

S6 = 1 / np.sqrt(6)
PATH_SYMMETRIC = np.array([[1 / 2, S6, 0], [S6, 1 / 3, S6], [0, S6, 1 / 2]])
PATH_MEAN = np.array([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])


def path3() -> torch.Tensor:
    return torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float64)


def random_graph(n: int = 9, p: float = 0.35, seed: int = 0, weighted: bool = True,
                 isolated: bool = True) -> torch.Tensor:
    """A symmetric, non-negative (n, n) float64 adjacency; the last node is isolated."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu((torch.rand(n, n, generator=g) < p).double(), diagonal=1)
    if weighted:
        upper = upper * (0.5 + torch.rand(n, n, generator=g, dtype=torch.float64))
    adj = upper + upper.T
    if isolated:
        adj[-1, :] = adj[:, -1] = 0
    return adj


def reference_symmetric(adj: np.ndarray) -> np.ndarray:
    a = adj + np.eye(len(adj))
    d = a.sum(axis=1)
    return a / np.sqrt(np.outer(d, d))


def reference_mean(adj: np.ndarray) -> np.ndarray:
    a = adj + np.eye(len(adj))
    return a / a.sum(axis=1, keepdims=True)


def dense(t: torch.Tensor) -> np.ndarray:
    return (t.to_dense() if t.is_sparse else t).detach().numpy()


# ------------------------------------------------------------------------------ 3.1 (a)

@pytest.mark.points(1, question="3.1 (a)")
def test_normalized_adjacency_by_hand(load):
    """normalized_adjacency of the path 0-1-2 equals D~^(-1/2)(A+I)D~^(-1/2) worked out by hand"""
    gcn = load("part3.gcn")
    a_hat = gcn.normalized_adjacency(path3())
    assert a_hat.shape == (3, 3) and not a_hat.is_sparse
    np.testing.assert_allclose(dense(a_hat), PATH_SYMMETRIC, atol=1e-12)
    adj = random_graph()
    np.testing.assert_allclose(dense(gcn.normalized_adjacency(adj)), reference_symmetric(adj.numpy()), atol=1e-12)


@pytest.mark.points(1, question="3.1 (a)")
def test_mean_adjacency_differs_from_symmetric(load):
    """mean_adjacency is D~^(-1)(A+I): rows sum to 1, and it equals D~^(-1/2) A_hat D~^(1/2), not A_hat"""
    gcn = load("part3.gcn")
    np.testing.assert_allclose(dense(gcn.mean_adjacency(path3())), PATH_MEAN, atol=1e-12)
    adj = random_graph(seed=1)
    mean, sym = dense(gcn.mean_adjacency(adj)), dense(gcn.normalized_adjacency(adj))
    np.testing.assert_allclose(mean, reference_mean(adj.numpy()), atol=1e-12)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(sym, sym.T, atol=1e-12)  # undirected graph: A_hat is symmetric
    assert not np.allclose(mean, sym) and not np.allclose(mean, mean.T)
    d = adj.numpy().sum(axis=1) + 1
    np.testing.assert_allclose(mean, np.diag(d ** -0.5) @ sym @ np.diag(d ** 0.5), atol=1e-12)


@pytest.mark.points(1, question="3.1 (a)")
def test_sparse_normalisations_match_dense(load):
    """both normalisations take a torch.sparse adjacency, return it sparse and agree with the dense result"""
    gcn = load("part3.gcn")
    adj = random_graph(seed=2)
    for normalise, reference in [(gcn.normalized_adjacency, reference_symmetric), (gcn.mean_adjacency, reference_mean)]:
        out = normalise(adj.to_sparse())
        assert out.is_sparse, f"{normalise.__name__} must keep a sparse adjacency sparse"
        np.testing.assert_allclose(dense(out), reference(adj.numpy()), atol=1e-12)


@pytest.mark.points(1, question="3.1 (a)")
def test_gcn_layer_forward(load):
    """GCNLayer computes activation(A_hat H W + b) for dense and sparse A_hat, with gradients to W and b"""
    gcn = load("part3.gcn")
    torch.manual_seed(0)
    adj = random_graph(seed=3)
    layer = gcn.GCNLayer(4, 3, activation=torch.relu).double()
    with torch.no_grad():
        layer.bias.normal_()
    h = torch.randn(len(adj), 4, dtype=torch.float64)
    a_hat = gcn.normalized_adjacency(adj)
    expected = np.maximum(reference_symmetric(adj.numpy()) @ h.numpy() @ dense(layer.weight) + dense(layer.bias), 0)
    for a in (a_hat, a_hat.to_sparse()):
        out = layer(a, h)
        assert out.shape == (len(adj), 3)
        np.testing.assert_allclose(dense(out), expected, atol=1e-12)
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.bias.grad is not None and layer.bias.grad.abs().sum() > 0
    linear = gcn.GCNLayer(4, 3, bias=False).double()
    np.testing.assert_allclose(dense(linear(a_hat, h)), dense(a_hat) @ h.numpy() @ dense(linear.weight), atol=1e-12)


@pytest.mark.points(1, question="3.1 (a)")
def test_message_passing_equals_matrix_form(load):
    """gcn_message_passing gives A_hat H W, for dense and sparse A_hat, also on a directed weighted graph"""
    gcn = load("part3.gcn")
    torch.manual_seed(1)
    sym = random_graph(n=12, seed=4)
    directed = torch.triu(random_graph(n=12, seed=5), diagonal=1)  # edges only one way
    for adj in (sym, directed):
        a_hat = gcn.normalized_adjacency(adj)
        h, w = torch.randn(12, 5, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        expected = dense(a_hat) @ h.numpy() @ w.numpy()
        for a in (a_hat, a_hat.to_sparse()):
            out = gcn.gcn_message_passing(a, h, w)
            assert out.shape == (12, 2)
            np.testing.assert_allclose(dense(out), expected, atol=1e-12)
    layer = gcn.GCNLayer(5, 2, bias=False).double()
    np.testing.assert_allclose(dense(gcn.gcn_message_passing(a_hat, h, layer.weight)), dense(layer(a_hat, h)), atol=1e-12)


@pytest.mark.points(0.5, question="3.1 (a)")
def test_permutation_equivariance(load):
    """relabelling the nodes (P A P^T, P X) relabels the output (P H), for the normalisation and the layer"""
    gcn = load("part3.gcn")
    torch.manual_seed(2)
    adj = random_graph(n=10, seed=6)
    x = torch.randn(10, 4, dtype=torch.float64)
    perm = torch.randperm(10)
    p = torch.eye(10, dtype=torch.float64)[perm]
    layer = gcn.GCNLayer(4, 3, activation=torch.tanh).double()
    a_hat, a_hat_perm = gcn.normalized_adjacency(adj), gcn.normalized_adjacency(p @ adj @ p.T)
    np.testing.assert_allclose(dense(a_hat_perm), dense(p @ a_hat @ p.T), atol=1e-12)
    np.testing.assert_allclose(dense(layer(a_hat_perm, p @ x)), dense(p @ layer(a_hat, x)), atol=1e-12)
    np.testing.assert_allclose(dense(gcn.gcn_message_passing(a_hat_perm, p @ x, layer.weight)),
                               dense(p @ gcn.gcn_message_passing(a_hat, x, layer.weight)), atol=1e-12)


@pytest.mark.points(0.5, question="3.1 (a)")
def test_isolated_nodes_stay_finite(load):
    """an isolated node keeps its self-loop: A_hat[i, i] = 1 and its output is its own h_i W + b, no NaN"""
    gcn = load("part3.gcn")
    torch.manual_seed(3)
    adj = torch.zeros(4, 4, dtype=torch.float64)
    adj[0, 1] = adj[1, 0] = 1.0  # nodes 2 and 3 have no edges at all
    for a in (adj, adj.to_sparse()):
        for normalise in (gcn.normalized_adjacency, gcn.mean_adjacency):
            out = dense(normalise(a))
            assert np.isfinite(out).all()
            np.testing.assert_allclose(out[2:, :], np.eye(4)[2:], atol=1e-12)
    h = torch.randn(4, 3, dtype=torch.float64)
    layer = gcn.GCNLayer(3, 2).double()
    with torch.no_grad():
        layer.bias.normal_()
    out = layer(gcn.normalized_adjacency(adj.to_sparse()), h)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(dense(out[2:]), dense(h[2:] @ layer.weight + layer.bias), atol=1e-12)
    empty = torch.zeros(5, 5, dtype=torch.float64)  # a graph without edges: the layer is an MLP
    np.testing.assert_allclose(dense(gcn.normalized_adjacency(empty)), np.eye(5), atol=1e-12)


# ------------------------------------------------------------------------------ 3.1 (b)

def hop_matrix(graph: nx.Graph, k: int) -> np.ndarray:
    """R[i, j] = True iff the shortest path between nodes i and j has at most k edges."""
    n = graph.number_of_nodes()
    r = np.zeros((n, n), dtype=bool)
    for i, lengths in nx.all_pairs_shortest_path_length(graph, cutoff=k):
        r[i, list(lengths)] = True
    return r


@pytest.mark.points(1, question="3.1 (b)")
def test_receptive_field_is_k_hop_neighbourhood(load):
    """receptive_field after k layers is exactly the k-hop neighbourhood, on the karate club and a graph in pieces"""
    gcn = load("part3.gcn")
    karate = nx.karate_club_graph()
    pieces = nx.disjoint_union(nx.path_graph(7), nx.cycle_graph(5))
    pieces.add_node(12)  # and an isolated node
    for graph in (karate, pieces):
        adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=sorted(graph), weight=None))
        for k in range(5):
            field = gcn.receptive_field(adj, k)
            assert field.dtype == torch.bool and field.shape == adj.shape
            np.testing.assert_array_equal(field.numpy(), hop_matrix(graph, k), err_msg=f"{k} layers")
        np.testing.assert_array_equal(gcn.receptive_field(adj.to_sparse(), 3).numpy(), hop_matrix(graph, 3))


@pytest.mark.points(1, question="3.1 (b)")
def test_three_hops_need_exactly_three_layers(load):
    """on a path, information from 3 hops away arrives after 3 layers and not after 2"""
    gcn = load("part3.gcn")
    adj = torch.as_tensor(nx.to_numpy_array(nx.path_graph(8), weight=None), dtype=torch.float64)
    reached = [bool(gcn.receptive_field(adj, k)[0, 3]) for k in range(6)]
    assert reached == [False, False, False, True, True, True]
    sizes = [int(gcn.receptive_field(adj, k)[0].sum()) for k in range(4)]
    assert sizes == [1, 2, 3, 4]


# ------------------------------------------------------------------------------ 3.3 (a)

@pytest.mark.points(1, question="3.3 (a)")
def test_sequence_to_graph(load):
    """a (T, d) sequence becomes the path graph with the sequence as node features, plus positions if asked"""
    seq = load("part3.sequences")
    x = torch.randn(6, 3, dtype=torch.float64)
    adj, feats = seq.sequence_to_graph(x)
    np.testing.assert_array_equal(dense(adj), nx.to_numpy_array(nx.path_graph(6), weight=None))
    assert adj.dtype == torch.float64
    np.testing.assert_array_equal(dense(feats), dense(x))
    adj4, feats4 = seq.sequence_to_graph(x, positions=4)
    np.testing.assert_array_equal(dense(adj4), dense(adj))
    assert feats4.shape == (6, 7)
    np.testing.assert_array_equal(dense(feats4[:, :3]), dense(x))
    np.testing.assert_allclose(dense(feats4[:, 3:]), dense(seq.positional_encoding(6, 4, dtype=torch.float64)))


@pytest.mark.points(1, question="3.3 (a)")
def test_graph_encoder_forward(load):
    """GraphEncoder.node_states normalises A and applies the GCN layers, forward averages them; relabelling changes nothing"""
    seq, gcn = load("part3.sequences"), load("part3.gcn")
    torch.manual_seed(4)
    encoder = seq.GraphEncoder(3, 5, 2, num_layers=3).double()
    adj = random_graph(n=8, seed=7)
    x = torch.randn(8, 3, dtype=torch.float64)
    a_hat = reference_symmetric(adj.numpy())
    h = x.numpy()
    for i, layer in enumerate(encoder.layers):
        h = a_hat @ h @ dense(layer.weight) + dense(layer.bias)
        h = np.tanh(h) if i < 2 else h
    states = encoder.node_states(adj, x)
    assert states.shape == (8, 2)
    np.testing.assert_allclose(dense(states), h, atol=1e-12)
    out = encoder(adj, x)
    assert out.shape == (2,)
    np.testing.assert_allclose(dense(out), h.mean(axis=0), atol=1e-12)
    p = torch.eye(8, dtype=torch.float64)[torch.randperm(8)]
    np.testing.assert_allclose(dense(encoder(p @ adj @ p.T, p @ x)), dense(out), atol=1e-12)


@pytest.mark.points(1, question="3.3 (a)")
def test_chain_gcn_cannot_see_direction_without_positions(load):
    """a pooled GCN gives a sequence and its reverse the same output; with positions it tells them apart"""
    seq = load("part3.sequences")
    torch.manual_seed(5)
    x = torch.randn(7, 3, dtype=torch.float64)
    plain = seq.GraphEncoder(3, 8, 4).double()
    forward, backward = plain(*seq.sequence_to_graph(x)), plain(*seq.sequence_to_graph(x.flip(0)))
    np.testing.assert_allclose(dense(forward), dense(backward), atol=1e-12)
    with_positions = seq.GraphEncoder(3 + 4, 8, 4).double()
    forward = with_positions(*seq.sequence_to_graph(x, positions=4))
    backward = with_positions(*seq.sequence_to_graph(x.flip(0), positions=4))
    assert (forward - backward).abs().max() > 1e-4
