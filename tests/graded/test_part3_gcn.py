"""Graded tests of Part 3 (graph neural networks): 11 of its 20 points.

Points tested here (every test fails on the pristine stubs):

* 3.1 (a), 6 points: ``normalized_adjacency``, ``mean_adjacency``, ``GCNLayer.forward`` and
  ``gcn_message_passing`` in ``part3/gcn.py``: a hand-checkable 3-node path, symmetric against
  mean normalisation, undirected and directed graphs, dense against sparse, the layer and its
  gradients against an independent computation, message passing against the matrix form,
  permutation equivariance and isolated nodes.
* 3.1 (b), 2 points: ``receptive_field`` against networkx's shortest-path lengths.
* 3.3 (a), 3 of its 6 points: ``sequence_to_graph`` and ``GraphEncoder`` (``node_states``, ``forward``) in
  ``part3/sequences.py``: a sequence as a chain graph, and a pooled GCN that cannot tell a
  sequence from its reverse until positions are added.

Points graded by hand from the written answers (9): 3.2 applications (4), 3.3 (a) the written
comparison of RNNs and GNNs (3) and 3.3 (b) models that combine a GNN and an RNN (2).

Each test is a check with its probes next to it (``grader/probes.py``): a probe (``@probe``) runs the
student's code on inputs the check chooses, the weights of every layer included, and returns plain
tensors; a sparse adjacency travels dense with a flag, and the probe makes it sparse. The check never
imports student code: its references are computed independently with numpy and networkx, in float64.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from grader.probes import probe

S6 = 1 / np.sqrt(6)
PATH_SYMMETRIC = np.array([[1 / 2, S6, 0], [S6, 1 / 3, S6], [0, S6, 1 / 2]])
PATH_MEAN = np.array([[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
ACTIVATIONS = {None: None, "relu": torch.relu, "tanh": torch.tanh}  # a function crosses as its name


# ------------------------------------------------------------------------------ inputs and references
# (the check's side: nothing here imports student code)

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


def directed_graph(n: int = 9, seed: int = 0) -> torch.Tensor:
    """A weighted graph whose edges go one way only (adj[i, j] > 0 for some i < j): row and column sums differ."""
    return torch.triu(random_graph(n, p=0.5, seed=seed, isolated=False), diagonal=1)


def randn(seed: int, *shape: int) -> torch.Tensor:
    """Seeded float64 normal values (features, weights, biases)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def permutation(n: int, seed: int) -> torch.Tensor:
    """The matrix P of a seeded permutation of n nodes: P @ x relabels the rows of x, P A P^T the graph."""
    return torch.eye(n, dtype=torch.float64)[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def reference_symmetric(adj) -> np.ndarray:
    """D~^(-1/2) (A + I) D~^(-1/2), D~ the row sums of A + I."""
    a = np.asarray(adj) + np.eye(len(adj))
    d = a.sum(axis=1)
    return a / np.sqrt(np.outer(d, d))


def reference_mean(adj) -> np.ndarray:
    """D~^(-1) (A + I), D~ the row sums of A + I."""
    a = np.asarray(adj) + np.eye(len(adj))
    return a / a.sum(axis=1, keepdims=True)


def reference_layer(a_hat, h, weight, bias=None, activation=None) -> np.ndarray:
    """activation(A_hat H W + b)."""
    out = np.asarray(a_hat) @ np.asarray(h) @ np.asarray(weight)
    if bias is not None:
        out = out + np.asarray(bias)
    return {None: lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation](out)


def reference_positions(length: int, dim: int) -> np.ndarray:
    """The given positional_encoding's formula: P[t, 2i] = sin(t / 10000^(2i/dim)), P[t, 2i+1] = cos(the same)."""
    p = np.zeros((length, dim))
    for t in range(length):
        for j in range(dim):
            angle = t / 10000 ** (2 * (j // 2) / dim)
            p[t, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return p


def layer_weights(d_in: int, d_out: int, seed: int, bias: bool = True) -> dict[str, torch.Tensor]:
    """A GCNLayer's state dict, chosen by the check: ``weight`` (d_in, d_out) and ``bias`` (d_out,)."""
    weights = {"weight": randn(seed, d_in, d_out)}
    if bias:
        weights["bias"] = randn(seed + 1000, d_out)
    return weights


def encoder_weights(sizes: list[int], seed: int) -> dict[str, torch.Tensor]:
    """A GraphEncoder's state dict: ``layers.{i}.weight`` and ``layers.{i}.bias`` between consecutive sizes."""
    weights = {}
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for name, value in layer_weights(d_in, d_out, seed + i).items():
            weights[f"layers.{i}.{name}"] = value
    return weights


def reference_encoder(adj, x, weights) -> np.ndarray:
    """GraphEncoder.node_states: A_hat, then GCN layers with tanh on all but the last."""
    a_hat, h = reference_symmetric(adj), np.asarray(x)
    num_layers = len(weights) // 2
    for i in range(num_layers):
        h = reference_layer(a_hat, h, weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"],
                            "tanh" if i < num_layers - 1 else None)
    return h


def sizes_of(in_features: int, hidden: int, out_features: int, num_layers: int) -> list[int]:
    return [in_features] + [hidden] * (num_layers - 1) + [out_features]


# ------------------------------------------------------------------------------ probes' helpers
# (the probes' side: they run in the sandbox)

def _as_sent(adj: torch.Tensor, sparse: bool) -> torch.Tensor:
    """The check sends a dense adjacency; the probe makes it sparse when asked."""
    return adj.to_sparse() if sparse else adj


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t.to_dense() if t.is_sparse else t


# ------------------------------------------------------------------------------ 3.1 (a)

@probe
def normalise(load, name, adj, sparse=False):
    """The student's ``normalized_adjacency`` or ``mean_adjacency`` of ``adj``: the result made dense, and
    whether it came back sparse."""
    if name not in ("normalized_adjacency", "mean_adjacency"):
        raise ValueError(f"no such normalisation: {name}")
    out = getattr(load("part3.gcn"), name)(_as_sent(adj, sparse))
    return {"out": _dense(out), "is_sparse": out.is_sparse}


def check_normalisation(run, name, adj, sparse=False, what="") -> np.ndarray:
    """The student's normalisation of ``adj`` equals the reference; returns it (dense numpy)."""
    got = run(normalise, name=name, adj=adj, sparse=sparse)
    reference = {"normalized_adjacency": reference_symmetric, "mean_adjacency": reference_mean}[name]
    assert got["is_sparse"] == sparse, \
        f"{name} must return the layout it is given: a {'sparse' if sparse else 'dense'} adjacency gave a " \
        f"{'sparse' if got['is_sparse'] else 'dense'} result"
    out = got["out"].numpy()
    assert out.shape == tuple(adj.shape), f"{name} of an {tuple(adj.shape)} adjacency has shape {out.shape}"
    np.testing.assert_allclose(out, reference(adj.numpy()), atol=1e-12,
                               err_msg=f"{name} of {what or 'a graph'} ({'sparse' if sparse else 'dense'})")
    return out


@pytest.mark.points(1, question="3.1 (a)")
def test_normalized_adjacency_by_hand(run):
    """normalized_adjacency of the path 0-1-2 equals D~^(-1/2)(A+I)D~^(-1/2) worked out by hand"""
    got = run(normalise, name="normalized_adjacency", adj=path3())
    assert not got["is_sparse"], "a dense adjacency gives a dense A_hat"
    np.testing.assert_allclose(got["out"].numpy(), PATH_SYMMETRIC, atol=1e-12,
                               err_msg="the path 0-1-2 (degrees with self-loops 2, 3, 2)")
    check_normalisation(run, "normalized_adjacency", random_graph(), what="a weighted undirected graph")
    check_normalisation(run, "normalized_adjacency", directed_graph(seed=10),
                        what="a directed graph (D~ holds the row sums of A + I, a node's incoming weights)")


@pytest.mark.points(1, question="3.1 (a)")
def test_mean_adjacency_differs_from_symmetric(run):
    """mean_adjacency is D~^(-1)(A+I): rows sum to 1, and it equals D~^(-1/2) A_hat D~^(1/2), not A_hat"""
    got = run(normalise, name="mean_adjacency", adj=path3())
    np.testing.assert_allclose(got["out"].numpy(), PATH_MEAN, atol=1e-12, err_msg="the path 0-1-2")
    adj = random_graph(seed=1)
    mean = check_normalisation(run, "mean_adjacency", adj, what="a weighted undirected graph")
    sym = check_normalisation(run, "normalized_adjacency", adj, what="a weighted undirected graph")
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-12, err_msg="rows of D~^(-1)(A+I) sum to 1")
    np.testing.assert_allclose(sym, sym.T, atol=1e-12, err_msg="undirected graph: A_hat is symmetric")
    assert not np.allclose(mean, sym) and not np.allclose(mean, mean.T), \
        "mean_adjacency must differ from normalized_adjacency (and is not symmetric)"
    d = adj.numpy().sum(axis=1) + 1
    np.testing.assert_allclose(mean, np.diag(d ** -0.5) @ sym @ np.diag(d ** 0.5), atol=1e-12)
    check_normalisation(run, "mean_adjacency", directed_graph(seed=11), what="a directed graph (row sums of A + I)")


@pytest.mark.points(1, question="3.1 (a)")
def test_sparse_normalisations_match_dense(run):
    """both normalisations take a torch.sparse adjacency, return it sparse and agree with the dense result"""
    for adj, what in ((random_graph(seed=2), "a weighted undirected graph"),
                      (directed_graph(seed=12), "a directed graph")):
        for name in ("normalized_adjacency", "mean_adjacency"):
            check_normalisation(run, name, adj, sparse=True, what=what)


@probe
def gcn_layer(load, weights, adj_hat, h, sparse=False, activation=None, backward=False):
    """The student's GCNLayer with the check's ``weights`` (``weight``, and ``bias`` when given) on
    ``adj_hat`` (made sparse if ``sparse``) and ``h``: its output, and with ``backward`` the gradients
    of every parameter after ``out.sum().backward()``."""
    d_in, d_out = weights["weight"].shape
    layer = load("part3.gcn").GCNLayer(d_in, d_out, bias="bias" in weights, activation=ACTIVATIONS[activation])
    layer = layer.double()
    layer.load_state_dict(weights)
    out = layer(_as_sent(adj_hat, sparse), h)
    result = {"out": _dense(out)}
    if backward:
        out.sum().backward()
        result["grads"] = {name: p.grad for name, p in layer.named_parameters()}
    return result


@pytest.mark.points(1, question="3.1 (a)")
def test_gcn_layer_forward(run):
    """GCNLayer computes activation(A_hat H W + b) for dense and sparse A_hat, with gradients to W and b"""
    adj = random_graph(seed=3)
    a_hat, h = torch.as_tensor(reference_symmetric(adj.numpy())), randn(3, len(adj), 4)
    weights = layer_weights(4, 3, seed=30)
    w, b = weights["weight"].numpy(), weights["bias"].numpy()
    pre = a_hat.numpy() @ h.numpy() @ w + b
    expected = np.maximum(pre, 0)
    # d sum(relu(A_hat H W + b)) / dW = (A_hat H)^T 1[pre > 0], and / db the column sums of 1[pre > 0]
    mask = (pre > 0).astype(float)
    expected_grads = {"weight": (a_hat.numpy() @ h.numpy()).T @ mask, "bias": mask.sum(axis=0)}
    for sparse in (False, True):
        kind = "sparse" if sparse else "dense"
        got = run(gcn_layer, weights=weights, adj_hat=a_hat, h=h, sparse=sparse, activation="relu", backward=True)
        assert got["out"].shape == (len(adj), 3), f"output shape {tuple(got['out'].shape)}, not (n, out_features)"
        np.testing.assert_allclose(got["out"].numpy(), expected, atol=1e-12,
                                   err_msg=f"GCNLayer(4, 3, activation=torch.relu), {kind} A_hat: relu(A_hat H W + b)")
        for name, grad in expected_grads.items():
            got_grad = got["grads"].get(name)
            assert got_grad is not None, f"no gradient reached the layer's {name} ({kind} A_hat)"
            np.testing.assert_allclose(got_grad.numpy(), grad, atol=1e-12,
                                       err_msg=f"gradient of out.sum() with respect to {name} ({kind} A_hat)")
    linear = layer_weights(4, 3, seed=31, bias=False)
    got = run(gcn_layer, weights=linear, adj_hat=a_hat, h=h)
    np.testing.assert_allclose(got["out"].numpy(), reference_layer(a_hat, h, linear["weight"]), atol=1e-12,
                               err_msg="GCNLayer(4, 3, bias=False) without activation: A_hat H W")


@probe
def message_passing(load, adj_hat, h, weight, sparse=False):
    """The student's ``gcn_message_passing(adj_hat, h, weight)``, ``adj_hat`` made sparse if ``sparse``."""
    return _dense(load("part3.gcn").gcn_message_passing(_as_sent(adj_hat, sparse), h, weight))


@pytest.mark.points(1, question="3.1 (a)")
def test_message_passing_equals_matrix_form(run):
    """gcn_message_passing gives A_hat H W, for dense and sparse A_hat, also on a directed weighted graph"""
    for seed, adj, what in ((4, random_graph(n=12, seed=4), "an undirected graph"),
                            (5, torch.triu(random_graph(n=12, seed=5), diagonal=1), "a directed graph")):
        a_hat = torch.as_tensor(reference_symmetric(adj.numpy()))
        h, w = randn(seed, 12, 5), randn(seed + 100, 5, 2)
        expected = reference_layer(a_hat, h, w)
        for sparse in (False, True):
            out = run(message_passing, adj_hat=a_hat, h=h, weight=w, sparse=sparse)
            assert out.shape == (12, 2), f"output shape {tuple(out.shape)}, not (n, d_out)"
            np.testing.assert_allclose(out.numpy(), expected, atol=1e-12,
                                       err_msg=f"{what}, {'sparse' if sparse else 'dense'} A_hat: node i sums "
                                               "A_hat[i, j] * (H W)[j] over the senders j of its edges")


@pytest.mark.points(0.5, question="3.1 (a)")
def test_permutation_equivariance(run):
    """relabelling the nodes (P A P^T, P X) relabels the output (P H), for the normalisation and the layer"""
    adj, x = random_graph(n=10, seed=6), randn(6, 10, 4)
    p = permutation(10, seed=6)
    adj_perm, x_perm = p @ adj @ p.T, p @ x
    a_hat = check_normalisation(run, "normalized_adjacency", adj, what="the graph")
    a_hat_perm = check_normalisation(run, "normalized_adjacency", adj_perm, what="the relabelled graph")
    np.testing.assert_allclose(a_hat_perm, p.numpy() @ a_hat @ p.numpy().T, atol=1e-12,
                               err_msg="normalized_adjacency(P A P^T) must be P A_hat P^T")
    weights = layer_weights(4, 3, seed=60)
    a_hat = torch.as_tensor(reference_symmetric(adj.numpy()))
    a_hat_perm = torch.as_tensor(reference_symmetric(adj_perm.numpy()))
    out = run(gcn_layer, weights=weights, adj_hat=a_hat, h=x, activation="tanh")["out"]
    out_perm = run(gcn_layer, weights=weights, adj_hat=a_hat_perm, h=x_perm, activation="tanh")["out"]
    np.testing.assert_allclose(out_perm.numpy(), (p @ out).numpy(), atol=1e-12,
                               err_msg="GCNLayer on the relabelled graph must give the relabelled output P H")
    np.testing.assert_allclose(out.numpy(), reference_layer(a_hat, x, weights["weight"], weights["bias"], "tanh"),
                               atol=1e-12, err_msg="GCNLayer(4, 3, activation=torch.tanh): tanh(A_hat H W + b)")
    mp = run(message_passing, adj_hat=a_hat, h=x, weight=weights["weight"])
    mp_perm = run(message_passing, adj_hat=a_hat_perm, h=x_perm, weight=weights["weight"])
    np.testing.assert_allclose(mp_perm.numpy(), (p @ mp).numpy(), atol=1e-12,
                               err_msg="gcn_message_passing on the relabelled graph must give P (A_hat H W)")
    np.testing.assert_allclose(mp.numpy(), reference_layer(a_hat, x, weights["weight"]), atol=1e-12,
                               err_msg="gcn_message_passing: A_hat H W")


@pytest.mark.points(0.5, question="3.1 (a)")
def test_isolated_nodes_stay_finite(run):
    """an isolated node keeps its self-loop: A_hat[i, i] = 1 and its output is its own h_i W + b, no NaN"""
    adj = torch.zeros(4, 4, dtype=torch.float64)
    adj[0, 1] = adj[1, 0] = 1.0  # nodes 2 and 3 have no edges at all
    for sparse in (False, True):
        for name in ("normalized_adjacency", "mean_adjacency"):
            out = run(normalise, name=name, adj=adj, sparse=sparse)["out"].numpy()
            kind = "sparse" if sparse else "dense"
            assert np.isfinite(out).all(), f"{name} ({kind}) has NaN or inf with isolated nodes 2 and 3"
            np.testing.assert_allclose(out[2:, :], np.eye(4)[2:], atol=1e-12,
                                       err_msg=f"{name} ({kind}): an isolated node only has its self-loop, weight 1")
    h, weights = randn(7, 4, 3), layer_weights(3, 2, seed=70)
    a_hat = torch.as_tensor(reference_symmetric(adj.numpy()))
    out = run(gcn_layer, weights=weights, adj_hat=a_hat, h=h, sparse=True)["out"]
    assert torch.isfinite(out).all(), "GCNLayer output has NaN or inf"
    np.testing.assert_allclose(out[2:].numpy(), (h[2:] @ weights["weight"] + weights["bias"]).numpy(), atol=1e-12,
                               err_msg="an isolated node's output is its own h_i W + b")
    np.testing.assert_allclose(out.numpy(), reference_layer(a_hat, h, weights["weight"], weights["bias"]), atol=1e-12)
    empty = run(normalise, name="normalized_adjacency", adj=torch.zeros(5, 5, dtype=torch.float64))["out"]
    np.testing.assert_allclose(empty.numpy(), np.eye(5), atol=1e-12,
                               err_msg="a graph without edges: A_hat = I and the layer is an MLP")


# ------------------------------------------------------------------------------ 3.1 (b)

def hop_matrix(graph: nx.Graph, k: int) -> np.ndarray:
    """R[i, j] = True iff the shortest path between nodes i and j has at most k edges."""
    n = graph.number_of_nodes()
    r = np.zeros((n, n), dtype=bool)
    for i, lengths in nx.all_pairs_shortest_path_length(graph, cutoff=k):
        r[i, list(lengths)] = True
    return r


@probe
def receptive_fields(load, adj, layers, sparse=False):
    """The student's ``receptive_field(adj, k)`` for each k in ``layers`` (``adj`` made sparse if ``sparse``)."""
    gcn = load("part3.gcn")
    fields = [gcn.receptive_field(_as_sent(adj, sparse), k) for k in layers]
    return [{"field": _dense(f), "is_sparse": f.is_sparse} for f in fields]


def check_field(got, expected, what):
    assert not got["is_sparse"], f"receptive_field returns a dense boolean matrix ({what})"
    field = got["field"]
    assert field.dtype == torch.bool and field.shape == expected.shape, \
        f"receptive_field must return a bool (n, n) matrix, got {field.dtype} {tuple(field.shape)} ({what})"
    np.testing.assert_array_equal(field.numpy(), expected, err_msg=what)


@pytest.mark.points(1, question="3.1 (b)")
def test_receptive_field_is_k_hop_neighbourhood(run):
    """receptive_field after k layers is exactly the k-hop neighbourhood, on the karate club and a graph in pieces"""
    karate = nx.karate_club_graph()
    pieces = nx.disjoint_union(nx.path_graph(7), nx.cycle_graph(5))
    pieces.add_node(12)  # and an isolated node
    for name, graph in (("karate club", karate), ("path + cycle + isolated node", pieces)):
        adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=sorted(graph), weight=None))
        for k, got in enumerate(run(receptive_fields, adj=adj, layers=list(range(5)))):
            check_field(got, hop_matrix(graph, k), f"{name}, {k} layers")
        (got,) = run(receptive_fields, adj=adj, layers=[3], sparse=True)
        check_field(got, hop_matrix(graph, 3), f"{name}, 3 layers, sparse adjacency")


@pytest.mark.points(1, question="3.1 (b)")
def test_three_hops_need_exactly_three_layers(run):
    """on a path, information from 3 hops away arrives after 3 layers and not after 2"""
    adj = torch.as_tensor(nx.to_numpy_array(nx.path_graph(8), weight=None), dtype=torch.float64)
    fields = [got["field"] for got in run(receptive_fields, adj=adj, layers=list(range(6)))]
    reached = [bool(f[0, 3]) for f in fields]
    assert reached == [False, False, False, True, True, True], \
        f"does node 3 reach node 0 after 0, 1, ..., 5 layers? expected 3 layers and more, got {reached}"
    sizes = [int(f[0].sum()) for f in fields[:4]]
    assert sizes == [1, 2, 3, 4], f"nodes that reach the end of the path after 0..3 layers: {sizes}, not [1, 2, 3, 4]"


# ------------------------------------------------------------------------------ 3.3 (a)

@probe
def chain_graph(load, x, positions=0):
    """The student's ``sequence_to_graph(x, positions)`` (adjacency made dense), and with positions the
    given ``positional_encoding(T, positions)`` of the student's module, float64."""
    seq = load("part3.sequences")
    adj, feats = seq.sequence_to_graph(x, positions=positions)
    encoding = seq.positional_encoding(len(x), positions, dtype=torch.float64) if positions else None
    return {"adj": _dense(adj), "features": _dense(feats), "encoding": encoding}


@pytest.mark.points(1, question="3.3 (a)")
def test_sequence_to_graph(run):
    """a (T, d) sequence becomes the path graph with the sequence as node features, plus positions if asked"""
    x = randn(8, 6, 3)
    chain = nx.to_numpy_array(nx.path_graph(6), weight=None)
    got = run(chain_graph, x=x)
    assert got["adj"].dtype == torch.float64, \
        f"the adjacency takes the sequence's dtype, float64 here, not {got['adj'].dtype}"
    np.testing.assert_array_equal(got["adj"].numpy(), chain, err_msg="the adjacency of the path 0 - 1 - ... - 5")
    np.testing.assert_array_equal(got["features"].numpy(), x.numpy(), err_msg="without positions the features are x")
    for positions in (4, 5):
        got = run(chain_graph, x=x, positions=positions)
        np.testing.assert_array_equal(got["adj"].numpy(), chain, err_msg=f"positions={positions}: the same path")
        feats = got["features"]
        assert feats.shape == (6, 3 + positions), \
            f"positions={positions}: features have shape {tuple(feats.shape)}, not (6, {3 + positions})"
        np.testing.assert_array_equal(feats[:, :3].numpy(), x.numpy(), err_msg="x comes first, unchanged")
        np.testing.assert_allclose(feats[:, 3:].numpy(), got["encoding"].numpy(), atol=1e-12,
                                   err_msg=f"the last {positions} columns are positional_encoding(T, {positions})")
        # positional_encoding is given code: the formula of its docstring is the assignment's
        np.testing.assert_allclose(feats[:, 3:].numpy(), reference_positions(6, positions), atol=1e-12,
                                   err_msg="positional_encoding must stay as given: "
                                           "P[t, 2i] = sin(t / 10000^(2i/dim)), P[t, 2i+1] = cos(t / 10000^(2i/dim))")


@probe
def graph_encoder(load, sizes, weights, adj, x):
    """The student's GraphEncoder (``sizes`` = [in, hidden, out, num_layers]) with the check's ``weights``:
    ``node_states(adj, x)`` and ``forward(adj, x)``."""
    in_features, hidden, out_features, num_layers = sizes
    encoder = load("part3.sequences").GraphEncoder(in_features, hidden, out_features, num_layers=num_layers).double()
    encoder.load_state_dict(weights)
    return {"states": encoder.node_states(adj, x), "pooled": encoder(adj, x)}


@pytest.mark.points(1, question="3.3 (a)")
def test_graph_encoder_forward(run):
    """GraphEncoder.node_states normalises A and applies the GCN layers, forward averages them; relabelling changes nothing"""
    sizes = [3, 5, 2, 3]
    weights = encoder_weights(sizes_of(*sizes), seed=40)
    adj, x = random_graph(n=8, seed=7), randn(41, 8, 3)
    p = permutation(8, seed=7)
    expected = reference_encoder(adj.numpy(), x.numpy(), weights)
    got = run(graph_encoder, sizes=sizes, weights=weights, adj=adj, x=x)
    assert got["states"].shape == (8, 2), f"node_states has shape {tuple(got['states'].shape)}, not (n, out_features)"
    np.testing.assert_allclose(got["states"].numpy(), expected, atol=1e-12,
                               err_msg="node_states: A_hat = normalized_adjacency(A), then the 3 GCN layers "
                                       "(tanh, tanh, no activation)")
    assert got["pooled"].shape == (2,), f"forward returns shape {tuple(got['pooled'].shape)}, not (out_features,)"
    np.testing.assert_allclose(got["pooled"].numpy(), expected.mean(axis=0), atol=1e-12,
                               err_msg="forward is the mean of the node states over the nodes")
    relabelled = run(graph_encoder, sizes=sizes, weights=weights, adj=p @ adj @ p.T, x=p @ x)
    np.testing.assert_allclose(relabelled["pooled"].numpy(), got["pooled"].numpy(), atol=1e-12,
                               err_msg="relabelling the nodes must not change the graph's encoding")
    np.testing.assert_allclose(relabelled["states"].numpy(), p.numpy() @ expected, atol=1e-12,
                               err_msg="relabelling the nodes relabels the node states")


@probe
def encode_sequence(load, sizes, weights, x, positions=0):
    """The student's GraphEncoder (as in ``graph_encoder``) on the student's ``sequence_to_graph(x, positions)``."""
    seq = load("part3.sequences")
    in_features, hidden, out_features, num_layers = sizes
    encoder = seq.GraphEncoder(in_features, hidden, out_features, num_layers=num_layers).double()
    encoder.load_state_dict(weights)
    return encoder(*seq.sequence_to_graph(x, positions=positions))


@pytest.mark.points(1, question="3.3 (a)")
def test_chain_gcn_cannot_see_direction_without_positions(run):
    """a pooled GCN gives a sequence and its reverse the same output; with positions it tells them apart"""
    x = randn(50, 7, 3)
    chain = nx.to_numpy_array(nx.path_graph(7), weight=None)
    for positions in (0, 4):
        sizes = [3 + positions, 8, 4, 2]
        weights = encoder_weights(sizes_of(*sizes), seed=51 + positions)
        forward, backward = (run(encode_sequence, sizes=sizes, weights=weights, x=seq, positions=positions)
                             for seq in (x, x.flip(0)))
        if positions:
            assert (forward - backward).abs().max() > 1e-4, \
                "with positions the encoder must tell a sequence from its reverse"
        else:
            np.testing.assert_allclose(forward.numpy(), backward.numpy(), atol=1e-12,
                                       err_msg="without positions, a sequence and its reverse give the same encoding")
        for seq, out in ((x, forward), (x.flip(0), backward)):
            feats = seq.numpy() if not positions else np.hstack([seq.numpy(), reference_positions(7, positions)])
            np.testing.assert_allclose(out.numpy(), reference_encoder(chain, feats, weights).mean(axis=0), atol=1e-12,
                                       err_msg=f"GraphEncoder on sequence_to_graph(x, positions={positions})")
