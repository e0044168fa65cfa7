"""Ungraded tests of Part 3's boilerplate: input validation (which the stubs keep complete),
the karate-club data and training, the recurrent GCN of 3.3 (b) and the experiment command."""
from __future__ import annotations

import importlib
import json

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from solutions.part3 import dynamic, gcn, karate, sequences
from solutions.part3.full_batch import fit


def packages():
    """The reference package and, if it has been generated, the student package."""
    found = [gcn]
    try:
        found.append(importlib.import_module("assignment.part3.gcn"))
    except ImportError:
        pass
    return found


BAD_ADJACENCY = [
    (torch.zeros(3, 4), ValueError, "square"),
    (torch.zeros(2, 3, 3), ValueError, "square"),
    (torch.tensor([[0.0, -1.0], [-1.0, 0.0]]), ValueError, "negative"),
    (torch.tensor([[0.0, -1.0], [-1.0, 0.0]]).to_sparse(), ValueError, "negative"),
    (torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), ValueError, "NaN"),
    (torch.tensor([[0, 1], [1, 0]]), TypeError, "floating"),
    ([[0.0, 1.0], [1.0, 0.0]], TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("module", packages(), ids=lambda m: m.__name__.split(".")[0])
@pytest.mark.parametrize("adj, error, words", BAD_ADJACENCY)
def test_bad_adjacency_is_refused_by_name(module, adj, error, words):
    for function in (module.normalized_adjacency, module.mean_adjacency):
        with pytest.raises(error, match=words):
            function(adj)


@pytest.mark.parametrize("module", packages(), ids=lambda m: m.__name__.split(".")[0])
def test_mismatched_features_are_refused_by_name(module):
    a_hat = torch.eye(4)
    layer = module.GCNLayer(3, 2)
    with pytest.raises(ValueError, match="4 rows|one row per node"):
        layer(torch.eye(5), torch.zeros(4, 3))  # adjacency for 5 nodes, features for 4
    with pytest.raises(ValueError, match=r"\(3, d_out\)"):
        module.gcn_message_passing(a_hat, torch.zeros(4, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="shape"):
        layer(a_hat, torch.zeros(4, 2))  # 2 features for a layer that wants 3
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        layer(a_hat, torch.zeros(4))
    with pytest.raises(TypeError, match="dtype"):
        layer(a_hat.double(), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="num_layers"):
        module.receptive_field(a_hat, -1)


def test_helpers_dense_and_sparse_agree():
    adj = torch.tensor([[0.0, 2.0, 0.0], [2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    for a in (adj, adj.to_sparse()):
        assert torch.equal(gcn.degrees(a), torch.tensor([2.0, 3.0, 1.0]))
        assert torch.equal(gcn.add_self_loops(a).to_dense(), adj + torch.eye(3))
        receivers, senders, weights = gcn.edge_list(a)
        rebuilt = torch.zeros(3, 3).index_put_((receivers, senders), weights)
        assert torch.equal(rebuilt, adj)
    left, right = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])
    assert torch.allclose(gcn.scale(adj.to_sparse(), left, right).to_dense(), torch.diag(left) @ adj @ torch.diag(right))


def test_glorot_initialisation():
    torch.manual_seed(0)
    layer = gcn.GCNLayer(200, 100)
    bound = (6 / 300) ** 0.5
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    assert torch.equal(layer.bias, torch.zeros(100))
    assert gcn.GCNLayer(3, 2, bias=False).bias is None


def test_karate_club_data():
    club = karate.karate_club()
    assert club.adj.shape == (34, 34) and torch.equal(club.adj, club.adj.T)
    assert int(club.adj.sum()) == 2 * club.graph.number_of_edges() == 156
    assert club.labels[0] == 0 and club.labels[33] == 1 and int(club.labels.sum()) == 17
    assert torch.equal(karate.labelled_nodes(club.labels, None, 0), torch.tensor([0, 33]))
    chosen = karate.labelled_nodes(club.labels, 2, seed=3)
    assert len(chosen) == 4 and club.labels[chosen].tolist().count(0) == 2
    assert torch.equal(chosen, karate.labelled_nodes(club.labels, 2, seed=3))
    with pytest.raises(ValueError, match="per_class"):
        karate.labelled_nodes(club.labels, 40, seed=0)
    with pytest.raises(ValueError, match="unknown settings"):
        karate.train_once("gcn", club, chosen, 0, hiden=3)


def test_gcn_beats_mlp_on_karate():
    results = karate.accuracy_over_seeds(range(2), None)
    assert min(results["gcn"]) >= 0.85
    assert max(results["mlp"]) <= 0.6  # without the graph, one-hot features say nothing about unseen members


def test_gcrn_learns_what_needs_graph_and_memory():
    torch.manual_seed(0)
    club = karate.karate_club()
    adj_hats, xs, y = dynamic.changing_graph_task(club.adj, num_graphs=8, steps=4, seed=0)
    n = 8 * 34
    assert len(adj_hats) == 4 and adj_hats[0].shape == (n, n) and adj_hats[0].is_sparse
    assert xs.shape == (4, n, 1) and y.shape == (n, 1)
    expected = sum(a.to_dense() @ x for a, x in zip(adj_hats, xs)) / 2
    assert torch.allclose(y, expected, atol=1e-6)
    block = adj_hats[0].to_dense()
    assert block[:34, 34:].abs().sum() == 0  # no message crosses between graphs
    model = dynamic.GCRN(1, 8, 1)
    assert model(adj_hats, xs).shape == (n, 1)
    losses = fit(model, lambda: F.mse_loss(model(adj_hats, xs), y), steps=60, lr=0.02)
    assert losses[-1] < 0.3 * losses[0]
    with pytest.raises(ValueError, match="snapshots"):
        model(adj_hats[:2], xs)


def test_sequences_boilerplate():
    adj = sequences.chain_adjacency(5)
    assert torch.equal(adj, torch.as_tensor(nx.to_numpy_array(nx.path_graph(5), weight=None), dtype=torch.float32))
    pe = sequences.positional_encoding(3, 4)
    assert pe.shape == (3, 4) and torch.allclose(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    one = torch.tensor(1.0)
    assert torch.allclose(pe[1, :2], torch.stack([one.sin(), one.cos()]))
    assert sequences.positional_encoding(4, 3).shape == (4, 3)
    with pytest.raises(ValueError, match="shape"):
        sequences.sequence_to_graph(torch.zeros(5))


def test_karate_experiment_command(tmp_path):
    from experiments import part3_karate
    out = tmp_path / "karate.json"
    assert part3_karate.main(["--seeds", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == f"python -m experiments.part3_karate --seeds 1 --out {out}"
    assert set(record["results"]) == set(part3_karate.BUDGETS)
    assert record["results"]["leaders"]["gcn"]["mean"] > record["results"]["leaders"]["mlp"]["mean"]
    assert {"python", "torch"} <= set(record["versions"]) and record["wall_time_s"] >= 0


def test_committed_karate_results_have_provenance():
    from experiments.part3_karate import ROOT
    path = ROOT / "data" / "part3" / "karate.json"
    if not path.exists():
        pytest.skip("data/part3/karate.json is not committed yet")
    record = json.loads(path.read_text())
    assert record["command"].startswith("python -m experiments.part3_karate")
    assert len(record["settings"]["seeds"]) == len(record["results"]["leaders"]["gcn"]["accuracies"])
