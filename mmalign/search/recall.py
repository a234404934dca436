"""How an approximate search measures itself: a seeded sample of its own queries searched
exactly, and the share of each query's exact best :data:`RECALL_AT` that its approximate list
holds.

Every approximate path of the package (:mod:`~mmalign.search.ann`,
:mod:`~mmalign.search.narrow`) holds itself to the same target on the same kind of sample, so
a log line's recall means the same thing whichever path wrote it.
"""

from __future__ import annotations

import torch
from torch import Tensor

TARGET_RECALL = 0.98
RECALL_AT = 10
"""Recall counts each sampled query's exact best ``RECALL_AT`` candidates found in its list of
``max(k, RECALL_AT)``. Not fewer: a top-1 recall on a few hundred queries is too coarse. Not
the whole list when ``k`` is longer: what a list is read for is its best candidates (the top
of a ranking, Sinkhorn's strongest entries); its tail is context, and holding the tail to the
target too took more probes for the same output (docs/benchmarks.md)."""

SAMPLE = 256
"""Queries searched exactly to measure recall."""

SAMPLE_SEED = 0


def measured_lists(k: int, n_candidates: int) -> tuple[int, int]:
    """(exact best counted, length of the lists searched) for lists of ``k`` among ``n_candidates``."""
    return min(RECALL_AT, n_candidates), min(max(k, RECALL_AT), n_candidates)


def describe(at: int, length: int) -> str:
    """How a log line names the recall measured: ``recall@10``, or ``recall@10 in lists of 50``."""
    return f"recall@{at}" if at == length else f"recall@{at} in lists of {length}"


def recall(found: Tensor, exact: Tensor) -> float:
    """Mean fraction of each row of ``exact`` (indices) that the same row of ``found`` holds."""
    hits = (found[:, :, None] == exact[:, None, :]).any(1)
    return float(hits.float().mean())


def sample_rows(rows: Tensor, generator: torch.Generator, size: int = SAMPLE) -> Tensor:
    """``size`` rows of ``rows`` (all of them when fewer), drawn without replacement."""
    return rows[torch.randperm(len(rows), generator=generator)[:size]]
