"""The few directions trained embeddings live in, and the full-width re-scoring that makes a
search in them exact again on its shortlist.

Trained alignment embeddings hold far fewer directions than columns: nearly all their energy
lies in a fraction of the width, in a zh_en member and in a 100k synthetic model alike
(docs/benchmarks.md, "A narrowed pseudo-pair search"). A search on each row's coordinates in
the leading directions costs d'/d of a full-width one; re-scoring a short list of its best at
full width restores the exact order among them. Both approximate paths use this:
:mod:`~mmalign.search.narrow` (all pairs, narrowed) and :mod:`~mmalign.search.ann` (cluster
probing, narrowed).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmalign.search.recall import SAMPLE_SEED, sample_rows

BASIS_ROWS = 20_000
"""Rows (from both sides) whose singular vectors give the directions."""


def leading_directions(left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Right singular vectors (d × d, leading first) of a seeded sample of both sides' rows, and
    the cumulative fraction of energy the first 1, 2, ... of them hold.

    Uncentred: inner products, not distances, are what the search preserves.
    """
    rows = torch.cat([left, right])
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    sample = sample_rows(rows, generator, BASIS_ROWS).float()
    _, singular, vh = torch.linalg.svd(sample, full_matrices=False)
    energy = singular.square().cumsum(0)
    return vh.T.contiguous(), energy / energy[-1]


def width_for(energy: Tensor, level: float) -> int:
    """The fewest leading directions holding ``level`` of the energy."""
    return min(int(torch.searchsorted(energy, torch.tensor(level))) + 1, len(energy))


def rescore(queries: Tensor, others: Tensor, shortlist: Tensor, k: int, block: int) -> tuple[Tensor, Tensor]:
    """Each query's ``k`` best rows of its shortlist by full-width inner product, best first.

    A shortlist entry of -1 (fewer candidates found than the list holds) never ranks.

    The cost is reading each shortlisted row once, scattered over ``others``: the rows are
    gathered with ``index_select`` (faster than indexing's gather on the CPU) and each dot
    product is a multiply and a sum over the gathered copy in place (a batch of one-column
    products runs slower on the CPU than that pass over the same memory; docs/benchmarks.md,
    "Approximate nearest-neighbour search").
    """
    k = min(k, shortlist.shape[1])
    values = torch.empty(len(queries), k)
    index = torch.empty(len(queries), k, dtype=torch.int64)
    step = max(1, block // 4)
    for start in range(0, len(queries), step):
        rows = shortlist[start : start + step]
        missing = rows < 0
        gathered = others.index_select(0, rows.clamp(min=0).flatten()).float().view(*rows.shape, -1)
        scores = gathered.mul_(queries[start : start + step, None, :].float()).sum(2)
        scores.masked_fill_(missing, float("-inf"))
        top, pick = scores.topk(k, dim=1)
        values[start : start + len(rows)], index[start : start + len(rows)] = top, rows.gather(1, pick)
    return values, index
