"""Invariants of the model parts on tiny sizes, checked against dense reference computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mmalign.graph import build_graph
from mmalign.model.fusion import AdaptiveWeights, LowRankFusion
from mmalign.model.config import ModelConfig
from mmalign.model.loginmea import LoginMEA
import mmalign.model.loss as loss_module
from mmalign.model.loss import FLOOR_LOGIT, PRODUCT_COLUMNS, _similarities, icl, infonce, infonce_sym, nhs
from mmalign.model.rrea import RREALayer, relation_set_vectors



def _config(**settings: object) -> ModelConfig:
    """The code variant's model (structure branch, early concatenation) with ``settings``."""
    return ModelConfig(**{"structure_branch": True, "joint_layer0": "early_concat", **settings})

def _tiny_graph():
    triples = np.array([[0, 0, 1], [1, 1, 2], [2, 0, 0], [0, 1, 1], [3, 2, 4], [4, 2, 3], [2, 2, 2]])
    return build_graph(triples, n_entities=6, n_relations=3)


def test_graph_edges_and_relation_sets() -> None:
    graph = _tiny_graph()
    pairs = list(zip(graph.rows.tolist(), graph.cols.tolist()))
    assert pairs == sorted(set(pairs))  # de-duplicated, sorted
    # edge 0 ← 1 carries relations {0, 1} (two triples), so its set has two members
    e = pairs.index((0, 1))
    members = graph.set_pattern.cols[graph.set_pattern.rows == graph.edge_set[e]].tolist()
    assert sorted(members) == [0, 1]
    # isolated entity 5: only itself in the neighbourhood mean
    assert graph.mean_weights[graph.mean_pattern.rows == 5].tolist() == [1.0]


def _graph_with_shared_sets():
    """The tiny graph plus entities 6 and 7, each reaching two neighbours through one relation:
    edges that share an (entity, relation set) pair on the row side and on the column side."""
    triples = np.array([[0, 0, 1], [1, 1, 2], [2, 0, 0], [0, 1, 1], [3, 2, 4], [4, 2, 3], [2, 2, 2],
                        [6, 2, 3], [6, 2, 4], [7, 0, 3], [7, 0, 6]])
    return build_graph(triples, n_entities=8, n_relations=3)


def test_edges_sharing_a_relation_set_share_one_entry() -> None:
    graph = _graph_with_shared_sets()
    for pattern, ends, pair in ((graph.row_set, graph.rows, graph.row_pair), (graph.col_set, graph.cols, graph.col_pair)):
        distinct = sorted(set(zip(ends.tolist(), graph.edge_set.tolist())))
        assert list(zip(pattern.rows.tolist(), pattern.cols.tolist())) == distinct
        assert pattern.nnz < graph.n_edges  # entity 6's two edges through relation 2 share one
        assert torch.equal(pattern.rows[pair], ends) and torch.equal(pattern.cols[pair], graph.edge_set)


@pytest.mark.parametrize("attention", ["relation", "full"])
@pytest.mark.parametrize("make_graph", [_tiny_graph, _graph_with_shared_sets])
def test_rrea_reflection_is_orthogonal_and_matches_edge_loop(attention: str, make_graph) -> None:
    torch.manual_seed(0)
    graph = make_graph()
    n = graph.n_entities
    table = torch.randn(6, 4, requires_grad=True)
    u = relation_set_vectors(graph, table)
    x = torch.randn(n, 4, requires_grad=True)
    layer = RREALayer(4, attention)
    out = layer(x, graph, u)
    # Reference: explicit per-edge Householder matrices and attention scores.
    expected = [torch.zeros(4)] * n
    for i in range(n):
        edges = (graph.rows == i).nonzero().flatten()
        if len(edges) == 0:
            continue
        messages, scores = [], []
        for e in edges:
            ue = u[graph.edge_set[e]]
            reflection = torch.eye(4) - 2 * torch.outer(ue, ue)
            assert torch.allclose(reflection.T @ reflection, torch.eye(4), atol=1e-5)
            msg = reflection @ x[graph.cols[e]]
            assert torch.isclose(msg.norm(), x[graph.cols[e]].norm(), atol=1e-5)
            messages.append(msg)
            scored = torch.cat([x[i], msg, ue]) if attention == "full" else ue  # RREA's [x_i; msg; u]
            scores.append(scored @ layer.attention.squeeze(1))
        beta = torch.softmax(torch.stack(scores), 0)
        expected[i] = (beta.unsqueeze(1) * torch.stack(messages)).sum(0)
    reference = torch.tanh(torch.stack(expected))
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.all(out[5] == 0)  # isolated rows get tanh(0)
    # The gradients too: with respect to the entities, the relations and the attention.
    weights = torch.randn(n, 4)
    got = torch.autograd.grad((out * weights).sum(), (x, table, layer.attention), retain_graph=True)
    want = torch.autograd.grad((reference * weights).sum(), (x, table, layer.attention))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-5)
    # Without gradients (the whole-graph forward, a slice of rows at a time): the same output.
    with torch.no_grad():
        assert torch.allclose(layer(x, graph, u), out, atol=1e-6)


@pytest.mark.parametrize("attention", ["relation", "full"])
def test_rrea_gradients_repeat_bit_for_bit_with_several_threads(attention: str) -> None:
    """Indexing with repeated indices sums its gradient in a thread-dependent order; the layer must not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        n, n_edges, n_rel = 20_000, 200_000, 50
        triples = np.stack([torch.randint(0, n, (n_edges,), generator=g).numpy(),
                            torch.randint(0, n_rel, (n_edges,), generator=g).numpy(),
                            torch.randint(0, n, (n_edges,), generator=g).numpy()], 1)
        graph = build_graph(triples, n, n_rel)
        layer = RREALayer(16, attention)
        table, x = torch.randn(2 * n_rel, 16, generator=g), torch.randn(n, 16, generator=g)

        def gradients() -> list[torch.Tensor]:
            t, xx = table.clone().requires_grad_(), x.clone().requires_grad_()
            layer.zero_grad()
            (layer(xx, graph, relation_set_vectors(graph, t)) ** 2).sum().backward()
            return [t.grad, xx.grad, layer.attention.grad.clone()]

        first = gradients()
        for _ in range(3):
            assert all(torch.equal(a, b) for a, b in zip(first, gradients()))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("n_modalities", [1, 2, 3])
def test_low_rank_fusion_equals_explicit_tensor_fusion(n_modalities: int) -> None:
    torch.manual_seed(0)
    d, out, rank, n = 3, 2, 4, 5
    fusion = LowRankFusion([d] * n_modalities, out, rank).double()
    torch.nn.init.normal_(fusion.bias)
    xs = [torch.randn(n, d, dtype=torch.float64) for _ in range(n_modalities)]
    zs = [torch.cat([torch.ones(n, 1, dtype=torch.float64), x], 1) for x in xs]
    # Full weight tensor W[i1..iM, o] = Σ_k λ_k Π_m F_m[k, i_m, o]
    full = torch.zeros([d + 1] * n_modalities + [out], dtype=torch.float64)
    for k in range(rank):
        term = fusion.rank_weights[0, k] * torch.ones([d + 1] * n_modalities + [out], dtype=torch.float64)
        for m, factor in enumerate(fusion.factors):
            shape = [1] * n_modalities + [out]
            shape[m] = d + 1
            term = term * factor[k].view(shape)
        full += term.detach()
    expected = torch.zeros(n, out, dtype=torch.float64)
    for idx in itertools.product(range(d + 1), repeat=n_modalities):
        outer = torch.ones(n, dtype=torch.float64)
        for m, i in enumerate(idx):
            outer = outer * zs[m][:, i]
        expected += outer[:, None] * full[idx]
    assert torch.allclose(fusion(xs), expected + fusion.bias, atol=1e-10)


def test_adaptive_weights_are_a_distribution_per_entity() -> None:
    weights = AdaptiveWeights(4, 3)([torch.randn(6, 4) for _ in range(3)])
    assert weights.shape == (6, 3) and torch.allclose(weights.sum(1), torch.ones(6))


@pytest.mark.parametrize("loss", [infonce, infonce_sym, icl, nhs])
def test_loss_gradient_pulls_pairs_together(loss) -> None:
    torch.manual_seed(0)
    left = torch.randn(8, 5, requires_grad=True)
    right = torch.randn(8, 5)
    value = loss(left, right)
    value.backward()
    stepped = (left - 0.5 * left.grad).detach()
    assert loss(stepped, right) < value
    assert loss(right.clone(), right) < value  # aligned embeddings score better


def test_hard_sample_loss_matches_its_autograd_definition() -> None:
    """Dual-AMN's loss written plainly: standardised differences to the positive, held constant."""
    torch.manual_seed(0)
    left = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
    right = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
    sims = torch.nn.functional.normalize(left, dim=1) @ torch.nn.functional.normalize(right, dim=1).T
    pos, eye = sims.diagonal(), torch.eye(30, dtype=torch.bool)
    expected = 0.0
    for diff in (sims - pos[:, None], (sims - pos[None, :]).T):  # left anchors, then right anchors
        mean, std = diff.mean(1, keepdim=True).detach(), diff.std(1, keepdim=True).detach()
        expected = expected + torch.logsumexp(((diff - mean) / std * 30).masked_fill(eye, float("-inf")), 1).mean()
    got = nhs(left, right)
    assert torch.allclose(got, expected)
    for a, b in zip(torch.autograd.grad(got, (left, right)), torch.autograd.grad(expected, (left, right))):
        assert torch.allclose(a, b, atol=1e-9)



@pytest.mark.parametrize("dense_share", [0.0, 1.0])  # the gradient kept whole; always sparse
def test_hard_sample_gradient_keeps_the_floor_of_easy_anchors(monkeypatch, dense_share) -> None:
    """An anchor whose positive lies far above every negative has them all at the floor and
    pushes them equally; the sparse gradient and the whole one equal the plain formula."""
    monkeypatch.setattr(loss_module, "DENSE_SHARE", dense_share)
    torch.manual_seed(0)
    n, width = 40, 64
    base = torch.randn(n, width, dtype=torch.float64)
    base[5:10] = base[:5] + 0.1 * torch.randn(5, width, dtype=torch.float64)  # hard negatives of rows 0-4
    left = (base + 0.05 * torch.randn(n, width, dtype=torch.float64)).requires_grad_()
    right = (base + 0.05 * torch.randn(n, width, dtype=torch.float64)).requires_grad_()
    sims = torch.nn.functional.normalize(left, dim=1) @ torch.nn.functional.normalize(right, dim=1).T
    eye = torch.eye(n, dtype=torch.bool)
    gradient, expected, easy = torch.zeros(n, n, dtype=torch.float64), 0.0, []
    for transposed, anchors_as_rows in ((False, sims.detach()), (True, sims.detach().T)):
        mean, std = anchors_as_rows.mean(1, keepdim=True), anchors_as_rows.std(1, keepdim=True)
        factor, top = 30 / std, anchors_as_rows.amax(1, keepdim=True)
        logits = ((anchors_as_rows - top) * factor).clamp_min(FLOOR_LOGIT)
        easy.append(bool((logits.masked_fill(eye, FLOOR_LOGIT) == FLOOR_LOGIT).all(1).any()))
        weights = logits.exp().masked_fill(eye, 0.0)
        sums = weights.sum(1, keepdim=True)
        expected += float((sums.log() + (top - mean) * factor).sum()) / n
        part = weights * factor / (sums * n) - torch.diag(factor.flatten() / n)
        gradient += part.T if transposed else part
    assert all(easy)  # some anchors of each direction have every negative at the floor
    got = nhs(left, right)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    wanted = torch.autograd.grad((gradient * sims).sum(), (left, right))
    for a, b in zip(torch.autograd.grad(got, (left, right)), wanted):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "config",
    [
        _config(dim=8, modal_dim=8, rank=2),
        _config(dim=8, modal_dim=8, rank=2, structure_branch=False, joint_layer0="fused"),
        _config(dim=8, modal_dim=8, rank=2, fusion="concat"),
        _config(dim=8, modal_dim=8, rank=2, fusion="weighted_sum", adaptive_weights=False),
        _config(dim=8, modal_dim=8, rank=2, graph_layer="gat"),
        _config(dim=8, modal_dim=8, rank=2, attention="full"),
        _config(dim=8, modal_dim=8, rank=2, paradigm="gam"),
        _config(dim=8, modal_dim=8, rank=2, paradigm="gum", modality_score="per_modality"),
    ],
)
def test_every_variant_runs_forward_and_backward(config: ModelConfig) -> None:
    torch.manual_seed(0)
    graph = _tiny_graph()
    features = [torch.randn(6, 5), torch.randn(6, 7).to_sparse_csr()]
    model = LoginMEA(config, [5, 7], n_entities=6, n_relations=3)
    out = model(features, graph)
    assert out.shape[0] == 6 and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_low_rank_fusion_in_bfloat16_stays_close_to_float32() -> None:
    torch.manual_seed(0)
    exact = LowRankFusion([16, 16], 8, 4)
    fast = LowRankFusion([16, 16], 8, 4, torch.bfloat16)
    fast.load_state_dict(exact.state_dict())
    xs = [torch.nn.functional.normalize(torch.randn(50, 16), dim=1) for _ in range(2)]
    reference, approx = exact(xs), fast(xs)
    assert approx.dtype == torch.float32
    assert torch.allclose(approx, reference, atol=0.05 * float(reference.detach().abs().max()))
    approx.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fast.parameters())


@pytest.mark.parametrize("weight", [0.5, 2.0])
def test_direct_block_mixes_cosines_with_the_stated_weight(weight: float) -> None:
    """Output cosine = (cos_model + w² cos_direct) / (1 + w²), whatever the model rows' scale."""
    torch.manual_seed(0)
    graph = _tiny_graph()
    names = torch.randn(6, 5)
    features = [torch.randn(6, 7).to_sparse_csr(), names]
    config = _config(dim=8, modal_dim=8, rank=2, direct_weight=weight)
    with_direct = LoginMEA(config, [7, 5], n_entities=6, n_relations=3, direct=[1])
    model_part = torch.cat(with_direct.forward_blocks(features, graph)[:-1], dim=1)
    out = torch.nn.functional.normalize(with_direct(features, graph), dim=1)
    unit_model = torch.nn.functional.normalize(model_part, dim=1)
    unit_names = torch.nn.functional.normalize(names, dim=1)
    expected = (unit_model @ unit_model.T + weight**2 * unit_names @ unit_names.T) / (1 + weight**2)
    assert torch.allclose(out @ out.T, expected, atol=1e-5)


def test_direct_block_projects_wide_sparse_inputs_with_a_fixed_matrix() -> None:
    torch.manual_seed(0)
    graph = _tiny_graph()
    features = [torch.randn(6, 7), (torch.rand(6, 64) > 0.8).float().to_sparse_csr()]
    config = _config(dim=8, modal_dim=8, rank=2, direct_dim=10)  # the block's width is its own
    first = LoginMEA(config, [7, 64], n_entities=6, n_relations=3, direct=[1])
    torch.manual_seed(1)  # a different model seed must not change the fixed projection
    second = LoginMEA(config, [7, 64], n_entities=6, n_relations=3, direct=[1])
    assert torch.equal(first.direct_projection_1, second.direct_projection_1)
    assert first.direct_projection_1.shape == (64, 10)
    assert "direct_projection_1" not in first.state_dict()
    assert first.forward_blocks(features, graph)[-1].shape == (6, 10)
    off = LoginMEA(_config(dim=8, modal_dim=8, rank=2, direct_weight=0.0), [7, 64], 6, 3, direct=[1])
    assert len(off.forward_blocks(features, graph)) == len(first.forward_blocks(features, graph)) - 1


def test_reweighting_the_direct_block_equals_training_with_that_weight() -> None:
    torch.manual_seed(0)
    graph = _tiny_graph()
    features = [torch.randn(6, 7), (torch.rand(6, 64) > 0.7).float().to_sparse_csr()]
    trained = LoginMEA(_config(dim=8, modal_dim=8, rank=2, direct_weight=1.0, direct_dim=8), [7, 64], 6, 3, direct=[1])
    other = LoginMEA(_config(dim=8, modal_dim=8, rank=2, direct_weight=0.5, direct_dim=8), [7, 64], 6, 3, direct=[1])
    other.load_state_dict(trained.state_dict())
    unit = torch.nn.functional.normalize(trained(features, graph), dim=1)
    expected = torch.nn.functional.normalize(other(features, graph), dim=1)
    assert trained.direct_width == 8
    assert torch.allclose(trained.reweight_direct(unit, 0.5), expected, atol=1e-6)
    assert torch.allclose(trained.reweight_direct(unit, 1.0), unit, atol=1e-6)


def test_direct_block_keeps_inputs_narrower_than_its_width_as_they_are() -> None:
    features = [torch.randn(6, 7), (torch.rand(6, 64) > 0.7).float().to_sparse_csr()]
    model = LoginMEA(_config(dim=8, modal_dim=8, rank=2), [7, 64], 6, 3, direct=[1])  # direct_dim 300
    assert model.direct_width == 64 and not hasattr(model, "direct_projection_1")
    expected = torch.nn.functional.normalize(features[1].to_dense(), dim=1)
    assert torch.allclose(model.direct_units(features)[0], expected)


def test_direct_units_are_computed_once_per_input_and_redone_for_new_inputs() -> None:
    torch.manual_seed(0)
    first = [torch.randn(6, 7), (torch.rand(6, 64) > 0.7).float().to_sparse_csr()]
    model = LoginMEA(_config(dim=8, modal_dim=8, rank=2, direct_dim=8), [7, 64], 6, 3, direct=[1])
    units = model.direct_units(first)
    assert model.direct_units(first)[0] is units[0]  # same inputs: served from the cache
    second = [first[0], (torch.rand(6, 64) > 0.7).float().to_sparse_csr()]
    fresh = model.direct_units(second)[0]
    expected = torch.nn.functional.normalize(second[1].to_dense() @ model.direct_projection_1, dim=1)
    assert torch.allclose(fresh, expected, atol=1e-6)


_VARIANTS = [
    {},
    {"joint_layer0": "fused"},
    {"paradigm": "gam"},
    {"paradigm": "gum", "structure_branch": False},
    {"fusion": "weighted_sum"},
    {"fusion": "concat", "joint_layer0": "fused"},
    {"graph_layer": "gat"},
]


@pytest.mark.parametrize("settings", _VARIANTS, ids=[",".join(f"{k}={v}" for k, v in s.items()) or "code" for s in _VARIANTS])
def test_streamed_forward_without_gradients_equals_the_training_forward(settings: dict, monkeypatch) -> None:
    """The whole-graph forward streams its blocks and runs the local stage and the graph layers by slices of rows; same output.

    ``width`` lays the output out before any block exists, so it must equal the blocks' sum.
    """
    import mmalign.model.loginmea as loginmea
    import mmalign.model.rrea as rrea

    torch.manual_seed(0)
    graph = _tiny_graph()
    features = [(torch.rand(6, 7) > 0.5).float().to_sparse_csr(), torch.randn(6, 5), (torch.rand(6, 64) > 0.7).float().to_sparse_csr()]
    model = LoginMEA(_config(dim=8, modal_dim=8, rank=2, direct_dim=8, **settings), [7, 5, 64], 6, 3, direct=[2])
    whole = torch.cat(model.forward_blocks(features, graph), dim=1)  # gradients on: nothing streamed or sliced
    assert model.width == whole.shape[1]
    for module in (loginmea, rrea):
        monkeypatch.setattr(module, "SLICE_ROWS", 4)  # two slices of rows, the second short
    with torch.no_grad():
        streamed = list(model.iter_blocks(features, graph))
    assert [b.shape[1] for b in streamed] == [b.shape[1] for b in model.forward_blocks(features, graph)]
    assert torch.allclose(torch.cat(streamed, dim=1), whole, atol=1e-6)


def test_loss_similarities_in_column_blocks_equal_the_whole_product() -> None:
    """Blocks of right rows, the last one short, land in their columns of the one matrix."""
    torch.manual_seed(0)
    left, right = torch.randn(300, 24), torch.randn(2 * PRODUCT_COLUMNS + 37, 24)
    assert torch.allclose(_similarities(left, right), left @ right.T, atol=1e-5)
