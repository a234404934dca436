"""Approximate top-k (HNSW) behind ``ann_from``: the same answers as exact search on easy
data, recall measured, exact below the threshold, the setting checked."""

from __future__ import annotations

import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.report import SILENT, RecordingReporter
from mmalign.search import ann, faiss_backend, topk
from mmalign.training.config import TrainConfig
from vectors import unit

pytestmark = pytest.mark.skipif(not faiss_backend.faiss_available(), reason="faiss not installed")


def pairs(n: int = 600, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Easy alignment data: each right row a slightly noisy copy of the left row."""
    left = unit(n, d, seed=1)
    noise = torch.randn(n, d, generator=torch.Generator().manual_seed(2))
    return left, torch.nn.functional.normalize(left + 0.05 * noise, dim=1)


@pytest.mark.parametrize("csls_k", [0, 3])
def test_approximate_top1_equals_exact_on_easy_data(csls_k: int) -> None:
    left, right = pairs()
    exact = topk(left, right, 5, csls_k=csls_k, backend="torch")
    messages = RecordingReporter()
    approx = topk(left, right, 5, csls_k=csls_k, ann_from=100, reporter=messages)
    assert torch.equal(approx[1][:, 0], exact[1][:, 0])
    assert torch.equal(approx[1][:, 0], torch.arange(len(left)))  # every partner found
    assert ann.recall(approx[1], exact[1]) >= 0.95
    # CSLS scores move with the radii, which come from approximate neighbourhoods.
    torch.testing.assert_close(approx[0][:, 0], exact[0][:, 0], atol=0.05 if csls_k else 1e-5, rtol=0)
    assert any("recall@10" in m for m in messages.infos)  # the measured recall is reported


def test_below_the_threshold_the_search_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smaller side decides; neither search touches the graph below ``ann_from`` or at 0."""
    def no_graph(*args: object, **kwargs: object) -> None:
        raise AssertionError("approximate search below the threshold")

    monkeypatch.setattr(ann, "build_index", no_graph)
    left, right = pairs(200)
    assert not ann.use_ann(200, 10_000, 201) and not ann.use_ann(10**6, 10**6, 0) and ann.use_ann(300, 300, 300)
    for ann_from in (0, 201):
        topk(left, right, 3, csls_k=3, ann_from=ann_from)


def test_calibration_raises_the_beam_until_the_sample_recall_is_reached() -> None:
    candidates, queries = unit(2000, 48, seed=3), unit(300, 48, seed=4)  # no structure: hard for a graph
    index = ann.build_index(candidates)
    measured = ann.calibrate(index, queries, candidates, 10, 4096)
    assert measured.sample == ann.SAMPLE and measured.at == ann.RECALL_AT
    assert measured.recall >= ann.TARGET_RECALL or measured.ef_search == ann.EF_SEARCH[-1]
    exact = topk(queries, candidates, 10, backend="torch")[1]
    found = ann.search_index(index, queries, 10, measured.ef_search, SILENT)[1]
    assert ann.recall(found, exact) >= ann.TARGET_RECALL - 0.02  # the sample speaks for the rest


def test_recall_counts_the_exact_lists_rows_found() -> None:
    exact = torch.tensor([[1, 2], [3, 4]])
    assert ann.recall(torch.tensor([[2, 1], [3, 9]]), exact) == 0.75


def test_the_graph_is_deterministic() -> None:
    left, right = pairs(400)
    first = topk(left, right, 10, ann_from=1)
    assert all(torch.equal(a, b) for a, b in zip(first, topk(left, right, 10, ann_from=1)))


def test_ann_from_is_a_checked_setting() -> None:
    assert TrainConfig.build({"ann_from": 1000}).compute.ann_from == 1000
    with pytest.raises(MMAlignError, match="--ann-from must be at least 0, got -1"):
        TrainConfig.build({"ann_from": -1})
    with pytest.raises(MMAlignError, match="ann_from must be a whole number"):
        TrainConfig.build({"compute.ann_from": "many"})
