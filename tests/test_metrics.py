"""Metrics on hand-made rankings."""

from __future__ import annotations

import pytest
import torch

from mmalign.metrics import hits_mrr


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
