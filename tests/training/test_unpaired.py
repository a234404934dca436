"""The unpaired entities' lists: Sinkhorn validation from them, the selection floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign.evaluation import RankingConfig, hits_mrr
from mmalign.search import ListSides, sinkhorn_ranks
from mmalign.training.selection import SelectionConfig, Selector
from mmalign.training.unpaired import sinkhorn_validation, unpaired_entities, unpaired_lists

N1, N2 = 60, 70


def _embeddings() -> torch.Tensor:
    """KG1 entity i near KG2 entity i (global id N1 + i), with noise: ranks are not all 1."""
    generator = torch.Generator().manual_seed(3)
    kg1 = torch.randn(N1, 12, generator=generator)
    kg2 = torch.randn(N2, 12, generator=generator)
    kg2[:N1] = kg1 + 0.9 * torch.randn(N1, 12, generator=generator)
    return torch.nn.functional.normalize(torch.cat([kg1, kg2]), dim=1)


@pytest.mark.parametrize("sides", list(ListSides))
def test_sinkhorn_validation_ranks_as_sinkhorn_over_the_unpaired_entities(sides: ListSides) -> None:
    embeddings = _embeddings()
    pairs = np.stack([np.arange(N1), np.arange(N1) + N1], axis=1)
    train, valid = pairs[:20], pairs[20:35]
    ranking = RankingConfig(sinkhorn_lists=5, sinkhorn_sides=sides)
    lists = unpaired_lists(embeddings, train, N1, 8, torch.float32)
    left, right = unpaired_entities(train, N1, N1 + N2)
    assert lists.left.tolist() == left.tolist() == list(range(20, N1))
    assert lists.right.tolist() == right.tolist() == list(range(N1 + 20, N1 + N2))
    expected = sinkhorn_ranks(embeddings[torch.from_numpy(left)], embeddings[torch.from_numpy(right)],
                              torch.from_numpy(np.searchsorted(right, valid[:, 1])), lists=5, temperature=0.02,
                              iterations=10, sides=sides, csls_k=3,
                              query_rows=torch.from_numpy(np.searchsorted(left, valid[:, 0])))
    got = sinkhorn_validation(lists, embeddings, valid, ranking, csls_k=3)
    assert got == hits_mrr(expected)
    assert 0 < got["hits@1"] < 1 and got["mr"] > 1  # not a trivial ranking
    with pytest.raises(ValueError, match="shares an entity with a training seed"):
        sinkhorn_validation(lists, embeddings, pairs[15:25], ranking, csls_k=3)


def _metrics(h1: float) -> dict:
    return {"hits@1": h1, "mrr": h1}


def test_the_selected_model_is_the_best_from_min_epochs_on() -> None:
    selector = Selector(SelectionConfig(min_epochs=40))
    for epoch, h1 in ((10, 0.5), (20, 0.8), (30, 0.7), (40, 0.6), (50, 0.65), (60, 0.62)):
        selector.observe(epoch, _metrics(h1), None)
        if epoch == 30:
            assert selector.best_epoch == 20  # before the floor: the best so far
    assert selector.best_epoch == 50  # from the floor on, whatever came before


def test_a_run_that_ends_before_min_epochs_keeps_its_best() -> None:
    selector = Selector(SelectionConfig(min_epochs=80))
    for epoch, h1 in ((10, 0.5), (20, 0.8), (30, 0.7)):
        selector.observe(epoch, _metrics(h1), None)
    assert selector.best_epoch == 20


def test_without_the_floor_the_best_of_all_epochs_is_selected() -> None:
    selector = Selector(SelectionConfig(min_epochs=40, select_from_min_epochs=False))
    for epoch, h1 in ((10, 0.5), (20, 0.8), (30, 0.7), (40, 0.6), (50, 0.65)):
        selector.observe(epoch, _metrics(h1), None)
    assert selector.best_epoch == 20
