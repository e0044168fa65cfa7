"""Hidden graded tests of Part 3: not in the student release, counted by the autograder (2 points).

They check 3.1 (a) and 3.1 (b) from angles the public tests leave out: a star graph, a larger directed
weighted graph in float32 with self-loops, and the receptive field of a float32 graph in several
components after many layers. They run the student's code only through the public probes of
``tests/graded/test_part3_gcn.py``.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from tests.graded.test_part3_gcn import (
    check_field, check_normalisation, gcn_layer, hop_matrix, layer_weights, message_passing, normalise, randn,
    receptive_fields, reference_layer, reference_mean, reference_symmetric,
)


def star(leaves: int) -> torch.Tensor:
    """The star with centre 0 and ``leaves`` leaves, float64."""
    return torch.as_tensor(nx.to_numpy_array(nx.star_graph(leaves), weight=None))


def directed_float32(n: int = 60, seed: int = 90) -> torch.Tensor:
    """A directed graph with edge weights in [0.5, 2.5) and self-loops on about a third of the nodes, float32."""
    g = torch.Generator().manual_seed(seed)
    adj = (torch.rand(n, n, generator=g) < 0.1).float() * (0.5 + 2 * torch.rand(n, n, generator=g))
    adj.fill_diagonal_(0)
    adj += torch.diag((torch.rand(n, generator=g) < 0.3).float())
    return adj


@pytest.mark.points(1, question="3.1 (a)", visibility="after_due_date")
def test_star_and_large_float32_graph(run):
    """the normalisations and the layer on a star graph, and on a 60-node directed weighted float32 graph with self-loops"""
    adj = star(6)
    a_hat = check_normalisation(run, "normalized_adjacency", adj, what="a star with 6 leaves")
    np.testing.assert_allclose(a_hat[0, 1:], 1 / np.sqrt(7 * 2), atol=1e-12,
                               err_msg="star: the centre (degree 6 + 1) and a leaf (1 + 1) give 1/sqrt(14)")
    for sparse in (False, True):
        check_normalisation(run, "mean_adjacency", adj, sparse=sparse, what="a star with 6 leaves")
    weights = layer_weights(5, 1, seed=91)
    h = randn(92, 7, 5)
    got = run(gcn_layer, weights=weights, adj_hat=torch.as_tensor(a_hat), h=h, sparse=True, activation="relu")
    np.testing.assert_allclose(got["out"].numpy(), reference_layer(a_hat, h, weights["weight"], weights["bias"], "relu"),
                               atol=1e-12, err_msg="GCNLayer(5, 1, activation=torch.relu) on the star, sparse A_hat")

    adj = directed_float32()
    for name, reference in (("normalized_adjacency", reference_symmetric), ("mean_adjacency", reference_mean)):
        expected = reference(adj.double().numpy())
        for sparse in (False, True):
            got = run(normalise, name=name, adj=adj, sparse=sparse)
            assert got["is_sparse"] == sparse, f"{name} must return the layout it is given (float32, 60 nodes)"
            assert got["out"].dtype == torch.float32, f"{name} of a float32 adjacency must be float32, not {got['out'].dtype}"
            np.testing.assert_allclose(got["out"].double().numpy(), expected, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{name} of a 60-node directed weighted float32 graph with self-loops "
                                               f"({'sparse' if sparse else 'dense'})")
    a_hat = torch.as_tensor(reference_symmetric(adj.double().numpy())).float()
    h, w = randn(93, 60, 8).float(), randn(94, 8, 3).float()
    for sparse in (False, True):
        out = run(message_passing, adj_hat=a_hat, h=h, weight=w, sparse=sparse)
        assert out.dtype == torch.float32 and out.shape == (60, 3), \
            f"gcn_message_passing in float32 gives {out.dtype} {tuple(out.shape)}, not float32 (60, 3)"
        np.testing.assert_allclose(out.double().numpy(), a_hat.double().numpy() @ h.double().numpy() @ w.double().numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=f"gcn_message_passing on the 60-node directed graph "
                                                                 f"({'sparse' if sparse else 'dense'}, float32)")


@pytest.mark.points(1, question="3.1 (b)", visibility="after_due_date")
def test_receptive_field_float32_components(run):
    """receptive_field of a float32 graph in pieces (complete graph, star, long path, isolated node), up to 45 layers"""
    graph = nx.disjoint_union_all([nx.complete_graph(25), nx.star_graph(7), nx.path_graph(40)])
    graph.add_node(graph.number_of_nodes())  # an isolated node
    adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=sorted(graph), weight=None), dtype=torch.float32)
    layers = [0, 1, 2, 3, 30, 45]
    what = "a float32 graph: complete graph of 25 nodes, star, path of 40 nodes, isolated node; {} layers{} " \
           "(in float32, walk counts of the complete graph pass the largest float after about 27 layers)"
    for k, got in zip(layers, run(receptive_fields, adj=adj, layers=layers)):
        check_field(got, hop_matrix(graph, k), what.format(k, ""), adj.numpy(), k)
    (got,) = run(receptive_fields, adj=adj, layers=[30], sparse=True)
    check_field(got, hop_matrix(graph, 30), what.format(30, ", sparse adjacency"), adj.numpy(), 30)

