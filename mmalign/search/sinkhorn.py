"""Sinkhorn ranking: similarities made doubly stochastic over both sides' candidate lists.

Why: alignment is close to an assignment. Most entities have one counterpart, so a KG2
entity near many KG1 entities (a hub) can be the counterpart of one of them at most. CSLS
discounts hubs once, with a fixed neighbourhood; Sinkhorn's alternating row and column
normalisation of ``exp(cos / temperature)`` (Cuturi, 2013) iterates that correction towards
a doubly stochastic matrix, the assignment view of SEU (Mao et al., 2021). SEU's values,
temperature 0.02 (``exp(50 · cos)``) and 10 iterations, are the defaults; they were not tuned
here. Measured on saved runs of every benchmark (docs/benchmarks.md), it ranked more test
pairs first than CSLS in every one.

Sparse, so it runs at any size: ``exp(cos / 0.02)`` of a pair 0.1 below a row's best weighs
e⁻⁵ of it, so only the pairs in either side's ``lists`` best (:class:`ListSides` ``both``)
are kept: (queries + candidates) × ``lists`` entries instead of a queries × candidates
matrix. ``queries`` keeps each query's best only: one search instead of two, which at scale
is most of ``predict``'s time. With lists twice as long it comes as close to the dense matrix
on DBP15K, but where the model is weak or the search approximate the candidates' lists hold
true pairs the queries' lists miss, so ``both`` is the default (docs/benchmarks.md, Sinkhorn
ranking).

Ranks: a query's kept candidates come first, by Sinkhorn score (equal scores: lower candidate
index first), then the others by CSLS (cosine at ``csls_k`` 0), as they rank without
Sinkhorn. So Hits@k for k ≤ ``lists`` is Sinkhorn's alone, and MRR and MR stay defined for
targets outside the lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmalign.report import SILENT, Reporter
from mmalign.search.blocks import checked, csls_radii, neighbourhood_radii
from mmalign.search.ranks import rank_of_targets
from mmalign.search.topk_lists import topk
from mmalign.settings import Choice


class ListSides(Choice):
    """Whose best candidates make the kept pairs (``ranking.sinkhorn_sides``)."""

    BOTH = "both"  # each query's and each candidate's ``lists`` best: two searches
    QUERIES = "queries"  # each query's ``lists`` best: one search


@dataclass(frozen=True)
class Entries:
    """The kept (query, candidate) pairs, grouped by query and best first within a query."""

    rows: Tensor  # query index
    columns: Tensor  # candidate index
    log_scores: Tensor  # log of the normalised mass
    cosines: Tensor
    starts: Tensor  # first entry of each query (n_queries + 1 offsets)
    column_top: Tensor | None  # with ``both``: each candidate's best cosines towards the queries, best first


def sinkhorn_entries(queries: Tensor, candidates: Tensor, *, lists: int, temperature: float, iterations: int,
                     sides: ListSides = ListSides.BOTH, ann_from: int = 0, block: int = 4096,
                     reporter: Reporter = SILENT) -> Entries:
    """Sinkhorn scores of the pairs in the ``lists`` best by cosine of either side (``sides``
    ``both``) or of each query (``queries``); rows normalised first, then columns,
    ``iterations`` times (as SEU does), in the log domain.

    The lists are approximate when both sides hold at least ``ann_from`` rows (see
    :func:`~mmalign.search.topk`), exact otherwise.
    """
    queries, candidates = checked(queries, candidates)
    forward = topk(queries, candidates, lists, block=block, ann_from=ann_from, reporter=reporter)
    backward = None
    if sides is ListSides.BOTH:
        backward = topk(candidates, queries, lists, block=block, ann_from=ann_from, reporter=reporter)
    return entries_from_lists(forward, backward, len(queries), len(candidates), temperature=temperature,
                              iterations=iterations)


def entries_from_lists(forward: tuple[Tensor, Tensor], backward: tuple[Tensor, Tensor] | None, n_queries: int,
                       n_candidates: int, *, temperature: float, iterations: int) -> Entries:
    """:func:`sinkhorn_entries` from lists already found: ``forward`` each query's best
    (cosines, candidate indices), ``backward`` each candidate's best (cosines, query indices) or
    None (``sides`` ``queries``); both best first.

    For a caller that has the lists from another search over the same rows (the training's
    pseudo-pair search, whose one pass gives both sides' lists) and need not search again.
    """
    n_q, n_c = n_queries, n_candidates
    f_values, f_index = forward
    rows, columns = torch.arange(n_q).repeat_interleave(f_index.shape[1]), f_index.flatten()
    cosines, column_top = f_values.flatten(), None
    if backward is not None:
        column_top, b_index = backward
        rows = torch.cat([rows, b_index.flatten()])
        columns = torch.cat([columns, torch.arange(n_c).repeat_interleave(b_index.shape[1])])
        cosines = torch.cat([cosines, column_top.flatten()])
    keys, inverse = torch.unique(rows * n_c + columns, return_inverse=True)
    # A pair in both lists has two products of the same rows; the larger is kept, deterministically.
    cosines = torch.full((len(keys),), float("-inf")).scatter_reduce(0, inverse, cosines, "amax")
    rows, columns = keys // n_c, keys % n_c
    log_scores = cosines / temperature
    for _ in range(iterations):
        log_scores = log_scores - _log_sum_exp(log_scores, rows, n_q)[rows]
        log_scores = log_scores - _log_sum_exp(log_scores, columns, n_c)[columns]
    # Best first within each query, equal scores lower candidate first (rows and columns are
    # sorted already, and stable sorts keep that order among equals).
    order = torch.sort(log_scores, descending=True, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, columns, log_scores, cosines = rows[order], columns[order], log_scores[order], cosines[order]
    starts = torch.zeros(n_q + 1, dtype=torch.int64)
    starts[1:] = torch.bincount(rows, minlength=n_q).cumsum(0)
    return Entries(rows, columns, log_scores, cosines, starts, column_top)


def sinkhorn_topk(queries: Tensor, candidates: Tensor, k: int, *, lists: int, temperature: float, iterations: int,
                  sides: ListSides = ListSides.BOTH, ann_from: int = 0, block: int = 4096,
                  reporter: Reporter = SILENT) -> tuple[Tensor, Tensor]:
    """Each query's ``k`` best candidates under Sinkhorn ranking, best first: (normalised
    weights in [0, 1], candidate indices), both (Q, min(k, C)).

    Lists of at least ``k`` keep every row's first ``k`` among its entries.
    """
    queries, candidates = checked(queries, candidates)
    k = min(k, len(candidates))
    if len(queries) == 0 or k == 0:
        return torch.empty(len(queries), k), torch.empty(len(queries), k, dtype=torch.int64)
    entries = sinkhorn_entries(queries, candidates, lists=max(lists, k), temperature=temperature,
                               iterations=iterations, sides=sides, ann_from=ann_from, block=block, reporter=reporter)
    first = entries.starts[:-1, None] + torch.arange(k)
    return entries.log_scores[first].exp(), entries.columns[first]


def sinkhorn_ranks(queries: Tensor, candidates: Tensor, targets: Tensor, *, lists: int, temperature: float,
                   iterations: int, sides: ListSides = ListSides.BOTH, csls_k: int = 0,
                   query_rows: Tensor | None = None, block: int = 4096, reporter: Reporter = SILENT) -> Tensor:
    """1-based rank of each target under Sinkhorn ranking (see the module), int64.

    Like :func:`~mmalign.search.rank_of_targets`: ``targets[p]`` is the candidate row of pair
    ``p``, whose query is row ``query_rows[p]`` of ``queries`` (default: row ``p``).
    """
    queries, candidates = checked(queries, candidates)
    query_rows = torch.arange(len(targets)) if query_rows is None else query_rows
    if len(targets) == 0:
        return torch.empty(0, dtype=torch.int64)
    entries = sinkhorn_entries(queries, candidates, lists=lists, temperature=temperature, iterations=iterations,
                               sides=sides, block=block, reporter=reporter)
    return ranks_in_entries(entries, queries, candidates, targets, query_rows, csls_k=csls_k, block=block,
                            reporter=reporter)


def ranks_in_entries(entries: Entries, queries: Tensor, candidates: Tensor, targets: Tensor, query_rows: Tensor, *,
                     csls_k: int = 0, block: int = 4096, reporter: Reporter = SILENT) -> Tensor:
    """:func:`sinkhorn_ranks` from the entries of those queries and candidates (float32 rows)."""
    n_c = len(candidates)
    keys = entries.rows * n_c + entries.columns
    by_key = torch.argsort(keys)
    wanted = query_rows * n_c + targets
    at = by_key[torch.searchsorted(keys[by_key], wanted).clamp(max=len(keys) - 1)]
    kept = keys[at] == wanted
    ranks = at - entries.starts[query_rows] + 1
    outside = torch.nonzero(~kept).flatten()
    if len(outside):
        ranks[outside] = _ranks_after_the_lists(queries, candidates, targets[outside], query_rows[outside], entries,
                                                csls_k, block, reporter)
    return ranks


def _ranks_after_the_lists(queries: Tensor, candidates: Tensor, targets: Tensor, query_rows: Tensor,
                           entries: Entries, csls_k: int, block: int, reporter: Reporter) -> Tensor:
    """Ranks of targets their query keeps no entry for: after all the query's entries, by CSLS
    (cosine at ``csls_k`` 0) among the candidates that are not entries.

    CSLS's query radius is the same for a whole row, so keys compare as ``2 cos − r_C``;
    r_C is read off the candidates' lists where they were searched and hold ``csls_k``
    cosines (a pass of its own otherwise), so only the queries asked about are scored again.
    """
    r_c = None
    top = entries.column_top
    if csls_k:
        r_c = (csls_radii(top, csls_k) if top is not None and csls_k <= top.shape[1]
               else neighbourhood_radii(candidates, queries, csls_k, block, reporter)[0])
    asked, rows = torch.unique(query_rows, return_inverse=True)
    full_rank = rank_of_targets(queries[asked], candidates, targets, csls_k=csls_k, query_rows=rows,
                                candidate_radii=r_c, block=block, reporter=reporter)
    counts = entries.starts[query_rows + 1] - entries.starts[query_rows]
    pair = torch.arange(len(targets)).repeat_interleave(counts)
    offsets = torch.cumsum(counts, 0) - counts
    entry = entries.starts[query_rows].repeat_interleave(counts) + torch.arange(int(counts.sum())) - offsets.repeat_interleave(counts)
    target_key = (queries[query_rows] * candidates[targets]).sum(1)
    entry_key = entries.cosines[entry]
    if r_c is not None:
        target_key, entry_key = 2 * target_key - r_c[targets], 2 * entry_key - r_c[entries.columns[entry]]
    above = torch.zeros(len(targets), dtype=torch.int64).index_add_(
        0, pair, (entry_key > target_key[pair]).to(torch.int64))
    # Candidates ahead of the target that are not entries: at least none, whatever the last
    # bit of the target's own product says.
    return counts + (full_rank - above).clamp(min=1)


def _log_sum_exp(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """log Σ exp(values) within each group, stable (one max per group)."""
    top = torch.full((n_groups,), float("-inf")).scatter_reduce(0, groups, values, "amax")
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    sums = torch.zeros(n_groups).index_add_(0, groups, (values - top[groups]).exp())
    return sums.log() + top
