"""How an approximate search measures itself: a seeded sample of its own queries searched
exactly, and the share of each exact list that the approximate lists hold.

Every approximate path of the package (:mod:`~mmalign.search.ann`,
:mod:`~mmalign.search.narrow`) holds itself to the same target on the same kind of sample, so
a log line's recall means the same thing whichever path wrote it.
"""

from __future__ import annotations

import torch
from torch import Tensor

TARGET_RECALL = 0.98
RECALL_AT = 10
"""Recall is measured at top-``max(k, RECALL_AT)``: a top-1 recall on a few hundred queries is too coarse."""

SAMPLE = 256
"""Queries searched exactly to measure recall."""

SAMPLE_SEED = 0


def recall(found: Tensor, exact: Tensor) -> float:
    """Mean fraction of each row of ``exact`` (indices) that the same row of ``found`` holds."""
    hits = (found[:, :, None] == exact[:, None, :]).any(1)
    return float(hits.float().mean())


def sample_rows(rows: Tensor, generator: torch.Generator, size: int = SAMPLE) -> Tensor:
    """``size`` rows of ``rows`` (all of them when fewer), drawn without replacement."""
    return rows[torch.randperm(len(rows), generator=generator)[:size]]
