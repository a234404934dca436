"""The unpaired entities' nearest-neighbour lists: one pass per check, read by validation and the pseudo-pair search.

The run's output ranks by Sinkhorn over both sides' lists (test pairs, ``predict``), and
validation can rank the same way: the validation pairs' KG1 entities among every KG1 entity
outside the training seeds, against every KG2 entity outside them. Ranked by CSLS instead,
validation H@1 keeps creeping up for tens of epochs after the Sinkhorn ranking of the test
pairs has stopped gaining, and keeps the stopping rule going (docs/benchmarks.md, "When
training stops").

Those are the very entities the pseudo-pair search scores against each other (``pool`` all,
``refresh``), so one pass over their similarities (:func:`~mmalign.search.mutual.top_k_both`,
both sides' lists at once) gives Sinkhorn its lists and the search its mutual nearest
neighbours: a Sinkhorn validation costs little more than the search it shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmalign.evaluation import Metrics, RankingConfig, hits_mrr
from mmalign.search.mutual import top_k_both
from mmalign.search.sinkhorn import ListSides, entries_from_lists, ranks_in_entries
from mmalign.training.selection import Reading
from mmalign.training.splits import Splits, validation_metrics


@dataclass(frozen=True)
class UnpairedLists:
    """Each unpaired KG1 entity's best KG2 entities and each unpaired KG2 entity's best KG1
    entities, by cosine, best first (:func:`~mmalign.search.mutual.top_k_both`'s four tensors:
    row values, row indices into ``right``, column values, column indices into ``left``)."""

    left: np.ndarray  # global ids of the KG1 entities outside the training seeds, sorted
    right: np.ndarray  # global ids of the KG2 entities outside the training seeds, sorted
    lists: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    dtype: torch.dtype  # of the pass's block products: a search of rows the lists leave unsure uses it too


def unpaired_entities(train: np.ndarray, n1: int, n_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """Global ids of the KG1 and the KG2 entities that no training seed pairs."""
    return np.setdiff1d(np.arange(n1), train[:, 0]), np.setdiff1d(np.arange(n1, n_entities), train[:, 1])


def unpaired_lists(embeddings: torch.Tensor, train: np.ndarray, n1: int, length: int,
                   dtype: torch.dtype) -> UnpairedLists:
    """Lists of ``length`` (or all there are) both ways among the unpaired entities.

    ``embeddings``: L2-normalised rows of every entity (global ids); ``dtype``: the block
    products' (bfloat16 where the run's precision chose it, as the pseudo-pair search).
    """
    left, right = unpaired_entities(train, n1, len(embeddings))
    rows = embeddings[torch.from_numpy(left)]
    columns = embeddings[torch.from_numpy(right)].to(dtype).T.contiguous()
    return UnpairedLists(left, right, top_k_both(rows, columns, length, 1024, dtype), dtype)


def sinkhorn_validation(unpaired: UnpairedLists, embeddings: torch.Tensor, valid: np.ndarray,
                        ranking: RankingConfig, csls_k: int) -> Metrics:
    """The validation pairs ranked as the output ranks: Sinkhorn over the unpaired entities'
    lists (their first ``ranking.sinkhorn_lists``), CSLS after the lists (global ids)."""
    query_rows = np.searchsorted(unpaired.left, valid[:, 0])
    targets = np.searchsorted(unpaired.right, valid[:, 1])
    inside = (query_rows < len(unpaired.left)) & (targets < len(unpaired.right))
    if not inside.all() or not (np.array_equal(unpaired.left[query_rows], valid[:, 0])
                                and np.array_equal(unpaired.right[targets], valid[:, 1])):
        raise ValueError("a validation pair shares an entity with a training seed")
    n = ranking.sinkhorn_lists
    row_values, row_index, col_values, col_index = unpaired.lists
    backward = (col_values[:, :n], col_index[:, :n]) if ranking.sinkhorn_sides is ListSides.BOTH else None
    entries = entries_from_lists((row_values[:, :n], row_index[:, :n]), backward, len(unpaired.left),
                                 len(unpaired.right), temperature=ranking.sinkhorn_temperature,
                                 iterations=ranking.sinkhorn_iterations)
    queries = embeddings[torch.from_numpy(unpaired.left)]
    candidates = embeddings[torch.from_numpy(unpaired.right)]
    ranks = ranks_in_entries(entries, queries, candidates, torch.from_numpy(targets), torch.from_numpy(query_rows),
                             csls_k=csls_k)
    return hits_mrr(ranks)


def read_validation(reading: Reading, embeddings: torch.Tensor, splits: Splits, n1: int, ranking: RankingConfig,
                    csls_k: int, dtype: torch.dtype, lists: UnpairedLists | None = None) -> Metrics:
    """Validation metrics of ``embeddings`` by ``reading`` (``csls`` or ``sinkhorn``, resolved);
    ``lists``: their :func:`unpaired_lists`, when at hand."""
    if reading is Reading.CSLS:
        return validation_metrics(embeddings, splits, n1, csls_k)
    if lists is None:
        lists = unpaired_lists(embeddings, splits.train, n1, ranking.sinkhorn_lists, dtype)
    return sinkhorn_validation(lists, embeddings, splits.valid, ranking, csls_k)
