"""The narrowed pseudo-pair search: the exact pairs on embeddings with few directions, exact
search where narrowing would not reach its recall, and only from the threshold."""

from __future__ import annotations

import pytest
import torch

from mmalign.report import RecordingReporter
from mmalign.search import directions, mutual_nearest, narrow
from vectors import unit


def few_directions(n: int = 500, d: int = 48, rank: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in a ``rank``-dimensional subspace plus faint noise; right a noisy copy of left."""
    g = torch.Generator().manual_seed(5)
    basis = torch.randn(rank, d, generator=g)
    left = torch.nn.functional.normalize(torch.randn(n, rank, generator=g) @ basis + 0.01 * torch.randn(n, d, generator=g), dim=1)
    noise = torch.randn(n, rank, generator=g) @ basis
    right = torch.nn.functional.normalize(left + 0.03 * torch.nn.functional.normalize(noise, dim=1), dim=1)
    return left, right


@pytest.mark.parametrize("csls_k", [0, 3])
def test_narrowed_pairs_equal_exact_where_few_directions_hold_the_rows(csls_k: int) -> None:
    left, right = few_directions()
    chosen = narrow.choose(left, right, 8, 1024)
    assert chosen is not None and chosen.basis.shape[1] <= 8 and chosen.recall >= 0.98
    messages = RecordingReporter()
    narrowed = mutual_nearest(left, right, csls_k=csls_k, precision="fp32", ann_from=100, reporter=messages)
    exact = mutual_nearest(left, right, csls_k=csls_k, precision="fp32")
    assert torch.equal(narrowed[0], exact[0]) and torch.equal(narrowed[1], exact[1])
    assert any(m.startswith("narrowed search: ") and "recall@10" in m for m in messages.infos)


def test_rows_spread_over_every_direction_stay_exact() -> None:
    left, right = unit(300, 32, seed=1), unit(300, 32, seed=2)
    assert narrow.choose(left, right, 8, 1024) is None
    messages = RecordingReporter()
    got = mutual_nearest(left, right, csls_k=3, precision="fp32", ann_from=1, reporter=messages)
    exact = mutual_nearest(left, right, csls_k=3, precision="fp32")
    assert torch.equal(got[0], exact[0]) and torch.equal(got[1], exact[1])
    assert any("exact search" in m for m in messages.infos)


def test_below_the_threshold_nothing_is_narrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_narrowing(*args: object, **kwargs: object) -> None:
        raise AssertionError("narrowed below the threshold")

    monkeypatch.setattr(narrow, "choose", no_narrowing)
    left, right = few_directions(200)
    for ann_from in (0, 201):
        mutual_nearest(left, right, csls_k=3, ann_from=ann_from)


def test_rescoring_orders_a_shortlist_by_full_width_products() -> None:
    queries, others = unit(5, 16, seed=3), unit(40, 16, seed=4)
    shortlist = torch.arange(40).repeat(5, 1)
    values, index = directions.rescore(queries, others, shortlist, 4, 1024)
    exact = (queries @ others.T).topk(4, dim=1)
    torch.testing.assert_close(values, exact.values)
    assert torch.equal(index, exact.indices)


def test_rescoring_skips_missing_entries_over_several_steps() -> None:
    queries, others = unit(700, 16, seed=5), unit(60, 16, seed=6)
    shortlist = torch.arange(60).repeat(700, 1)
    shortlist[:, 50:] = -1  # fewer candidates found than the list holds
    values, index = directions.rescore(queries, others, shortlist, 5, 256)  # steps of 64 queries
    exact = (queries @ others[:50].T).topk(5, dim=1)
    torch.testing.assert_close(values, exact.values)
    assert torch.equal(index, exact.indices)
