"""Blockwise nearest-neighbour search between two sets of entity embeddings.

Inputs are L2-normalised float32 rows, so cosine similarity is a dot product. Nothing here
ever holds a queries × candidates matrix: queries are scored in blocks of rows, one block
holding at most ``max(BLOCK_BYTES, MIN_ROWS × N × 4 bytes)``, so memory is
O(block × N + N × d) and a million entities per side run in bounded memory.

Scores are cosine or CSLS (Conneau et al., 2018), which corrects for hubs:

    CSLS(i, j) = 2 cos(i, j) − r_Q(i) − r_C(j)

with r_Q(i) the mean of query i's ``csls_k`` largest cosines over the candidates and r_C(j)
the mean of candidate j's ``csls_k`` largest cosines over the queries. r_C takes one full
pass (candidates against queries) before ranking; r_Q is read off each query block as it
is scored, so CSLS costs two passes, not three.

Ties: candidates with equal ranking keys — the float32 cosine, or 2 cos − r_C with CSLS
(r_Q is constant within a query's list) — are ordered lower candidate index first, in
every backend. ``torch.topk`` and faiss break ties arbitrarily, so the boundary of each
top-k list is checked and rows with a tie across it are redone exactly. Equal means
bit-equal: BLAS sums in different orders at matrix edges, so two identical embeddings can
score a last-bit apart, and then the higher one comes first.

Backends: torch (always there) and faiss ``IndexFlatIP`` (optional extra), which ``auto``
picks for plain cosine because it was faster here (see benchmarks/predict.py). CSLS always
runs on torch blocks: faiss would need a third pass for r_Q and measured twice as slow.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from mmalign.report import SILENT, Reporter

Backend = Literal["auto", "torch", "faiss"]

BLOCK_BYTES = 128 * 2**20
"""Target size of one block of scores; 128 MiB keeps the matrix product efficient."""

MIN_ROWS = 32
"""Fewest query rows per block: fewer makes the matrix product inefficient for huge N."""

FAISS_CHUNK = 16384
"""Queries per faiss call: faiss blocks internally; this only paces progress reports."""


@functools.cache
def _faiss() -> ModuleType | None:
    """The faiss module, or None when it is not installed (it is an optional extra)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_available() -> bool:
    """Whether the optional faiss backend can be used."""
    return _faiss() is not None


def block_rows(n_columns: int, block: int) -> int:
    """Query rows per block: at most ``block``, and few enough that a block of scores stays
    near :data:`BLOCK_BYTES` however many columns there are."""
    return max(1, min(block, max(MIN_ROWS, BLOCK_BYTES // (4 * max(n_columns, 1)))))


def topk(
    queries: Tensor,
    candidates: Tensor,
    k: int,
    *,
    csls_k: int = 0,
    block: int = 4096,
    backend: Backend = "auto",
    reporter: Reporter = SILENT,
) -> tuple[Tensor, Tensor]:
    """The ``k`` best candidates of every query, best first.

    Returns ``(scores, indices)``, both (Q, min(k, N)): float32 cosine (or CSLS when
    ``csls_k`` > 0) and int64 candidate row indices. Equal scores: lower index first.
    ``block`` bounds the query rows scored at once (see :func:`block_rows`). ``backend``:
    ``"auto"`` uses faiss for cosine when it is installed, torch otherwise; ``"faiss"``
    insists on it (ValueError with CSLS or without faiss).
    """
    queries, candidates = _check(queries, candidates)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if csls_k < 0:
        raise ValueError(f"csls_k must be 0 (off) or positive, got {csls_k}")
    n_q, n_c = len(queries), len(candidates)
    k = min(k, n_c)
    if n_q == 0 or n_c == 0:
        return torch.empty(n_q, k), torch.empty(n_q, k, dtype=torch.int64)
    if _use_faiss(backend, csls_k):
        return _faiss_topk(queries, candidates, k, reporter)
    r_c = _csls_r(candidates, queries, csls_k, block, reporter) if csls_k else None
    return _torch_topk(queries, candidates, k, r_c, csls_k, block, reporter)


def rank_of_targets(
    queries: Tensor,
    candidates: Tensor,
    targets: Tensor,
    *,
    csls_k: int = 0,
    block: int = 4096,
    query_rows: Tensor | None = None,
    reporter: Reporter = SILENT,
) -> Tensor:
    """1-based rank of each target among all candidates: 1 + #candidates scoring strictly
    higher (cosine, or CSLS with ``csls_k`` > 0). Returns int64 ranks, one per target.

    ``targets[p]`` is a candidate row index ranked for query ``query_rows[p]`` (default: one
    target per query, ``query_rows = arange(Q)``). Gold can be one-to-many, so rank is defined
    per (query, target) pair; the query's other gold targets count like any candidate.
    Pass each query once and list its pairs in ``query_rows``: repeating query rows would
    skew CSLS's r_C. Ties never hurt a target (strictly higher only), which makes the rank
    independent of candidate order. Scores come from the same blocks as :func:`topk`'s torch
    backend, so a top-1 of ``topk`` has rank 1 here.
    """
    queries, candidates = _check(queries, candidates)
    targets = targets.to(torch.int64)
    if query_rows is None:
        if len(targets) != len(queries):
            raise ValueError("one target per query is needed unless query_rows is given")
        query_rows = torch.arange(len(queries))
    query_rows = query_rows.to(torch.int64)
    if query_rows.shape != targets.shape:
        raise ValueError("query_rows and targets must have the same length")
    ranks = torch.empty(len(targets), dtype=torch.int64)
    if len(targets) == 0:
        return ranks
    n_c = len(candidates)
    if targets.min() < 0 or targets.max() >= n_c or query_rows.min() < 0 or query_rows.max() >= len(queries):
        raise ValueError("target or query row index out of range")
    r_c = _csls_r(candidates, queries, csls_k, block, reporter) if csls_k else None
    order = torch.argsort(query_rows, stable=True)
    sorted_rows = query_rows[order]
    rows = block_rows(n_c, block)
    buffer = torch.empty(rows, n_c)
    with reporter.progress("ranking targets", total=len(queries)) as task:
        for start in range(0, len(queries), rows):
            stop = min(start + rows, len(queries))
            scores, _ = _score_block(queries[start:stop], candidates, r_c, csls_k, buffer)
            lo = int(torch.searchsorted(sorted_rows, start))
            hi = int(torch.searchsorted(sorted_rows, stop))
            # Several targets per query may gather more rows than the block: chunk them.
            for p in range(lo, hi, rows):
                pairs = order[p : min(p + rows, hi)]
                picked = scores.index_select(0, query_rows[pairs] - start)
                own = picked.gather(1, targets[pairs, None])
                ranks[pairs] = 1 + torch.gt(picked, own).sum(1, dtype=torch.int32).to(torch.int64)
            task.advance(stop - start)
    return ranks


def rank_pairs(
    left: Tensor,
    right: Tensor,
    pairs: Tensor,
    *,
    csls_k: int = 0,
    all_candidates: bool = False,
    block: int = 4096,
    reporter: Reporter = SILENT,
) -> Tensor:
    """Ranks of gold pairs ``(P, 2)`` (row of ``left``, row of ``right``), one per pair.

    The papers' protocol: the queries are the distinct left entities of the pairs and the
    candidates the distinct right ones, each used once (so CSLS sees each entity once even
    when gold is one-to-many); ``all_candidates`` ranks against every row of ``right``.
    """
    pairs = torch.as_tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    queries, query_rows = torch.unique(pairs[:, 0], return_inverse=True)
    if all_candidates:
        candidates, targets = right, pairs[:, 1]
    else:
        kept, targets = torch.unique(pairs[:, 1], return_inverse=True)
        candidates = right[kept]
    return rank_of_targets(
        left[queries], candidates, targets, csls_k=csls_k, block=block, query_rows=query_rows, reporter=reporter
    )


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


def _check(queries: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
    if queries.dim() != 2 or candidates.dim() != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"need two matrices with the same width, got {tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    return queries.to(torch.float32).contiguous(), candidates.to(torch.float32).contiguous()


def _use_faiss(backend: Backend, csls_k: int) -> bool:
    if backend == "torch":
        return False
    if backend == "faiss":
        if csls_k:
            raise ValueError("CSLS runs on torch blocks only; use backend 'torch' or 'auto'")
        if not faiss_available():
            raise ValueError("backend 'faiss' asked for but faiss is not installed (pip install faiss-cpu)")
        return True
    if backend == "auto":
        return faiss_available() and not csls_k
    raise ValueError(f"unknown backend {backend!r}: auto, torch or faiss")


def _score_block(
    block: Tensor, candidates: Tensor, r_c: Tensor | None, csls_k: int, buffer: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Ranking keys of a block of queries against all candidates, written into ``buffer``,
    and the block's r_Q (None without CSLS).

    With CSLS the key is 2 cos − r_C: r_Q(i) is the same for all of query i's candidates,
    so it cannot change the order and is subtracted from the few reported scores only,
    saving a pass over the block. Doubling the queries is exact in floating point, so
    r_Q is read off the same product.
    """
    if r_c is None:
        return torch.mm(block, candidates.T, out=buffer[: len(block)]), None
    keys = torch.mm(block * 2, candidates.T, out=buffer[: len(block)])
    r_q = keys.topk(min(csls_k, keys.shape[1]), dim=1).values.mean(1) / 2
    return keys.sub_(r_c), r_q


def _csls_r(rows: Tensor, others: Tensor, csls_k: int, block: int, reporter: Reporter) -> Tensor:
    """Mean of each row's ``csls_k`` largest cosines with ``others`` (CSLS's r term), (1, R)."""
    k = min(csls_k, len(others))
    out = torch.empty(len(rows))
    step = block_rows(len(others), block)
    buffer = torch.empty(step, len(others))
    with reporter.progress("CSLS neighbourhoods", total=len(rows)) as task:
        for start in range(0, len(rows), step):
            scores = torch.mm(rows[start : start + step], others.T, out=buffer[: len(rows[start : start + step])])
            out[start : start + step] = scores.topk(k, dim=1).values.mean(1)
            task.advance(len(scores))
    return out[None, :]


def _torch_topk(
    queries: Tensor, candidates: Tensor, k: int, r_c: Tensor | None, csls_k: int, block: int, reporter: Reporter
) -> tuple[Tensor, Tensor]:
    n_q, n_c = len(queries), len(candidates)
    scores_out = torch.empty(n_q, k)
    indices_out = torch.empty(n_q, k, dtype=torch.int64)
    rows = block_rows(n_c, block)
    buffer = torch.empty(rows, n_c)
    with reporter.progress("ranking", total=n_q) as task:
        for start in range(0, n_q, rows):
            scores, r_q = _score_block(queries[start : start + rows], candidates, r_c, csls_k, buffer)
            values, indices = scores.topk(min(k + 1, n_c), dim=1)
            values, indices = _fix_boundary_ties(values, indices, k, lambda tied: scores[tied])
            if r_q is not None:
                values -= r_q[:, None]
            scores_out[start : start + len(scores)] = values
            indices_out[start : start + len(scores)] = indices
            task.advance(len(scores))
    return scores_out, indices_out


def _faiss_topk(queries: Tensor, candidates: Tensor, k: int, reporter: Reporter) -> tuple[Tensor, Tensor]:
    n_c = len(candidates)
    values, indices = _faiss_search(candidates, queries, min(k + 1, n_c), reporter)

    def exact_rows(tied: Tensor) -> Tensor:
        return torch.mm(queries[tied], candidates.T)

    return _fix_boundary_ties(values, indices, k, exact_rows)


def _faiss_search(base: Tensor, queries: Tensor, k: int, reporter: Reporter) -> tuple[Tensor, Tensor]:
    """Exact inner-product top-k with faiss (ties in arbitrary order)."""
    faiss = _faiss()
    assert faiss is not None
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base.contiguous().numpy())
    values = torch.empty(len(queries), k)
    indices = torch.empty(len(queries), k, dtype=torch.int64)
    q = queries.contiguous().numpy()
    with reporter.progress("ranking", total=len(queries)) as task:
        for start in range(0, len(queries), FAISS_CHUNK):
            d, i = index.search(q[start : start + FAISS_CHUNK], k)
            values[start : start + len(d)] = torch.from_numpy(d)
            indices[start : start + len(d)] = torch.from_numpy(i)
            task.advance(len(d))
    return values, indices


def _fix_boundary_ties(values: Tensor, indices: Tensor, k: int, full_rows: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """Make an unordered top-(k+1) into the exact top-k with lower index first among ties.

    ``values``/``indices`` hold each row's k+1 best (or all N when N ≤ k). A row whose k-th
    and (k+1)-th values are equal has a tie across the boundary, and the backend may have
    kept the wrong tied candidates; ``full_rows(rows)`` returns those rows' full score rows
    (N columns) so the choice is redone exactly. Rare on real embeddings.
    """
    if values.shape[1] > k:
        tied = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
        values, indices = values[:, :k].clone(), indices[:, :k].clone()
        if len(tied):
            values[tied], indices[tied] = _lowest_index_topk(full_rows(tied), k)
    return _order(values, indices)


def _lowest_index_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k of full score rows where, among candidates tied at the k-th value, the lowest
    indices are kept."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(1, keepdim=True)
    keep = above | (tied & (tied.cumsum(1) <= need))
    columns = keep.nonzero()[:, 1].view(len(scores), k)
    return scores.gather(1, columns), columns


def _order(values: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row by score descending, equal scores by candidate index ascending."""
    indices, by_index = indices.sort(dim=1)
    values = values.gather(1, by_index)
    values, by_score = values.sort(dim=1, descending=True, stable=True)
    return values, indices.gather(1, by_score)
