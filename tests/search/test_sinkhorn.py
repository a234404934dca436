"""Sinkhorn ranking: a dense reference where the lists hold everything, a full order where
they do not, hubs shared out, and the setting checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.evaluation import RankingConfig, RankMethod, evaluate_pairs
from mmalign.search import ListSides, rank_of_targets, sinkhorn_ranks, sinkhorn_topk
from mmalign.search.sinkhorn import sinkhorn_entries
from vectors import unit


def dense_ranks(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, temperature: float,
                iterations: int) -> torch.Tensor:
    """SEU's dense Sinkhorn (rows, then columns, in turn), ranked: the reference."""
    scores = (queries @ candidates.T).double() / temperature
    for _ in range(iterations):
        scores = scores - scores.logsumexp(1, keepdim=True)
        scores = scores - scores.logsumexp(0, keepdim=True)
    own = scores.gather(1, targets[:, None])
    return 1 + (scores > own).sum(1)


@pytest.mark.parametrize("sides", list(ListSides))
def test_lists_holding_every_candidate_give_dense_sinkhorn(sides: ListSides) -> None:
    queries, candidates = unit(40, 16, seed=1), unit(40, 16, seed=2)
    targets = torch.arange(40)
    got = sinkhorn_ranks(queries, candidates, targets, lists=40, temperature=0.05, iterations=10, sides=sides)
    assert torch.equal(got, dense_ranks(queries, candidates, targets, 0.05, 10))


def test_the_kept_pairs_are_the_queries_lists_or_both_sides() -> None:
    """``queries`` keeps each query's best ``lists`` by cosine and nothing else; ``both`` adds
    each candidate's best, so a candidate no query lists still has its pairs."""
    queries, candidates = unit(30, 16, seed=11), unit(50, 16, seed=12)
    mine = sinkhorn_entries(queries, candidates, lists=3, temperature=0.02, iterations=10, sides=ListSides.QUERIES)
    best = (queries @ candidates.T).topk(3, dim=1).indices
    assert torch.equal(mine.rows, torch.arange(30).repeat_interleave(3))
    assert [set(mine.columns[mine.rows == q].tolist()) for q in range(30)] == [set(row.tolist()) for row in best]
    both = sinkhorn_entries(queries, candidates, lists=3, temperature=0.02, iterations=10)
    kept = set(zip(both.rows.tolist(), both.columns.tolist()))
    assert set(zip(mine.rows.tolist(), mine.columns.tolist())) < kept
    assert set(both.columns.tolist()) == set(range(50))  # every candidate keeps its own best queries


@pytest.mark.parametrize("sides", list(ListSides))
@pytest.mark.parametrize("csls_k", [0, 2, 5])  # 5: more than the lists hold, its radii take a pass
def test_every_candidate_gets_its_own_rank_when_the_lists_are_short(csls_k: int, sides: ListSides) -> None:
    """All candidates as one query's targets: the ranks are exactly 1..C (the kept entries by
    Sinkhorn, then the rest by CSLS or cosine), so no rank is shared or skipped."""
    queries, candidates = unit(30, 16, seed=3), unit(50, 16, seed=4)
    for query in (0, 7):
        ranks = sinkhorn_ranks(queries, candidates, torch.arange(50), lists=3, temperature=0.02, iterations=10,
                               sides=sides, csls_k=csls_k, query_rows=torch.full((50,), query))
        assert sorted(ranks.tolist()) == list(range(1, 51))
        entries = sinkhorn_entries(queries, candidates, lists=3, temperature=0.02, iterations=10, sides=sides)
        kept = entries.columns[entries.starts[query] : entries.starts[query + 1]]
        assert torch.equal(ranks[kept], torch.arange(1, len(kept) + 1))  # the entries first, best first
        rest = torch.tensor([c for c in range(50) if c not in set(kept.tolist())])
        alone = rank_of_targets(queries, candidates, rest, csls_k=csls_k, query_rows=torch.full((len(rest),), query))
        assert torch.equal(torch.argsort(ranks[rest]), torch.argsort(alone))  # then as without Sinkhorn


def test_a_hub_is_shared_out() -> None:
    """Two queries whose nearest candidate is the same hub: by cosine both rank the hub first;
    Sinkhorn gives the hub to the nearer one and the other its own second-best."""
    candidates = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05, 0.0], [0.95, 0.35, 0.0], [0.0, 0.1, 1.0]]), dim=1)
    targets = torch.tensor([0, 1, 2])
    assert rank_of_targets(queries, candidates, targets).tolist() == [1, 2, 1]
    assert sinkhorn_ranks(queries, candidates, targets, lists=3, temperature=0.02, iterations=10).tolist() == [1, 1, 1]


def test_evaluation_ranks_by_the_configured_method() -> None:
    left, right = unit(60, 16, seed=5), unit(60, 16, seed=6)
    pairs = np.stack([np.arange(60), np.arange(60)], axis=1)
    candidates = np.arange(60)
    csls = evaluate_pairs(left, right, pairs, candidates, csls_k=3)
    assert evaluate_pairs(left, right, pairs, candidates, csls_k=3, ranking=RankingConfig(method=RankMethod.CSLS)) == csls
    sinkhorn = evaluate_pairs(left, right, pairs, candidates, csls_k=3, ranking=RankingConfig(sinkhorn_lists=60))
    reference = dense_ranks(left, right, torch.arange(60), 0.02, 10).double()
    assert sinkhorn["mr"] == pytest.approx(float(reference.mean()))


def test_no_targets_no_ranks() -> None:
    ranks = sinkhorn_ranks(unit(5, 8, seed=9), unit(6, 8, seed=10), torch.empty(0, dtype=torch.int64), lists=3,
                           temperature=0.02, iterations=10)
    assert ranks.shape == (0,) and ranks.dtype == torch.int64


def test_ranking_settings_are_checked() -> None:
    with pytest.raises(MMAlignError, match="--sinkhorn-temperature must be above 0"):
        RankingConfig(sinkhorn_temperature=0)
    with pytest.raises(MMAlignError, match="--sinkhorn-lists must be at least 1"):
        RankingConfig(sinkhorn_lists=0)
    with pytest.raises(MMAlignError, match="unknown ranking 'hungarian'"):
        RankingConfig(method="hungarian")  # type: ignore[arg-type]
    with pytest.raises(MMAlignError, match="unknown sinkhorn sides 'candidates'"):
        RankingConfig(sinkhorn_sides="candidates")  # type: ignore[arg-type]


def test_top_k_lists_agree_with_the_ranks() -> None:
    """The p-th candidate of a query's Sinkhorn list has rank p + 1, and weights are in [0, 1], best first."""
    queries, candidates = unit(40, 16, seed=7), unit(35, 16, seed=8)
    weights, indices = sinkhorn_topk(queries, candidates, 5, lists=4, temperature=0.02, iterations=10)
    assert weights.shape == indices.shape == (40, 5)
    assert bool((weights >= 0).all() and (weights <= 1).all() and (weights[:, :-1] >= weights[:, 1:]).all())
    ranks = sinkhorn_ranks(queries, candidates, indices.flatten(), lists=5, temperature=0.02, iterations=10,
                           query_rows=torch.arange(40).repeat_interleave(5))
    assert torch.equal(ranks.view(40, 5), torch.arange(1, 6).expand(40, 5))
