"""Graded tests of Part 3 (graph neural networks): 11 of its 20 points.

| question | here | by hand |
|---|---|---|
| 3.1 (a) the layer as message passing | 6: ``normalized_adjacency``, ``mean_adjacency``, ``GCNLayer.forward`` and ``gcn_message_passing`` in ``part3/gcn.py``: a hand-checkable 3-node path and a directed weighted 3-node graph with a self-loop, symmetric against mean normalisation, undirected and directed graphs, graphs with self-loops, dense against sparse, the layer and its gradients against an independent computation (also on a directed graph), message passing against the matrix form, permutation equivariance and isolated nodes | 0: |
| 3.1 (b) the receptive field | 2: ``receptive_field`` against networkx's shortest-path lengths, on undirected and directed weighted graphs, and after up to 120 layers where unreduced walk weights underflow and overflow | 0: |
| 3.2 applications | 0: | 4: the written answer |
| 3.3 (a) RNNs and GNNs | 3: ``sequence_to_graph`` and ``GraphEncoder`` (``node_states``, ``forward``) in ``part3/sequences.py``: a sequence as a chain graph, and a pooled GCN that cannot tell a sequence from its reverse until positions are added | 3: the written comparison of RNNs and GNNs |
| 3.3 (b) GNN and RNN together | 0: | 2: models that combine a GNN and an RNN |

Each test is a check with its probes next to it (``grader/probes.py``): a probe (``@probe``) runs the
student's code on inputs the check chooses, the weights of every layer included, and returns plain
tensors; a sparse adjacency travels dense with a flag, and the probe makes it sparse. The check never
imports student code: its references are computed independently with numpy and networkx, in float64.
Where a wrong answer is what a common mistake computes (the check works that out too), the message
names the mistake (``known_mistake``).
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
# loop3(): node 0 receives from 1 (weight 2), 1 from 2, 2 from 0 and from itself (a self-loop, weight 1), so
# A + I = [[1, 2, 0], [0, 1, 1], [1, 0, 2]]: row sums 3, 2, 3, column sums 2, 3, 3.
LOOP_SYMMETRIC = np.array([[1 / 3, 2 * S6, 0], [0, 1 / 2, S6], [1 / 3, 0, 2 / 3]])
LOOP_MEAN = np.array([[1 / 3, 2 / 3, 0], [0, 1 / 2, 1 / 2], [1 / 3, 0, 2 / 3]])
ACTIVATIONS = {None: None, "relu": torch.relu, "tanh": torch.tanh}  # a function crosses as its name


# ------------------------------------------------------------------------------ inputs and references
# (the check's side: nothing here imports student code)

def path3() -> torch.Tensor:
    return torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float64)


def loop3() -> torch.Tensor:
    """A directed, weighted 3-node graph with a self-loop on node 2 (see LOOP_SYMMETRIC)."""
    return torch.tensor([[0.0, 2, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.float64)


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


def with_self_loops(adj: torch.Tensor, seed: int) -> torch.Tensor:
    """``adj`` with self-loops of weights in [0.5, 1.5) on about half of its nodes (A + I must still add 1 to them)."""
    g = torch.Generator().manual_seed(seed)
    loops = (torch.rand(len(adj), generator=g) < 0.5) * (0.5 + torch.rand(len(adj), generator=g, dtype=torch.float64))
    return adj + torch.diag(loops)


def deep_graph() -> tuple[nx.Graph, torch.Tensor]:
    """A path of 90 nodes with edge weights 1e-4, a complete graph of 30 nodes with edge weights 1e3 and an
    isolated node. Along the path, k layers multiply k weights 1e-4 (below float64's smallest number after 81);
    in the complete graph the walk weights pass float64's largest number after about 70 layers. Only a
    propagation that keeps whether something arrived (0/1) at every step gets the receptive field right."""
    graph = nx.disjoint_union(nx.path_graph(90), nx.complete_graph(30))
    graph.add_node(120)
    adj = nx.to_numpy_array(graph, nodelist=sorted(graph), weight=None)
    adj[:90, :90] *= 1e-4
    adj[90:120, 90:120] *= 1e3
    return graph, torch.as_tensor(adj)


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


def reference_encoder(adj, x, weights, a_hat=None, last_tanh=False, extra_tanh=False, renormalise=False) -> np.ndarray:
    """GraphEncoder.node_states: A_hat, then GCN layers with tanh on all but the last.
    (The options give what a mistake would compute instead.)"""
    a_hat, h = reference_symmetric(adj) if a_hat is None else np.asarray(a_hat), np.asarray(x)
    num_layers = len(weights) // 2
    for i in range(num_layers):
        h = reference_layer(a_hat, h, weights[f"layers.{i}.weight"], weights[f"layers.{i}.bias"],
                            "tanh" if i < num_layers - 1 or last_tanh else None)
        h = np.tanh(h) if extra_tanh else h
        a_hat = reference_symmetric(a_hat) if renormalise else a_hat
    return h


def sizes_of(in_features: int, hidden: int, out_features: int, num_layers: int) -> list[int]:
    return [in_features] + [hidden] * (num_layers - 1) + [out_features]


def reach(adj, k: int, self_loops: bool = True) -> np.ndarray:
    """R[i, j] = True iff a walk of k steps along adj's edges (i <- j), with self-loops if asked, leads from j to i."""
    step = (np.asarray(adj) != 0) | (np.eye(len(adj), dtype=bool) if self_loops else False)
    r = np.eye(len(adj), dtype=bool)
    for _ in range(k):
        r = (step.astype(np.int64) @ r.astype(np.int64)) > 0
    return r


# ------------------------------------------------------------------------------ known mistakes
# (the check computes what a common mistake gives, so that its message can name the mistake)

def known_mistake(got, expected, mistakes: dict[str, np.ndarray], atol: float = 1e-9) -> str:
    """The first of ``mistakes`` (description -> what that mistake computes) whose result ``got`` equals
    while the correct ``expected`` does not; "" if none."""
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    for mistake, wrong in mistakes.items():
        wrong = np.asarray(wrong, dtype=float)
        if wrong.shape == got.shape and np.allclose(got, wrong, rtol=1e-7, atol=atol) and not (
                wrong.shape == expected.shape and np.allclose(wrong, expected, rtol=1e-7, atol=atol)):
            return mistake
    return ""


def assert_close(got, expected, what: str, mistakes=None, atol: float = 1e-12) -> None:
    """np.testing.assert_allclose(got, expected); if ``got`` is what one of ``mistakes()`` computes, the
    message names that mistake first."""
    got = np.asarray(got)
    if got.shape == np.shape(expected) and np.allclose(got, expected, rtol=1e-7, atol=atol):  # as assert_allclose
        return
    mistake = known_mistake(got, expected, mistakes()) if mistakes else ""
    assert not mistake, f"{what}: it looks like {mistake}"
    np.testing.assert_allclose(got, expected, atol=atol, err_msg=what)


def normalisation_mistakes(name: str, adj) -> dict[str, np.ndarray]:
    """What the common mistakes of normalized_adjacency or mean_adjacency give for ``adj``."""
    adj = np.asarray(adj, dtype=float)
    eye = np.eye(len(adj))
    a = adj + eye
    rows, cols, counts = a.sum(axis=1), a.sum(axis=0), (a != 0).sum(axis=1)
    without = np.maximum(adj.sum(axis=1), 1)  # the degrees of A, clamped as a student would to avoid 1/0
    only_missing = adj + np.diag(np.diag(adj) == 0)
    set_one = adj.copy()
    np.fill_diagonal(set_one, 1)
    binary = (adj != 0).astype(float)
    if name == "mean_adjacency":
        norm, reference = (lambda m, d: m / d[:, None]), reference_mean  # noqa: E731
        first = {"the columns are divided by the degrees, (A + I) D~^(-1), instead of the rows": a / rows[None, :]}
        last = {"no self-loops were added: D^(-1) A instead of D~^(-1) (A + I)": norm(adj, without),
                "this is the symmetric normalisation D~^(-1/2) (A + I) D~^(-1/2), not the mean D~^(-1) (A + I)":
                    reference_symmetric(adj)}
    else:
        norm, reference = (lambda m, d: m / np.sqrt(np.outer(d, d))), reference_symmetric  # noqa: E731
        first = {}
        last = {"no self-loops were added: A instead of A + I": norm(adj, without),
                "D~^(-1) on both sides instead of D~^(-1/2)": a / np.outer(rows, rows),
                "this is the mean normalisation D~^(-1) (A + I), not the symmetric D~^(-1/2) (A + I) D~^(-1/2)":
                    reference_mean(adj),
                "only the rows are scaled, D~^(-1/2) (A + I), without the factor D~^(-1/2) on the right":
                    a / np.sqrt(rows)[:, None]}
    both = {  # the mistakes both normalisations invite
        "the degrees come from the columns of A + I (in-degree) instead of the rows": norm(a, cols),
        "the degrees count a node's edges and ignore their weights": norm(a, counts),
        "the edge weights were dropped (every edge counted as weight 1)": reference(binary),
        "the degrees leave out the self-loop: those of A, not of A + I": norm(a, without),
        "the self-loops were added twice: A + 2I": reference(adj + eye),
        "a self-loop was added only where a node had none; an existing self-loop w must become w + 1":
            norm(only_missing, only_missing.sum(axis=1)),
        "the diagonal was set to 1 instead of adding I; an existing self-loop w must become w + 1":
            norm(set_one, set_one.sum(axis=1)),
        "the result is transposed, as if adj[i, j] were the edge from i to j": reference(adj).T,
    }
    return {**first, **last, **both}


def layer_mistakes(a_hat, h, weight, bias=None, activation=None) -> dict[str, np.ndarray]:
    """What the common mistakes of GCNLayer.forward give."""
    a_hat, z = np.asarray(a_hat), np.asarray(h) @ np.asarray(weight)
    act = lambda v: reference_layer(np.eye(len(v)), v, np.eye(v.shape[1]), None, activation)  # noqa: E731
    b = 0 if bias is None else np.asarray(bias)
    mistakes = {
        "A_hat is transposed: the layer sums along the outgoing edges, A_hat^T H W": act(a_hat.T @ z + b),
        "the graph is ignored: H W + b, without A_hat": act(z + b),
        "the features are propagated twice, A_hat A_hat H W": act(a_hat @ a_hat @ z + b),
        "the layer normalises A_hat again; it is given the normalised adjacency": act(reference_symmetric(a_hat) @ z + b),
    }
    if activation != "relu":
        mistakes[f"a ReLU is applied although the activation is {activation}"] = np.maximum(
            reference_layer(a_hat, h, weight, bias, None), 0)
    if activation is not None:
        mistakes["the activation is applied before the aggregation, A_hat sigma(H W + b)"] = a_hat @ act(z + b)
        mistakes["the activation is missing"] = a_hat @ z + b
    if bias is not None:
        mistakes["the bias is added before the aggregation, A_hat (H W + b): the rows of the symmetric A_hat "
                 "do not sum to 1, so this is not A_hat H W + b"] = act(a_hat @ (z + b))
        mistakes["the bias is missing"] = act(a_hat @ z)
        mistakes["the bias is added after the activation, sigma(A_hat H W) + b"] = act(a_hat @ z) + b
    return mistakes


def message_passing_mistakes(a_hat, h, weight) -> dict[str, np.ndarray]:
    """What the common mistakes of gcn_message_passing give."""
    a_hat, z = np.asarray(a_hat), np.asarray(h) @ np.asarray(weight)
    edges = (a_hat != 0).astype(float)
    return {
        "senders and receivers are swapped: node i sums along its outgoing edges, A_hat^T H W": a_hat.T @ z,
        "the messages ignore the edge weights A_hat[i, j]": edges @ z,
        "each node averages the messages it receives instead of summing them":
            (a_hat @ z) / np.maximum(edges.sum(axis=1), 1)[:, None],
        "each edge carries the receiver's own z[i] instead of the sender's z[j]": a_hat.sum(axis=1)[:, None] * z,
        "a self-message of weight 1 is added on top of A_hat, whose diagonal already holds the self-loops":
            (a_hat + np.eye(len(a_hat))) @ z,
        "A_hat is normalised again; it is already the normalised adjacency": reference_symmetric(a_hat) @ z,
        "the messages carry h[j] without the transformation W": a_hat @ np.asarray(h),
    }


def field_mistakes(adj, k: int) -> dict[str, np.ndarray]:
    """What the common mistakes of receptive_field give after k layers."""
    return {
        "off by one: this is the field after k + 1 layers": reach(adj, k + 1),
        "off by one: this is the field after k - 1 layers": reach(adj, max(k - 1, 0)),
        "only walks of exactly k steps count: propagate with A + I, not with A": reach(adj, k, self_loops=False),
        "the field is transposed: R[i, j] must say whether node j's features reach node i": reach(adj, k).T,
        "the field is the connected component, whatever the number of layers": reach(adj, len(adj)),
        "the walk counts were computed in int8, where they wrap around to 0; keep only whether something arrived":
            int8_walks(adj, k) != 0,
        "the walk counts were computed in int8, where they wrap around to negative numbers; keep only whether "
        "something arrived": int8_walks(adj, k) > 0,
    }


def int8_walks(adj, k: int) -> np.ndarray:
    """(A + I)^k of the 0/1 adjacency in int8 arithmetic, which wraps around modulo 256 (a mistake)."""
    step = ((np.asarray(adj) != 0) | np.eye(len(adj), dtype=bool)).astype(np.int8)
    walks = np.eye(len(adj), dtype=np.int8)
    for _ in range(k):
        walks = step @ walks  # int8: wraps around
    return walks


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
    assert got["out"].dtype == adj.dtype, \
        f"{name} must keep the adjacency's dtype: {adj.dtype} gave {got['out'].dtype} ({what or 'a graph'})"
    out = got["out"].numpy()
    assert out.shape == tuple(adj.shape), f"{name} of an {tuple(adj.shape)} adjacency has shape {out.shape}"
    assert_close(out, reference(adj.numpy()), f"{name} of {what or 'a graph'} ({'sparse' if sparse else 'dense'})",
                 lambda: normalisation_mistakes(name, adj.numpy()))
    return out


@pytest.mark.points(1, question="3.1 (a)")
def test_normalized_adjacency_by_hand(run):
    """normalized_adjacency of the path 0-1-2 equals D~^(-1/2)(A+I)D~^(-1/2) worked out by hand"""
    got = run(normalise, name="normalized_adjacency", adj=path3())
    assert not got["is_sparse"], "a dense adjacency gives a dense A_hat"
    np.testing.assert_allclose(got["out"].numpy(), PATH_SYMMETRIC, atol=1e-12,
                               err_msg="the path 0-1-2 (degrees with self-loops 2, 3, 2)")
    got = run(normalise, name="normalized_adjacency", adj=loop3())
    assert_close(got["out"].numpy(), LOOP_SYMMETRIC,
                 "the directed weighted graph [[0, 2, 0], [0, 0, 1], [1, 0, 1]] with a self-loop on node 2: "
                 "A + I = [[1, 2, 0], [0, 1, 1], [1, 0, 2]], row sums 3, 2, 3",
                 lambda: normalisation_mistakes("normalized_adjacency", loop3().numpy()))
    check_normalisation(run, "normalized_adjacency", random_graph(), what="a weighted undirected graph")
    check_normalisation(run, "normalized_adjacency", directed_graph(seed=10),
                        what="a directed graph (D~ holds the row sums of A + I, a node's incoming weights)")
    check_normalisation(run, "normalized_adjacency", with_self_loops(directed_graph(seed=13), seed=13),
                        what="a directed graph with self-loops (A + I adds 1 to each of them)")


@pytest.mark.points(1, question="3.1 (a)")
def test_mean_adjacency_differs_from_symmetric(run):
    """mean_adjacency is D~^(-1)(A+I): rows sum to 1, and it equals D~^(-1/2) A_hat D~^(1/2), not A_hat"""
    got = run(normalise, name="mean_adjacency", adj=path3())
    assert_close(got["out"].numpy(), PATH_MEAN, "the path 0-1-2", lambda: normalisation_mistakes("mean_adjacency", path3()))
    got = run(normalise, name="mean_adjacency", adj=loop3())
    assert_close(got["out"].numpy(), LOOP_MEAN,
                 "the directed weighted graph [[0, 2, 0], [0, 0, 1], [1, 0, 1]] with a self-loop on node 2: "
                 "A + I = [[1, 2, 0], [0, 1, 1], [1, 0, 2]], row sums 3, 2, 3",
                 lambda: normalisation_mistakes("mean_adjacency", loop3().numpy()))
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
    check_normalisation(run, "mean_adjacency", with_self_loops(directed_graph(seed=14), seed=14),
                        what="a directed graph with self-loops (A + I adds 1 to each of them)")


@pytest.mark.points(1, question="3.1 (a)")
def test_sparse_normalisations_match_dense(run):
    """both normalisations take a torch.sparse adjacency, return it sparse and agree with the dense result"""
    for adj, what in ((random_graph(seed=2), "a weighted undirected graph"),
                      (directed_graph(seed=12), "a directed graph"),
                      (with_self_loops(random_graph(seed=15), seed=15), "a weighted graph with self-loops")):
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
        assert_close(got["out"].numpy(), expected, f"GCNLayer(4, 3, activation=torch.relu), {kind} A_hat: relu(A_hat H W + b)",
                     lambda: layer_mistakes(a_hat, h, w, b, "relu"))
        for name, grad in expected_grads.items():
            got_grad = got["grads"].get(name)
            assert got_grad is not None, f"no gradient reached the layer's {name} ({kind} A_hat)"
            np.testing.assert_allclose(got_grad.numpy(), grad, atol=1e-12,
                                       err_msg=f"gradient of out.sum() with respect to {name} ({kind} A_hat)")
    linear = layer_weights(4, 3, seed=31, bias=False)
    got = run(gcn_layer, weights=linear, adj_hat=a_hat, h=h)
    assert_close(got["out"].numpy(), reference_layer(a_hat, h, linear["weight"]),
                 "GCNLayer(4, 3, bias=False) without activation: A_hat H W",
                 lambda: layer_mistakes(a_hat, h, linear["weight"]))
    # a directed graph: A_hat is not symmetric, so the layer must aggregate along the rows of A_hat
    directed = torch.as_tensor(reference_symmetric(directed_graph(seed=32).numpy()))
    weights = layer_weights(4, 3, seed=33)
    expected = reference_layer(directed, h, weights["weight"], weights["bias"], "tanh")
    for sparse in (False, True):
        got = run(gcn_layer, weights=weights, adj_hat=directed, h=h, sparse=sparse, activation="tanh")
        assert_close(got["out"].numpy(), expected,
                     f"GCNLayer(4, 3, activation=torch.tanh) on a directed graph, {'sparse' if sparse else 'dense'} "
                     "A_hat: tanh(A_hat H W + b), row i of A_hat mixing the nodes that node i receives from",
                     lambda: layer_mistakes(directed, h, weights["weight"], weights["bias"], "tanh"))


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
            assert out.shape != h.shape, "output shape (n, d_in): the messages carry h[j] without the transformation W"
            assert out.shape == (12, 2), f"output shape {tuple(out.shape)}, not (n, d_out)"
            assert_close(out.numpy(), expected, f"{what}, {'sparse' if sparse else 'dense'} A_hat: node i sums "
                                                "A_hat[i, j] * (H W)[j] over the senders j of its edges",
                         lambda: message_passing_mistakes(a_hat, h, w))


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


def check_field(got, expected, what, adj=None, k=None):
    """The field ``got`` equals ``expected``; given ``adj`` and ``k``, the message names a known mistake."""
    assert not got["is_sparse"], f"receptive_field returns a dense boolean matrix ({what})"
    field = got["field"]
    assert field.dtype == torch.bool and field.shape == expected.shape, \
        f"receptive_field must return a bool (n, n) matrix, got {field.dtype} {tuple(field.shape)} ({what})"
    if adj is not None and not np.array_equal(field.numpy(), expected):
        mistake = known_mistake(field.numpy(), expected, field_mistakes(adj, k))
        assert not mistake, f"{what}: it looks like {mistake}"
    np.testing.assert_array_equal(field.numpy(), expected, err_msg=what)


@pytest.mark.points(1, question="3.1 (b)")
def test_receptive_field_is_k_hop_neighbourhood(run):
    """receptive_field after k layers is exactly the k-hop neighbourhood: the karate club, a graph in pieces,
    a directed weighted graph, and 40 to 120 layers where walk weights underflow and overflow"""
    karate = nx.karate_club_graph()
    pieces = nx.disjoint_union(nx.path_graph(7), nx.cycle_graph(5))
    pieces.add_node(12)  # and an isolated node
    for name, graph in (("karate club", karate), ("path + cycle + isolated node", pieces)):
        adj = torch.as_tensor(nx.to_numpy_array(graph, nodelist=sorted(graph), weight=None))
        for k, got in enumerate(run(receptive_fields, adj=adj, layers=list(range(5)))):
            check_field(got, hop_matrix(graph, k), f"{name}, {k} layers", adj.numpy(), k)
        (got,) = run(receptive_fields, adj=adj, layers=[3], sparse=True)
        check_field(got, hop_matrix(graph, 3), f"{name}, 3 layers, sparse adjacency", adj.numpy(), 3)
    # directed, with weights in [0.1, 0.9): adj[i, j] > 0 is the edge i <- j, networkx's edge i -> j, so that
    # j reaches i's output after k layers iff networkx's shortest path from i to j has at most k edges
    g = torch.Generator().manual_seed(20)
    adj = torch.triu(torch.rand(15, 15, generator=g) < 0.2, diagonal=1).double()
    adj = adj * (0.1 + 0.8 * torch.rand(15, 15, generator=g, dtype=torch.float64))
    adj[14, 0] = 0.3  # and one edge back, 0 -> 14
    graph = nx.from_numpy_array(adj.numpy(), create_using=nx.DiGraph)
    for sparse in (False, True):
        for k, got in zip((1, 2, 4), run(receptive_fields, adj=adj, layers=[1, 2, 4], sparse=sparse)):
            check_field(got, hop_matrix(graph, k), f"a directed graph with edge weights below 1, {k} layers"
                        f"{', sparse adjacency' if sparse else ''}: R[i, j] says whether node j reaches node i",
                        adj.numpy(), k)
    graph, adj = deep_graph()
    for k, got in zip((40, 85, 120), run(receptive_fields, adj=adj, layers=[40, 85, 120])):
        check_field(got, hop_matrix(graph, k), f"{k} layers on a path of 90 nodes with edge weights 1e-4 next to a "
                    "complete graph of 30 nodes with edge weights 1e3: after each layer keep only whether something "
                    "arrived (0/1), or the products of weights underflow to 0 and overflow to inf")


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
    assert_close(got["adj"].numpy(), chain, "the adjacency of the undirected path 0 - 1 - ... - 5", lambda: {
        "the chain is directed (t -> t + 1 only); the path is undirected, adj[t, t + 1] = adj[t + 1, t] = 1":
            np.triu(chain), "the chain is directed (t + 1 -> t only); the path is undirected": np.tril(chain),
        "the chain has self-loops; normalized_adjacency adds them itself": chain + np.eye(6),
        "the chain is closed into a ring: the last element is not a neighbour of the first":
            nx.to_numpy_array(nx.cycle_graph(6), weight=None)}, atol=0)
    np.testing.assert_array_equal(got["features"].numpy(), x.numpy(), err_msg="without positions the features are x")
    for positions in (4, 5):
        got = run(chain_graph, x=x, positions=positions)
        np.testing.assert_array_equal(got["adj"].numpy(), chain, err_msg=f"positions={positions}: the same path")
        feats = got["features"]
        assert feats.shape != (6, positions), \
            f"positions={positions}: the features are the positions alone; append them to x, (6, {3 + positions})"
        assert feats.shape == (6, 3 + positions), \
            f"positions={positions}: features have shape {tuple(feats.shape)}, not (6, {3 + positions})"
        if np.allclose(feats[:, positions:].numpy(), x.numpy()):
            raise AssertionError(f"positions={positions}: the positions come before x; append them on the right")
        np.testing.assert_array_equal(feats[:, :3].numpy(), x.numpy(), err_msg="x comes first, unchanged")
        assert feats.dtype == torch.float64, \
            f"positions={positions}: the features take the sequence's dtype, float64 here, not {feats.dtype}"
        appended, encoding = feats[:, 3:].numpy(), got["encoding"].numpy()
        if not np.allclose(appended, encoding, rtol=0, atol=1e-12) and \
                np.allclose(appended, got["encoding"].float().double().numpy(), rtol=0, atol=1e-12):
            raise AssertionError(f"positions={positions}: the positions were computed in float32 and then cast, so they "
                                 "lose precision: use positional_encoding(T, positions, dtype=x.dtype)")
        assert np.allclose(appended, encoding, rtol=0, atol=1e-12) or not np.allclose(
            appended, reference_positions(7, positions)[1:], rtol=0, atol=1e-12), \
            f"positions={positions}: the positions are counted from 1; the first element is at position 0"
        np.testing.assert_allclose(appended, encoding, rtol=0, atol=1e-12,
                                   err_msg=f"the last {positions} columns are positional_encoding(T, {positions})")
        # positional_encoding is given code: the formula of its docstring is the assignment's
        np.testing.assert_allclose(appended, reference_positions(6, positions), rtol=0, atol=1e-12,
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
    a, xs = adj.numpy(), x.numpy()
    assert_close(got["states"].numpy(), expected, "node_states: A_hat = normalized_adjacency(A), then the 3 GCN layers "
                                                 "(tanh, tanh, no activation)", lambda: {
        "the layers get the raw A instead of A_hat = normalized_adjacency(A)": reference_encoder(a, xs, weights, a_hat=a),
        "the layers get A + I instead of A_hat = normalized_adjacency(A)":
            reference_encoder(a, xs, weights, a_hat=a + np.eye(len(a))),
        "the layers get mean_adjacency(A) instead of normalized_adjacency(A)":
            reference_encoder(a, xs, weights, a_hat=reference_mean(a)),
        "the last layer also has a tanh; it has no activation": reference_encoder(a, xs, weights, last_tanh=True),
        "a tanh is applied after every layer, the last one too (the layers that have one get it twice)":
            reference_encoder(a, xs, weights, extra_tanh=True),
        "each layer normalises the adjacency again, so the layers after the first see it normalised twice":
            reference_encoder(a, xs, weights, renormalise=True)})
    assert got["pooled"].shape == (2,), f"forward returns shape {tuple(got['pooled'].shape)}, not (out_features,)"
    assert_close(got["pooled"].numpy(), expected.mean(axis=0), "forward is the mean of the node states over the nodes",
                 lambda: {"the node states are summed instead of averaged": expected.sum(axis=0),
                          "the mean over the nodes is taken of the input features, not of the final node states":
                              reference_encoder(a, np.broadcast_to(xs.mean(axis=0), xs.shape), weights).mean(axis=0),
                          "max pooling: forward is the mean over the nodes, not the maximum": expected.max(axis=0),
                          "the graph is encoded by its last node's state, not the mean over the nodes": expected[-1]})
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
