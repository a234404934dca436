"""Similarities of two sets of rows a block of rows at a time, and CSLS's radii.

Every search of the package walks one side in blocks of rows and multiplies each block with
the whole other side, so no side × side matrix ever exists: memory is O(block × N + N × d).
The block products, the ranking keys made from them and the CSLS radii live here so that
every search computes them the same way, and the ranks of :mod:`mmalign.search.ranks` agree
with the top-k lists of :mod:`mmalign.search.topk_lists` to the bit.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from mmalign.report import Reporter

BLOCK_BYTES = 128 * 2**20
"""Target size of one block of scores; 128 MiB keeps the matrix product efficient."""

MIN_ROWS = 32
"""Fewest query rows per block: fewer makes the matrix product inefficient for huge N."""


def block_rows(n_columns: int, block: int) -> int:
    """Query rows per block: at most ``block``, and few enough that a block of scores stays
    near :data:`BLOCK_BYTES` however many columns there are."""
    return max(1, min(block, max(MIN_ROWS, BLOCK_BYTES // (4 * max(n_columns, 1)))))


def checked(queries: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """Both sides as contiguous float32 matrices of the same width (ValueError otherwise)."""
    if queries.dim() != 2 or candidates.dim() != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"need two matrices with the same width, got {tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    return queries.to(torch.float32).contiguous(), candidates.to(torch.float32).contiguous()


def block_products(
    rows: Tensor, others_t: Tensor, step: int, *, scale: float = 1.0, out: Tensor | None = None
) -> Iterator[tuple[int, Tensor]]:
    """``(start, rows[start : start + step] @ others_t)`` for each block of ``step`` rows.

    A block is cast to ``others_t``'s dtype first: a bfloat16 product's values are bfloat16
    already, so a top-k on them picks what it would on a float32 copy, without a pass to make
    one. ``scale`` multiplies the block's rows before the product: a block × d pass instead of
    a block × N one over the products, and exact in floating point for a power of two.
    ``out`` (at least ``step`` rows) receives every block's products, so a long search
    allocates one buffer instead of one per block.
    """
    for start in range(0, len(rows), step):
        block = rows[start : start + step].to(others_t.dtype)
        if scale != 1:
            block = block * scale
        yield start, torch.mm(block, others_t, out=None if out is None else out[: len(block)])


def csls_radii(top_values: Tensor, csls_k: int) -> Tensor:
    """CSLS's r term of each row: the mean of its ``csls_k`` largest cosines, from the row's
    largest cosines sorted best first (at least ``csls_k`` of them, or all it has)."""
    return top_values[:, :csls_k].mean(1)


def neighbourhood_radii(rows: Tensor, others: Tensor, csls_k: int, block: int, reporter: Reporter, *,
                        only: Tensor | None = None) -> Tensor:
    """CSLS's r term of every row of ``rows`` towards ``others``, as a (1, R) row: one full pass.

    ``only`` (row indices): measure these rows alone, each block gathered from ``rows`` in
    place, and leave the others' radii 0; for a candidate set that is most of a matrix but not
    all of it, without copying it.
    """
    k = min(csls_k, len(others))
    step = block_rows(len(others), block)
    buffer = torch.empty(step, len(others))
    total = len(rows) if only is None else len(only)
    out = torch.zeros(len(rows))
    with reporter.progress("CSLS neighbourhoods", total=total) as task:
        for start in range(0, total, step):
            picked = slice(start, min(start + step, total)) if only is None else only[start : start + step]
            chosen = rows[picked]  # a view of a row range, or the picked rows gathered
            scores = torch.mm(chosen, others.T, out=buffer[: len(chosen)])
            out[picked] = csls_radii(scores.topk(k, dim=1).values, k)
            task.advance(len(chosen))
    return out[None, :]


def score_blocks(
    queries: Tensor, candidates: Tensor, step: int, r_c: Tensor | None, csls_k: int, *,
    excluded: Tensor | None = None,
) -> Iterator[tuple[int, Tensor, Tensor | None]]:
    """``(start, keys, r_q)`` for each block of ``step`` queries: the block's ranking keys
    against all candidates (in one reused buffer) and its r_Q (None without CSLS).

    ``excluded`` (candidate rows): rows that are not candidates; their keys are −inf, so they
    rank below every candidate and never enter r_Q.

    Without CSLS the key is the cosine. With CSLS (``r_c`` from :func:`neighbourhood_radii`)
    it is 2 cos − r_C: r_Q(i) is the same for all of query i's candidates, so it cannot change
    the order and is subtracted from the few reported scores only, saving a pass over the
    block. Doubling the queries is exact in floating point, so r_Q is read off the same
    product.
    """
    buffer = torch.empty(step, len(candidates))
    scale = 1.0 if r_c is None else 2.0
    for start, products in block_products(queries, candidates.T, step, scale=scale, out=buffer):
        if excluded is not None:
            products.index_fill_(1, excluded, float("-inf"))
        if r_c is None:
            yield start, products, None
        else:
            r_q = csls_radii(products.topk(min(csls_k, products.shape[1]), dim=1).values, csls_k) / 2
            yield start, products.sub_(r_c), r_q
