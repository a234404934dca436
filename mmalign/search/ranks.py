"""The rank of given targets among all candidates, from the same score blocks as top-k.

Evaluation needs where a gold target stands, not the lists: one pass that counts the
candidates scoring strictly higher than each target, with no top-k kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmalign.report import SILENT, Reporter
from mmalign.search.blocks import block_rows, checked, neighbourhood_radii, score_blocks


def rank_of_targets(
    queries: Tensor,
    candidates: Tensor,
    targets: Tensor,
    *,
    csls_k: int = 0,
    block: int = 4096,
    query_rows: Tensor | None = None,
    candidate_radii: Tensor | None = None,
    excluded: Tensor | None = None,
    reporter: Reporter = SILENT,
) -> Tensor:
    """1-based rank of each target among all candidates: 1 + #candidates scoring strictly
    higher (cosine, or CSLS with ``csls_k`` > 0). Returns int64 ranks, one per target.

    ``targets[p]`` is a candidate row index ranked for query ``query_rows[p]`` (default: one
    target per query, ``query_rows = arange(Q)``). Gold can be one-to-many, so rank is defined
    per (query, target) pair; the query's other gold targets count like any candidate.
    Pass each query once and list its pairs in ``query_rows``: repeating query rows would
    skew CSLS's r_C. Ties never hurt a target (strictly higher only), which makes the rank
    independent of candidate order. Scores come from the same blocks as
    :func:`mmalign.search.topk`'s torch backend, so a top-1 of ``topk`` has rank 1 here.

    ``candidate_radii`` (C,): CSLS's r_C when the caller has it already, so that ``queries``
    may be a subset of the queries the radii were measured against.

    ``excluded`` (rows of ``candidates``, none of them a target): rows that are not
    candidates, neither ranked nor in CSLS's neighbourhoods. For a candidate set that is most
    of a matrix: ranking against the matrix in place with a few rows left out costs no copy of
    the rest (1.9 GB for validation at a million entities a side).
    """
    queries, candidates = checked(queries, candidates)
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
    kept = None
    if excluded is not None:
        excluded = excluded.to(torch.int64)
        if len(excluded) and (excluded.min() < 0 or excluded.max() >= n_c):
            raise ValueError("excluded row index out of range")
        if bool(torch.isin(targets, excluded).any()):
            raise ValueError("a target is among the excluded rows")
        kept = torch.ones(n_c, dtype=torch.bool).index_fill_(0, excluded, False).nonzero().flatten()
    r_c = None
    if csls_k:
        r_c = candidate_radii[None, :] if candidate_radii is not None else neighbourhood_radii(
            candidates, queries, csls_k, block, reporter, only=kept)
    order = torch.argsort(query_rows, stable=True)
    sorted_rows = query_rows[order]
    rows = block_rows(n_c, block)
    with reporter.progress("ranking targets", total=len(queries)) as task:
        for start, scores, _ in score_blocks(queries, candidates, rows, r_c, csls_k, excluded=excluded):
            stop = start + len(scores)
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
