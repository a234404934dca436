"""Ranks of targets against a brute-force float64 reference, and against the top-k lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign.report import SILENT
from mmalign.search import rank_of_targets, topk
from mmalign.search.blocks import neighbourhood_radii
from vectors import dyadic, reference_scores, unit


@pytest.mark.parametrize("csls_k", [0, 3])
def test_rank_of_targets_matches_brute_force(csls_k: int) -> None:
    queries, candidates = unit(150, 24, seed=8), unit(190, 24, seed=9)
    targets = torch.randint(0, 190, (150,), generator=torch.Generator().manual_seed(10))
    ranks = rank_of_targets(queries, candidates, targets, csls_k=csls_k, block=16)
    ref = reference_scores(queries, candidates, csls_k)
    own = ref[np.arange(150), targets.numpy()]
    assert ranks.dtype == torch.int64
    assert torch.equal(ranks, torch.from_numpy(1 + (ref > own[:, None]).sum(1)))


def test_given_candidate_radii_let_a_subset_of_queries_rank_as_in_the_whole() -> None:
    queries, candidates = unit(60, 16, seed=13), unit(70, 16, seed=14)
    targets = torch.randint(0, 70, (60,), generator=torch.Generator().manual_seed(15))
    whole = rank_of_targets(queries, candidates, targets, csls_k=3)
    radii = neighbourhood_radii(candidates, queries, 3, 4096, SILENT)[0]
    some = torch.tensor([3, 17, 41])
    assert torch.equal(rank_of_targets(queries[some], candidates, targets[some], csls_k=3, candidate_radii=radii),
                       whole[some])


def test_rank_of_targets_one_to_many_and_agrees_with_topk() -> None:
    queries, candidates = unit(20, 16, seed=11), unit(30, 16, seed=12)
    _, best = topk(queries, candidates, 3, csls_k=3)
    # query 0 has three gold targets (its top-3), query 5 one: ranks 1, 2, 3 and 1.
    rows = torch.tensor([0, 5, 0, 0])
    targets = torch.stack([best[0, 0], best[5, 0], best[0, 1], best[0, 2]])
    ranks = rank_of_targets(queries, candidates, targets, csls_k=3, block=4, query_rows=rows)
    assert ranks.tolist() == [1, 1, 2, 3]


def test_rank_counts_only_strictly_higher() -> None:
    candidates = dyadic(1, seed=13).repeat(6, 1)
    ranks = rank_of_targets(dyadic(3, seed=14), candidates, torch.tensor([5, 0, 3]), csls_k=2)
    assert ranks.tolist() == [1, 1, 1]


@pytest.mark.parametrize("csls_k", [0, 3])
def test_excluded_rows_rank_as_if_the_candidates_were_copied_without_them(csls_k: int) -> None:
    queries, candidates = unit(40, 16, seed=16), unit(90, 16, seed=17)
    excluded = torch.tensor([2, 5, 6, 30, 31, 32, 89])
    kept = torch.tensor([row for row in range(90) if row not in set(excluded.tolist())])
    targets = kept[torch.randint(0, len(kept), (40,), generator=torch.Generator().manual_seed(18))]
    in_place = rank_of_targets(queries, candidates, targets, csls_k=csls_k, block=8, excluded=excluded)
    copied = rank_of_targets(queries, candidates[kept], torch.searchsorted(kept, targets), csls_k=csls_k, block=8)
    assert torch.equal(in_place, copied)
    # Leaving rows out changes the ranks (they were counted before), so the test can fail.
    assert not torch.equal(in_place, rank_of_targets(queries, candidates, targets, csls_k=csls_k, block=8))
    with pytest.raises(ValueError, match="excluded"):
        rank_of_targets(queries, candidates, excluded[:1].expand(40), csls_k=csls_k, excluded=excluded)
