"""A narrower all-pairs search re-scored at full width, for the pseudo-pair search of large runs.

The mutual search behind pseudo pairs needs both directions' lists over every unpaired entity;
exactly that is N1 × N2 products of full width d, the one step of an epoch that grows with
N² (docs/benchmarks.md). Two indexes were measured against it and lost on trained alignment
embeddings (docs/benchmarks.md, "A narrowed pseudo-pair search"): an HNSW graph (built on one
thread for determinism, one graph per direction) was slower than exact search at 100k per
side, and cluster lists at full width (IVF) needed so many clusters probed for 98% recall
that they saved nothing.

What does pay: trained embeddings hold far fewer directions than columns (nearly all their
energy lies in a fraction of the width, in a zh_en member and in a 100k synthetic model alike;
same section). So the search runs on each row's coordinates in the leading directions of both
sides (width d' < d) and keeps a :data:`SHORTLIST` per row and per column, still in one pass
that gives both directions; the shortlists are then re-scored at full width and cut to the
lists asked for. Still all pairs: the products shrink to d'/d, the top-k passes over every score
do not, so it pays only where the products dominate (faster than exact at 100k per side with
nearly all of the exact pairs, no faster at DBP15K size; docs/benchmarks.md, same section).

Recall is measured, not assumed: before the search, a sample of rows of each side is searched
both ways and the narrowest :data:`ENERGY` level whose re-scored lists hold
:data:`~mmalign.search.ann.TARGET_RECALL` of the exact lists is used; if none does, or the
width saved is too small to pay for the extra pass, the search stays exact. Deterministic:
the sample and the basis come from a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmalign.search.directions import leading_directions, rescore, width_for
from mmalign.search.recall import SAMPLE_SEED, TARGET_RECALL, measured_lists, recall, sample_rows
from mmalign.search.topk_lists import topk

ENERGY = (0.9, 0.95, 0.98, 0.99, 0.995)
"""Fractions of the rows' energy (sum of squared singular values) the kept directions hold, tried in turn."""

SHORTLIST = 32
"""Candidates per row and per column that the narrow pass keeps for re-scoring."""

MAX_WIDTH = 0.7
"""Narrowing pays only below this fraction of the full width: the re-scoring and the basis cost a little."""


@dataclass(frozen=True)
class Narrowing:
    """The directions a search runs on, and what the sample measured for them."""

    basis: Tensor  # d × d', orthonormal columns
    energy: float
    recall: float
    at: int  # exact best counted (:data:`~mmalign.search.recall.RECALL_AT`)
    length: int  # in lists of this many
    sample: int


def choose(left: Tensor, right: Tensor, k: int, block: int) -> Narrowing | None:
    """The narrowest basis whose re-scored shortlists reach the target recall on a sample of
    both sides' rows, or None when no basis narrow enough does."""
    d = left.shape[1]
    directions, energy = leading_directions(left, right)
    at, length = measured_lists(k, min(len(left), len(right)))
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    samples = [(sample_rows(rows, generator), others)
               for rows, others in ((left, right), (right, left))]
    exact = [topk(queries, others, at, block=block, backend="torch")[1] for queries, others in samples]
    for level in ENERGY:
        width = width_for(energy, level)
        if width > MAX_WIDTH * d:
            return None
        basis = directions[:, :width]
        found = [_narrow_topk(queries, others, basis, length, block) for queries, others in samples]
        got = min(recall(f, e) for f, e in zip(found, exact))
        if got >= TARGET_RECALL:
            return Narrowing(basis, level, got, at, length, sum(len(q) for q, _ in samples))
    return None


def _narrow_topk(queries: Tensor, others: Tensor, basis: Tensor, k: int, block: int) -> Tensor:
    """Indices of each query's ``k`` best rows of ``others`` through a narrow shortlist re-scored."""
    shortlist = min(max(SHORTLIST, k), len(others))
    short = topk(queries.float() @ basis, others.float() @ basis, shortlist, block=block, backend="torch")[1]
    return rescore(queries, others, short, k, block)[1]
