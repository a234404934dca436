"""The 1:1 matching from top-k lists."""

from __future__ import annotations

import pytest
import torch

from mmalign.search import one_to_one, topk
from vectors import unit


def test_one_to_one_by_hand() -> None:
    # Both queries prefer candidate 7; query 0 holds it with the higher score.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7]])
    indices = torch.tensor([[7, 3], [7, 4]])
    rows, columns = one_to_one(scores, indices)
    assert rows.tolist() == [0, 1] and columns.tolist() == [0, 1]
    # Query 1's whole list is taken by a better pair: it stays unmatched.
    rows, columns = one_to_one(torch.tensor([[0.9], [0.5]]), torch.tensor([[1], [1]]))
    assert rows.tolist() == [0] and columns.tolist() == [0]


@pytest.mark.parametrize("csls_k", [0, 3])
def test_one_to_one_is_a_stable_matching(csls_k: int) -> None:
    scores, indices = topk(unit(120, 6, seed=15), unit(100, 6, seed=16), 5, csls_k=csls_k)
    rows, columns = one_to_one(scores, indices)
    matched = indices[rows, columns]
    assert len(set(rows.tolist())) == len(rows) and len(set(matched.tolist())) == len(matched)
    query_score = dict(zip(rows.tolist(), scores[rows, columns].tolist()))
    cand_score = dict(zip(matched.tolist(), scores[rows, columns].tolist()))
    for q in range(len(scores)):  # no blocking pair: someone always holds something at least as good
        for s, c in zip(scores[q].tolist(), indices[q].tolist()):
            assert query_score.get(q, -9.0) >= s or cand_score.get(c, -9.0) >= s
