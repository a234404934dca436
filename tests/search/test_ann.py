"""Approximate top-k behind ``ann_from`` (clusters probed in the leading directions): the
same answers as exact search on easy data, recall measured, exact search where probing would
not pay or below the threshold, the setting checked."""

from __future__ import annotations

import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.report import RecordingReporter
from mmalign.search import ann, topk
from mmalign.search.recall import RECALL_AT, SAMPLE, TARGET_RECALL, recall
from mmalign.training.config import TrainConfig
from vectors import unit


def low_rank_pairs(n: int = 3000, d: int = 128, rank: int = 12,
                   decay: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Alignment-like data: rows in a ``rank``-dimensional subspace of width ``d`` (as trained
    embeddings hold few directions), each right row a slightly noisy copy of its left row.
    ``decay`` < 1 makes each direction hold that much less than the one before: the last few
    percent of the energy spread over many directions, as trained embeddings hold theirs."""
    basis = torch.linalg.qr(torch.randn(d, rank, generator=torch.Generator().manual_seed(7)))[0]
    weights = decay ** torch.arange(rank, dtype=torch.float32)
    left = torch.nn.functional.normalize(unit(n, rank, seed=1) * weights, dim=1)
    noise = torch.randn(n, rank, generator=torch.Generator().manual_seed(2)) * weights
    right = torch.nn.functional.normalize(left + 0.05 * noise, dim=1)
    return left @ basis.T, right @ basis.T


@pytest.mark.parametrize("csls_k", [0, 3])
def test_approximate_lists_equal_exact_on_easy_data(csls_k: int) -> None:
    left, right = low_rank_pairs()
    exact = topk(left, right, 5, csls_k=csls_k, backend="torch")
    messages = RecordingReporter()
    approx = topk(left, right, 5, csls_k=csls_k, ann_from=100, reporter=messages)
    assert any(m.startswith("approximate search of 3,000 candidates") for m in messages.infos)
    assert torch.equal(approx[1][:, 0], exact[1][:, 0])
    assert torch.equal(approx[1][:, 0], torch.arange(len(left)))  # every partner found
    assert recall(approx[1], exact[1]) >= TARGET_RECALL
    # CSLS scores move with the radii, which come from approximate neighbourhoods.
    torch.testing.assert_close(approx[0][:, 0], exact[0][:, 0], atol=0.05 if csls_k else 1e-5, rtol=0)


def test_below_the_threshold_the_search_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smaller side decides; neither search clusters below ``ann_from`` or at 0."""
    def no_index(*args: object, **kwargs: object) -> None:
        raise AssertionError("approximate search below the threshold")

    monkeypatch.setattr(ann, "build_index", no_index)
    left, right = low_rank_pairs(200)
    assert not ann.use_ann(200, 10_000, 201) and not ann.use_ann(10**6, 10**6, 0) and ann.use_ann(300, 300, 300)
    for ann_from in (0, 201):
        topk(left, right, 3, csls_k=3, ann_from=ann_from)


def test_where_probing_would_not_pay_the_search_is_exact() -> None:
    """Rows with no structure fill every direction and every cluster: recall needs most of the
    products, so the search stays exact, and says so."""
    candidates, queries = unit(2000, 48, seed=3), unit(300, 48, seed=4)
    messages = RecordingReporter()
    found = topk(queries, candidates, 10, ann_from=1, reporter=messages)
    assert torch.equal(found[1], topk(queries, candidates, 10, backend="torch")[1])
    assert any(m.startswith("exact search of 2,000 candidates") for m in messages.infos)


def test_calibration_probes_until_the_sample_recall_is_reached() -> None:
    left, right = low_rank_pairs(4000, rank=24)  # harder: more directions, many near neighbours
    index = ann.build_index(left, right)
    assert index.basis.shape[1] <= 24 and sum(index.sizes()) == len(right)
    measured = ann.calibrate(index, left, right, 10, 4096)
    assert measured.sample == SAMPLE and measured.at == RECALL_AT
    assert measured.recall >= TARGET_RECALL and measured.work < ann.MAX_WORK
    assert measured.probes > ann.PROBES[0]  # the first guess was not enough
    fewer = ann.calibrate(index, left, right, 10, 4096, max_work=measured.work * 0.999)
    assert fewer.probes < measured.probes and fewer.recall < TARGET_RECALL  # the fewest that reach it
    exact = topk(left, right, 10, backend="torch")[1]
    found = ann.search_index(index, left, right, 10, measured.probes, 4096)[1]
    assert recall(found, exact) >= TARGET_RECALL - 0.02  # the sample speaks for the rest


def test_the_search_uses_the_share_of_energy_that_pays_with_the_fewest_products() -> None:
    narrower_fails = low_rank_pairs(4000, rank=24)  # 95% of the energy leaves out too much
    narrower_wins = low_rank_pairs(4000, rank=32, decay=0.8)
    for (left, right), narrower_pays in ((narrower_fails, False), (narrower_wins, True)):
        per_share = [ann.calibrate(ann.build_index(left, right, level=level), left, right, 10, 4096)
                     for level in ann.ENERGY]
        index, chosen = ann.measured_index(left, right, 10, 4096)
        assert index is not None and index.basis.shape[1] == chosen.width
        assert chosen == min((m for m in per_share if m.pays), key=lambda m: m.work)
        assert per_share[0].pays is narrower_pays
        assert (chosen.width < per_share[-1].width) is narrower_pays


def test_longer_lists_are_held_to_the_target_on_their_best_ten() -> None:
    left, right = low_rank_pairs(4000, rank=24)
    index = ann.build_index(left, right)
    measured = ann.calibrate(index, left, right, 50, 4096)
    assert (measured.at, measured.length) == (RECALL_AT, 50)
    assert measured.recall >= TARGET_RECALL
    exact = topk(left, right, 50, backend="torch")[1]
    found = ann.search_index(index, left, right, 50, measured.probes, 4096)[1]
    assert recall(found, exact[:, :RECALL_AT]) >= TARGET_RECALL - 0.02  # the best ten, not the tail


def test_queries_whose_probed_clusters_hold_too_few_candidates_are_searched_exactly() -> None:
    left, right = low_rank_pairs(1000)
    index = ann.build_index(left, right)
    k = int(index.sizes().max()) + 1  # more than any one cluster holds
    values, rows = ann.search_index(index, left[:50], right, k, 1, 4096)
    exact = topk(left[:50], right, k, backend="torch")
    assert (rows >= 0).all() and recall(rows, exact[1]) == 1.0


def test_recall_counts_the_exact_lists_rows_found() -> None:
    exact = torch.tensor([[1, 2], [3, 4]])
    assert recall(torch.tensor([[2, 1], [3, 9]]), exact) == 0.75


def test_the_approximate_search_is_deterministic() -> None:
    left, right = low_rank_pairs(1500)
    first = topk(left, right, 10, ann_from=1)
    assert all(torch.equal(a, b) for a, b in zip(first, topk(left, right, 10, ann_from=1)))


def test_ann_from_is_a_checked_setting() -> None:
    assert TrainConfig.build({"ann_from": 1000}).compute.ann_from == 1000
    with pytest.raises(MMAlignError, match="--ann-from must be at least 0, got -1"):
        TrainConfig.build({"ann_from": -1})
    with pytest.raises(MMAlignError, match="ann_from must be a whole number"):
        TrainConfig.build({"compute.ann_from": "many"})


def test_each_querys_shortlist_holds_its_best_entries_by_score() -> None:
    generator = torch.Generator().manual_seed(5)
    who = torch.randint(0, 40, (5000,), generator=generator)
    values = torch.rand(5000, generator=generator) * 2 - 1
    members = torch.randperm(5000, generator=generator)
    best = ann._best_per_query(who, values, members, 41, 16)
    for query in range(41):
        mine = torch.nonzero(who == query).flatten()
        expected = members[mine[values[mine].argsort(descending=True, stable=True)][:16]]
        assert torch.equal(best[query, : len(expected)], expected)
        assert (best[query, len(expected) :] == -1).all()  # query 40 names no entry


def test_scores_at_and_past_the_unit_bounds_keep_their_query_and_order() -> None:
    # Rounding can put a narrowed score of unit rows a little past ±1: the key's score part
    # must not spill into the query bits.
    who = torch.tensor([0, 0, 0, 1, 1, 1])
    values = torch.tensor([-1.0000001, 1.0000001, 0.5, -1.0000001, -0.25, 1.0])
    members = torch.tensor([10, 11, 12, 20, 21, 22])
    best = ann._best_per_query(who, values, members, 2, 3)
    assert best.tolist() == [[11, 12, 10], [22, 21, 20]]
