"""A 1:1 matching from top-k lists: each query and each candidate used at most once."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def one_to_one(scores: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """A 1:1 matching from top-k lists: greedy by score, best pair first.

    Every (query, candidate, score) of the lists is visited in order of score descending
    (ties: lower query, then lower candidate index) and kept when neither side is taken.
    With one score per pair seen the same way from both sides (cosine and CSLS are
    symmetric), this greedy matching is also the stable matching of the lists: no query and
    candidate both prefer each other to their partners. Queries whose whole list was taken
    by better pairs stay unmatched.

    Returns ``(query_rows, columns)``: matched query rows ascending, and for each the column
    of its top-k list that was matched (so its rank is column + 1).
    """
    n_q, k = scores.shape
    flat_scores = scores.reshape(-1).numpy()
    # lexsort: last key is primary. Position in the flat array orders by query, then column;
    # columns are already ordered by lower candidate index among equal scores.
    order = np.lexsort((np.arange(n_q * k), -flat_scores))
    candidates = indices.reshape(-1).numpy()[order]
    matched = [-1] * n_q
    taken: set[int] = set()
    for pos, cand in zip(order.tolist(), candidates.tolist()):
        row = pos // k
        if matched[row] < 0 and cand not in taken:
            matched[row] = pos % k
            taken.add(cand)
    columns = torch.tensor(matched, dtype=torch.int64)
    rows = torch.nonzero(columns >= 0).flatten()
    return rows, columns[rows]
