"""The ``k`` best candidates of every query, with exact tie order, on torch blocks or faiss.

Ties: candidates with equal ranking keys (the float32 cosine, or 2 cos − r_C with CSLS, r_Q
being constant within a query's list) are ordered lower candidate index first, in every
backend. ``torch.topk`` and faiss break ties arbitrarily, so the boundary of each top-k list
is checked and rows with a tie across it are redone exactly. Equal means bit-equal: BLAS sums
in different orders at matrix edges, so two identical embeddings can score a last-bit apart,
and then the higher one comes first.

Backends: torch (always there) and faiss ``IndexFlatIP`` (optional extra), which ``auto``
picks for plain cosine: on this project's 2-core CPU it was faster than torch's blocks
(docs/benchmarks.md, "Ingest, predict, search and image features"), and it needs no 128 MiB
block buffer. CSLS always runs on torch blocks: faiss would need a third pass for r_Q and
measured slower (same section).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from mmalign.report import SILENT, Reporter
from mmalign.search.ann import ann_topk, use_ann
from mmalign.search.blocks import block_rows, checked, csls_radii, neighbourhood_radii, score_blocks
from mmalign.search.faiss_backend import faiss_available, faiss_search

Backend = Literal["auto", "torch", "faiss"]

CSLS_LIST = 10
"""Approximate CSLS: the cosine neighbours per query (at least 2k) among which CSLS picks."""


def topk(
    queries: Tensor,
    candidates: Tensor,
    k: int,
    *,
    csls_k: int = 0,
    block: int = 4096,
    backend: Backend = "auto",
    ann_from: int = 0,
    reporter: Reporter = SILENT,
) -> tuple[Tensor, Tensor]:
    """The ``k`` best candidates of every query, best first.

    Returns ``(scores, indices)``, both (Q, min(k, N)): float32 cosine (or CSLS when
    ``csls_k`` > 0) and int64 candidate row indices. Equal scores: lower index first.
    ``block`` bounds the query rows scored at once (see :func:`block_rows`). ``backend``:
    ``"auto"`` uses faiss for cosine when it is installed, torch otherwise; ``"faiss"``
    insists on it (ValueError with CSLS or without faiss).

    When both sides hold at least ``ann_from`` rows (0: never), the lists are approximate
    (:mod:`~mmalign.search.ann`, whatever ``backend`` says) where the approximate search
    reaches its recall target more cheaply than exact search: cosine lists from probed
    clusters; with CSLS, both sides' radii from their approximate neighbourhoods and each
    query's CSLS best among its :data:`CSLS_LIST` (at least 2k) approximate cosine neighbours.
    """
    queries, candidates = checked(queries, candidates)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if csls_k < 0:
        raise ValueError(f"csls_k must be 0 (off) or positive, got {csls_k}")
    n_q, n_c = len(queries), len(candidates)
    k = min(k, n_c)
    if n_q == 0 or n_c == 0:
        return torch.empty(n_q, k), torch.empty(n_q, k, dtype=torch.int64)
    if use_ann(n_q, n_c, ann_from):
        found = _approximate_topk(queries, candidates, k, csls_k, block, reporter)
        if found is not None:
            return found
    if _use_faiss(backend, csls_k):
        return _faiss_topk(queries, candidates, k, reporter)
    r_c = neighbourhood_radii(candidates, queries, csls_k, block, reporter) if csls_k else None
    return _torch_topk(queries, candidates, k, r_c, csls_k, block, reporter)


def topk_both_ways(
    left: Tensor,
    right: Tensor,
    k_forward: int,
    k_backward: int,
    *,
    csls_k: int = 0,
    block: int = 4096,
    reporter: Reporter = SILENT,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``topk(left, right, k_forward)`` and ``topk(right, left, k_backward)``, exact, with the same results.

    Deciding a link needs both directions' lists. With CSLS, two :func:`topk` calls make four
    full passes (each side's radii, then each side's scores); the forward scoring pass reads
    the left rows' radii off its own blocks, and those are the backward search's candidate
    radii, so this makes three.
    """
    left, right = checked(left, right)
    if not csls_k or not len(left) or not len(right):
        return (topk(left, right, k_forward, csls_k=csls_k, block=block, reporter=reporter),
                topk(right, left, k_backward, csls_k=csls_k, block=block, reporter=reporter))
    if k_forward < 1 or k_backward < 1:
        raise ValueError(f"k must be at least 1, got {min(k_forward, k_backward)}")
    r_right = neighbourhood_radii(right, left, csls_k, block, reporter)
    r_left = torch.empty(len(left))
    forward = _torch_topk(left, right, min(k_forward, len(right)), r_right, csls_k, block, reporter, r_left)
    backward = _torch_topk(right, left, min(k_backward, len(left)), r_left[None, :], csls_k, block, reporter)
    return forward, backward


def _approximate_topk(
    queries: Tensor, candidates: Tensor, k: int, csls_k: int, block: int, reporter: Reporter
) -> tuple[Tensor, Tensor] | None:
    """Approximate lists (:mod:`~mmalign.search.ann`), or None where exact search is cheaper."""
    if not csls_k:
        found = ann_topk(queries, candidates, k, reporter, block=block)
        return None if found is None else _order(found[0], found[1])
    reverse = ann_topk(candidates, queries, csls_k, reporter, block=block)
    forward = None if reverse is None else ann_topk(queries, candidates, max(CSLS_LIST, 2 * k, csls_k), reporter,
                                                    block=block)
    if reverse is None or forward is None:
        return None
    r_c = csls_radii(reverse[0], csls_k)
    values, indices = forward[0], forward[1]
    keys, indices = _order(2 * values - r_c[indices], indices)
    return keys[:, :k] - csls_radii(values, csls_k)[:, None], indices[:, :k]


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


def _torch_topk(
    queries: Tensor, candidates: Tensor, k: int, r_c: Tensor | None, csls_k: int, block: int, reporter: Reporter,
    r_q_out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact top-k on torch blocks; with CSLS, each query's radius is also written to ``r_q_out`` if given."""
    n_q, n_c = len(queries), len(candidates)
    scores_out = torch.empty(n_q, k)
    indices_out = torch.empty(n_q, k, dtype=torch.int64)
    with reporter.progress("ranking", total=n_q) as task:
        for start, scores, r_q in score_blocks(queries, candidates, block_rows(n_c, block), r_c, csls_k):
            values, indices = scores.topk(min(k + 1, n_c), dim=1)
            values, indices = _fix_boundary_ties(values, indices, k, lambda tied: scores[tied])
            if r_q is not None:
                values -= r_q[:, None]
                if r_q_out is not None:
                    r_q_out[start : start + len(scores)] = r_q
            scores_out[start : start + len(scores)] = values
            indices_out[start : start + len(scores)] = indices
            task.advance(len(scores))
    return scores_out, indices_out


def _faiss_topk(queries: Tensor, candidates: Tensor, k: int, reporter: Reporter) -> tuple[Tensor, Tensor]:
    n_c = len(candidates)
    values, indices = faiss_search(candidates, queries, min(k + 1, n_c), reporter)

    def exact_rows(tied: Tensor) -> Tensor:
        return torch.mm(queries[tied], candidates.T)

    return _fix_boundary_ties(values, indices, k, exact_rows)


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
