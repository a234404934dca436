"""The ranking protocols against brute force, and the metrics on hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign.evaluation import evaluate_pairs, gold_targets, hits_mrr, non_seed_targets, rank_pairs
from vectors import reference_scores, unit


def test_hits_mrr_by_hand() -> None:
    m = hits_mrr(torch.tensor([1, 2, 5, 11]))
    assert list(m) == ["hits@1", "hits@5", "hits@10", "mrr", "mr", "count"]
    assert m["hits@1"] == 0.25 and m["hits@5"] == 0.75 and m["hits@10"] == 0.75
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4)
    assert m["mr"] == 4.75
    assert m["count"] == 4 and isinstance(m["count"], int)


def test_perfect_and_custom_ks() -> None:
    m = hits_mrr(torch.ones(3, dtype=torch.int64), ks=(1, 3))
    assert m == {"hits@1": 1.0, "hits@3": 1.0, "mrr": 1.0, "mr": 1.0, "count": 3}


def test_bad_ranks() -> None:
    with pytest.raises(ValueError):
        hits_mrr(torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError):
        hits_mrr(torch.tensor([0, 1]))


@pytest.mark.parametrize("all_candidates", [False, True])
def test_rank_pairs_uses_each_entity_once(all_candidates: bool) -> None:
    left, right = unit(12, 16, seed=17), unit(15, 16, seed=18)
    # left 3 has two gold targets; right 9 is listed twice; right 0..14 minus gold are extra.
    pairs = np.array([[3, 9], [1, 2], [3, 4], [7, 9], [0, 11]])
    cands = np.arange(15) if all_candidates else np.array([2, 4, 9, 11])
    if not all_candidates:
        assert gold_targets(pairs).tolist() == cands.tolist()
    ranks = rank_pairs(left, right, pairs, cands, csls_k=2)
    ref = reference_scores(left[[0, 1, 3, 7]], right[cands], 2)
    row = {0: 0, 1: 1, 3: 2, 7: 3}
    col = {int(c): i for i, c in enumerate(cands)}
    expected = [1 + int((ref[row[a]] > ref[row[a], col[b]]).sum()) for a, b in pairs.tolist()]
    assert ranks.tolist() == expected


def test_validation_ranks_against_every_non_seed_kg2_entity() -> None:
    left, right = unit(10, 16, seed=19), unit(12, 16, seed=20)
    seeds, valid = np.array([[0, 0], [1, 5], [2, 7]]), np.array([[4, 3], [6, 11]])
    cands = non_seed_targets(np.arange(12), seeds)
    assert cands.tolist() == [1, 2, 3, 4, 6, 8, 9, 10, 11]
    ranks = rank_pairs(left, right, valid, cands, csls_k=3)
    ref = reference_scores(left[[4, 6]], right[cands], 3)
    expected = [1 + int((ref[0] > ref[0, 2]).sum()), 1 + int((ref[1] > ref[1, 8]).sum())]
    assert ranks.tolist() == expected



def test_one_matrix_with_global_ids_ranks_as_two_sides_with_local_ids() -> None:
    """Training ranks rows of one KG1-then-KG2 matrix; ``mmalign evaluate`` the two KGs apart."""
    left, right = unit(9, 16, seed=21), unit(11, 16, seed=22)
    pairs = np.array([[0, 3], [2, 3], [5, 10], [8, 0]])
    both, offset = torch.cat([left, right]), np.array([0, len(left)])
    apart = rank_pairs(left, right, pairs, gold_targets(pairs), csls_k=3)
    together = rank_pairs(both, both, pairs + offset, gold_targets(pairs + offset), csls_k=3)
    assert torch.equal(apart, together)
    assert evaluate_pairs(left, right, pairs, gold_targets(pairs), csls_k=3) == hits_mrr(apart)


def test_candidates_must_be_sorted_and_hold_every_target() -> None:
    left, right = unit(3, 8, seed=23), unit(4, 8, seed=24)
    pairs = np.array([[0, 1], [1, 3]])
    with pytest.raises(ValueError, match="among the candidates"):
        rank_pairs(left, right, pairs, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="sorted"):
        rank_pairs(left, right, pairs, np.array([3, 1]))
