"""Mutual nearest neighbours for iterative training, blockwise, optionally under CSLS.

Each similarity block gives its rows' best columns *and* updates a running best rows per
column, so both directions cost one pass (half of two searches), and the block products
run in bfloat16 where asked (much faster matmuls on CPUs with AVX-512 BF16; docs/benchmarks.md,
"Memory and speed of the training step"). Memory is O(block × |right|); no |left| × |right|
matrix exists. Ties go to the lower index.

With ``csls_k`` > 0 the score is CSLS, ``2 cos − r_L(i) − r_R(j)`` (r: mean of the k largest
cosines towards the other side), the same score the evaluation ranks with. It discounts hub
entities that are near everything, which plain cosine would pair with many. The radii need
the whole pass first; keeping a few candidates per row and column in it picks the CSLS best
without a second pass, exactly, and faster than two passes (docs/benchmarks.md, "Memory and
speed of the training step").
"""

from __future__ import annotations

from typing import Iterable

import torch

from mmalign.report import SILENT, Reporter
from mmalign.search import narrow
from mmalign.search.blocks import block_products, csls_radii
from mmalign.search.directions import rescore
from mmalign.search.recall import describe


CANDIDATES = 8
"""Cosines kept per row and column in :func:`mutual_nearest`'s pass, among which the CSLS best
is picked (see there)."""

COLUMN_BLOCK_BYTES = 64 * 2**20
"""Largest block of scores (all left rows × ``block`` right columns) the column-block pass
uses; it holds two (the products and their transposed copy). Past it, the pass goes a block
of left rows at a time."""


def top_k_both(left: torch.Tensor, right_t: torch.Tensor, k: int, block: int,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each left row's k best right columns and each right column's k best left rows, in one pass.

    Returns (row values, row indices), both |left| × k, and (column values, column indices),
    both |right| × k, best first.

    While all left rows times ``block`` right columns fit :data:`COLUMN_BLOCK_BYTES`, the
    products are taken a block of right columns at a time: a product with many rows and few
    columns runs faster on the CPU than the same work as a block of rows against every column
    (docs/benchmarks.md, "Seconds per phase of a late epoch"), and each column's k best are
    final at once, read off a transposed copy (a top-k along rows; along columns it is slower).
    """
    n_left, n_right = len(left), right_t.shape[1]
    if n_left * min(block, n_right) * (torch.finfo(dtype).bits // 8) > COLUMN_BLOCK_BYTES:
        return top_k_of_blocks(block_products(left, right_t, block), n_left, n_right, k, dtype)
    k_row, k_col = min(k, n_right), min(k, n_left)
    left, device = left.to(dtype), left.device
    row_values = torch.full((n_left, k_row), float("-inf"), dtype=dtype, device=device)
    row_index = torch.zeros((n_left, k_row), dtype=torch.int64, device=device)
    col_values = torch.empty(n_right, k_col, dtype=dtype, device=device)
    col_index = torch.empty(n_right, k_col, dtype=torch.int64, device=device)
    scores = torch.empty(n_left, min(block, n_right), dtype=dtype, device=device)
    transposed = torch.empty(min(block, n_right), n_left, dtype=dtype, device=device)
    for start in range(0, n_right, block):
        columns = right_t[:, start : start + block]
        width = columns.shape[1]
        products = torch.mm(left, columns, out=scores[:, :width])
        by_column = transposed[:width].copy_(products.T)
        col_values[start : start + width], col_index[start : start + width] = by_column.topk(k_col, dim=1)
        block_values, block_index = products.topk(min(k_row, width), dim=1)
        row_values, row_index = _merge_top_k(row_values, row_index, block_values, block_index + start, k_row, dim=1)
    return row_values.float(), row_index, col_values.float(), col_index


def _merge_top_k(values: torch.Tensor, index: torch.Tensor, block_values: torch.Tensor, block_index: torch.Tensor,
                 k: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best along ``dim`` of a running top-k and a block's, with their indices (the running ones first)."""
    values, pick = torch.cat([values, block_values], dim=dim).topk(k, dim=dim)
    return values, torch.cat([index, block_index], dim=dim).gather(dim, pick)


def top_k_of_blocks(blocks: Iterable[tuple[int, torch.Tensor]], n_left: int, n_right: int, k: int,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`top_k_both` over any ``(first row, rows × n_right scores)`` blocks covering the left rows.

    Scores that are no single product (the mean of several name encoders' cosines, in
    :mod:`mmalign.training.bootstrap`) come through here too. The column top-k is merged block
    by block: a k-row buffer, not a copy of the block.
    """
    k_row, k_col = min(k, n_right), min(k, n_left)
    row_values = torch.empty(n_left, k_row, dtype=dtype)
    row_index = torch.empty(n_left, k_row, dtype=torch.int64)
    col_values = torch.full((k_col, n_right), float("-inf"), dtype=dtype)
    col_index = torch.zeros((k_col, n_right), dtype=torch.int64)
    for start, scores in blocks:
        row_values[start : start + len(scores)], row_index[start : start + len(scores)] = scores.topk(k_row, dim=1)
        block_values, block_index = scores.topk(min(k_col, len(scores)), dim=0)
        col_values, col_index = _merge_top_k(col_values, col_index, block_values, block_index + start, k_col, dim=0)
    return row_values.float(), row_index, col_values.T.float().contiguous(), col_index.T.contiguous()


def candidate_keys(values: torch.Tensor, index: torch.Tensor, radii: torch.Tensor | None) -> torch.Tensor:
    """The ranking keys of candidate lists: CSLS ``2 s − r(j)`` with the candidates' radii, or the cosine ``s``.

    A query's own radius is the same for its whole list, so it never changes the order.
    """
    return values if radii is None else 2 * values - radii[index]


def _best_candidates(values: torch.Tensor, index: torch.Tensor, radii: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's best candidate by CSLS key ``2 s − r(j)`` (or s), ties to the lower index; and its key."""
    keys = candidate_keys(values, index, radii)
    best = keys.amax(1, keepdim=True)
    lowest = torch.where(keys == best, index, torch.iinfo(torch.int64).max).amin(1)
    return lowest, best.flatten()


def _best_exact(queries: torch.Tensor, others: torch.Tensor, radii: torch.Tensor, block: int,
                dtype: torch.dtype) -> torch.Tensor:
    """Each query's best row of ``others`` by CSLS key ``2 s − r``, ties to the lower index.

    The queries are zero-padded to whole blocks: how many need this varies from search to
    search, and block-sized buffers of varying sizes fragment the heap that the training
    allocator keeps: unpadded, the heap grew search after search; padded, it stays flat
    (docs/benchmarks.md, "Memory and speed of the training step").
    """
    padded = queries.new_zeros(-(-len(queries) // block) * block, queries.shape[1])
    padded[: len(queries)] = queries
    best = torch.empty(len(padded), dtype=torch.int64)
    for start, scores in block_products(padded, others.to(dtype).T.contiguous(), block):
        best[start : start + len(scores)] = scores.float().mul_(2).sub_(radii).argmax(1)
    return best[: len(queries)]


def _fold_in_other_side(best: torch.Tensor, key: torch.Tensor, other_values: torch.Tensor, other_index: torch.Tensor,
                        radii: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Improve each query's best with the candidates the other side's lists hold.

    Row ``t`` of the other side's lists names queries ``other_index[t]`` at cosines
    ``other_values[t]`` towards target ``t``, whose CSLS key is ``2 s − radii[t]``; a query may
    be in a target's list without the target being in its own. Ties go to the lower target.
    """
    keys = (2 * other_values - radii[:, None]).flatten()
    queries = other_index.flatten()
    targets = torch.arange(len(other_values)).repeat_interleave(other_values.shape[1])
    top = torch.full_like(key, float("-inf")).scatter_reduce(0, queries, keys, "amax")
    at_top = keys == top[queries]
    lowest = torch.full_like(best, torch.iinfo(torch.int64).max).scatter_reduce(0, queries[at_top], targets[at_top], "amin")
    better = (top > key) | ((top == key) & (lowest < best))
    return torch.where(better, lowest, best), torch.where(better, top, key)


def narrowed_lists(left: torch.Tensor, right: torch.Tensor, k: int, block: int, dtype: torch.dtype,
                   reporter: Reporter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """:func:`top_k_both`'s lists by full-width cosine, found through a narrow pass
    (:mod:`~mmalign.search.narrow`); None when no narrowing reaches the recall target."""
    narrowing = narrow.choose(left, right, k, block)
    if narrowing is None:
        reporter.info("a narrowed search would not reach its recall target on these embeddings: exact search")
        return None
    shortlist = min(narrow.SHORTLIST, len(left), len(right))
    left_n, right_n = left.float() @ narrowing.basis, right.float() @ narrowing.basis
    _, row_short, _, col_short = top_k_both(left_n, right_n.to(dtype).T.contiguous(), shortlist, block, dtype)
    row_values, row_index = rescore(left, right, row_short, k, block)
    col_values, col_index = rescore(right, left, col_short, k, block)
    reporter.info(
        f"narrowed search: {narrowing.basis.shape[1]} of {left.shape[1]} directions ({narrowing.energy:.1%} of the "
        f"energy), shortlists of {shortlist} re-scored at full width: {describe(narrowing.at, narrowing.length)} "
        f"{narrowing.recall:.3f} against exact search on {narrowing.sample} sampled rows"
    )
    return row_values, row_index, col_values, col_index


def mutual_nearest(left: torch.Tensor, right: torch.Tensor, *, block: int = 1024, precision: str = "bf16",
                   csls_k: int = 0, candidates: int = CANDIDATES, ann_from: int = 0,
                   reporter: Reporter = SILENT) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs ``(i, j)`` where ``j`` is i's nearest right row and ``i`` is j's nearest left row.

    Rows must be L2-normalised (cosine = dot product). ``csls_k`` > 0 ranks by CSLS instead.

    One pass over the similarities keeps each row's and each column's ``candidates`` best
    cosines (and gives the CSLS radii); the CSLS best is picked among the pairs either list
    holds. That is exact when the best key beats what any pair in neither list could reach:
    such a pair ``(i, j)`` has ``s_ij`` at most column j's ``candidates``-th cosine, hence at
    most its radius ``r_j`` (a mean of its top ``csls_k`` ≤ ``candidates``), so its key
    ``2 s_ij − r_j ≤ s_ij`` is at most row i's lowest kept cosine. The few rows and columns
    whose best does not beat that bound are searched again in full; a second full pass, as a
    plain two-pass CSLS search takes, costs as much as the first.

    When both sides hold at least ``ann_from`` rows (0: never), both sides' lists come from a
    narrowed search (:mod:`~mmalign.search.narrow`: a pass in the embeddings' leading
    directions, re-scored at full width) when it reaches its recall target on a sample, and
    the best is picked among them, without the exact second search.
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    m = max(candidates, csls_k) if csls_k else 1  # plain cosine: the best is the top-1
    lists = None
    if ann_from > 0 and min(len(left), len(right)) >= ann_from:
        lists = narrowed_lists(left, right, m, block, dtype, reporter)
    approximate = lists is not None
    lists = lists or top_k_both(left, right.to(dtype).T.contiguous(), m, block, dtype)
    return mutual_from_lists(left, right, lists, csls_k=csls_k, block=block, dtype=dtype, exact=not approximate)


def mutual_from_lists(left: torch.Tensor, right: torch.Tensor,
                      lists: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], *, csls_k: int = 0,
                      block: int = 1024, dtype: torch.dtype = torch.float32,
                      exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mutual_nearest` from :func:`top_k_both`'s lists of ``left`` and ``right``, best
    first (at least ``csls_k`` long; any longer length keeps the pick exact).

    ``exact``: the lists are exact, so a row whose best may lie outside them is searched again
    in full (see :func:`mutual_nearest`); approximate lists are taken as they are.
    """
    row_values, row_index, col_values, col_index = lists
    r_left = r_right = None
    if csls_k:
        r_left, r_right = csls_radii(row_values, csls_k), csls_radii(col_values, csls_k)
    best_right, row_key = _best_candidates(row_values, row_index, r_right)
    best_left, col_key = _best_candidates(col_values, col_index, r_left)
    if csls_k:
        best_right, row_key = _fold_in_other_side(best_right, row_key, col_values, col_index, r_right)
        best_left, col_key = _fold_in_other_side(best_left, col_key, row_values, row_index, r_left)
        # Pairs in neither list exist only when neither side's lists hold everything.
        if exact and row_values.shape[1] < len(right) and col_values.shape[1] < len(left):
            for best, key, values, radii, queries, others in ((best_right, row_key, row_values, r_right, left, right),
                                                              (best_left, col_key, col_values, r_left, right, left)):
                unsure = torch.nonzero(key <= values[:, -1]).flatten()
                if len(unsure):
                    best[unsure] = _best_exact(queries[unsure], others, radii, block, dtype)
    mutual = best_left[best_right] == torch.arange(len(left))
    left_idx = torch.nonzero(mutual).flatten()
    return left_idx, best_right[left_idx]
