"""Each query's decided candidate, and what the model says about it: the features calibration reads.

One procedure serves the calibration and the links, so the features of the validation pairs
and of the entities linked are computed alike: CSLS top-k lists in both directions
(:func:`mmalign.search.topk`), then the one-to-one matching (:func:`mmalign.search.one_to_one`)
or, with ``many``, each query's best candidate. The features of a decided pair ``(i, j)``:

- ``score``: its CSLS score;
- ``margin``: the score minus the best *other* candidate's score for ``i``: positive when
  ``j`` is i's best (the margin to the runner-up), negative when the matching gave ``i`` a
  lower candidate because a better pair took its best;
- ``reverse_margin``: the same seen from ``j`` over the queries;
- ``mutual``: 1 when ``i`` and ``j`` are each other's best.

CSLS is symmetric, so the reverse lists score pairs as the forward lists do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmalign import search
from mmalign.report import SILENT, Reporter

FEATURES = ("score", "margin", "reverse_margin", "mutual")
NO_RUNNER_UP = 1.0
"""The margin of a pair without a runner-up (one candidate, or one query): a clear lead."""


@dataclass
class Decisions:
    """Per query (rows of ``queries``): the decided candidate's id (-1: none) and its features."""

    queries: np.ndarray
    targets: np.ndarray
    features: np.ndarray
    """(Q, len(FEATURES)) float64; rows of queries without a candidate are NaN."""

    @property
    def decided(self) -> np.ndarray:
        """Mask of the queries that got a candidate."""
        return self.targets >= 0


def decide(
    left: torch.Tensor,
    right: torch.Tensor,
    queries: np.ndarray,
    candidates: np.ndarray,
    *,
    csls_k: int,
    top_k: int,
    many: bool,
    reporter: Reporter = SILENT,
) -> Decisions:
    """Decide a candidate among ``candidates`` (rows of ``right``) for each of ``queries`` (rows of ``left``)."""
    n_q, n_c = len(queries), len(candidates)
    targets = np.full(n_q, -1, dtype=np.int64)
    features = np.full((n_q, len(FEATURES)), np.nan)
    if n_q == 0 or n_c == 0:
        return Decisions(queries, targets, features)
    query_emb, cand_emb = left[torch.from_numpy(queries)], right[torch.from_numpy(candidates)]
    (scores, indices), (back_scores, back_indices) = search.topk_both_ways(
        query_emb, cand_emb, max(2, 1 if many else top_k), 2, csls_k=csls_k, reporter=reporter
    )
    if many:
        rows, columns = torch.arange(n_q), torch.zeros(n_q, dtype=torch.int64)
    else:
        rows, columns = search.one_to_one(scores, indices)
    scores, indices = scores.double().numpy(), indices.numpy()
    back_scores, back_indices = back_scores.double().numpy(), back_indices.numpy()
    rows, columns = rows.numpy(), columns.numpy()

    chosen = indices[rows, columns]
    score = scores[rows, columns]
    second, back_second = _runner_up(scores), _runner_up(back_scores)
    other = np.where(columns == 0, second[rows], scores[rows, 0])
    first_back = back_indices[chosen, 0] == rows
    back_other = np.where(first_back, back_second[chosen], back_scores[chosen, 0])
    features[rows] = np.stack(
        [score, score - other, score - back_other, ((columns == 0) & first_back).astype(np.float64)], axis=1
    )
    targets[rows] = candidates[chosen]
    return Decisions(queries, targets, features)


def _runner_up(scores: np.ndarray) -> np.ndarray:
    """Each list's second score, or :data:`NO_RUNNER_UP` below its first where the list has one entry."""
    return scores[:, 1] if scores.shape[1] > 1 else scores[:, 0] - NO_RUNNER_UP
