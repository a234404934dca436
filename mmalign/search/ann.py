"""Approximate top-k lists for searches too large to score exactly: clusters probed in the
embeddings' leading directions, the shortlists re-scored at full width.

Exact search costs queries × candidates products of full width d: at 300k × 300k and width
600 tens of minutes on a 2-core CPU, at 1M × 1M hours (docs/benchmarks.md, "Approximate
nearest-neighbour search"). Above a size threshold (``compute.ann_from``)
:func:`mmalign.search.topk` reads its lists from here instead:

1. **Directions.** Rows are projected on the leading directions holding a share of both
   sides' energy (:mod:`~mmalign.search.directions`): width w, a fraction of d on trained
   embeddings (same section). Each share of :data:`ENERGY` is clustered and calibrated (steps 2
   and 5); the search uses the one that reaches the target with the fewest products.
2. **Clusters.** Spherical k-means (seeded, :data:`ITERATIONS` rounds over a sample) splits the
   candidates into about 2·√N clusters; each candidate joins its nearest centroid.
3. **Probing.** Each query probes the ``P`` clusters whose centroids score highest. One cluster
   at a time, the queries probing it are multiplied with its members in one matrix product
   (BLAS, not a scan per query), and each query keeps its :data:`SHORTLIST` best.
4. **Re-scoring.** The shortlist is scored at full width; its best ``k`` are the answer.
5. **Calibration.** ``P`` is measured, not assumed: a sample of the queries is searched
   exactly, and ``P`` is the fewest of :data:`PROBES` (found by bisection) whose lists hold
   :data:`~mmalign.search.recall.TARGET_RECALL` of each query's exact best
   :data:`~mmalign.search.recall.RECALL_AT`.

When the probing that takes would cost more than :data:`MAX_WORK` of an exact search's
products, the search stays exact, so the approximate path is used only where it is both
accurate and cheaper. Deterministic: the sample, the basis and the k-means start come from
fixed seeds, and every product is a dense matrix product at a fixed thread count.

Why not a graph index (faiss HNSW, used before): built on one thread for determinism, its
build alone was too slow at 1M × 1200, and on trained embeddings the beam its recall needed
made it slower than exact search (docs/benchmarks.md, "Approximate search on an HNSW graph
(dropped 2026-12-04)").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from mmalign.allocator import release_freed_memory
from mmalign.report import SILENT, Reporter
from mmalign.search.blocks import block_products, block_rows
from mmalign.search.directions import leading_directions, rescore, width_for
from mmalign.search.recall import SAMPLE_SEED, TARGET_RECALL, describe, measured_lists, recall, sample_rows

ENERGY = (0.95, 0.98)
"""Shares of the rows' energy the leading directions may keep. Narrower products cost less
per scanned pair; coarser scores need more probes for the same recall, or cannot reach it
(rows with little energy outside their leading directions). Which wins depends on the
embeddings, so both are measured (docs/benchmarks.md, approximate nearest-neighbour search)."""

CLUSTERS_PER_ROOT = 2
"""Clusters per square root of the candidates (a power of two near 2·√N)."""

MIN_MEMBERS = 16
"""Fewest candidates per cluster on average: smaller clusters make the products inefficient."""

SAMPLE_PER_CLUSTER = 32
"""k-means runs on this many sampled candidates per cluster."""

ITERATIONS = 8
"""k-means rounds."""

PROBES = tuple(round(8 * 2 ** (step / 4)) for step in range(33))
"""Clusters probed per query (8, 10, 11, 13, 16, ... 2,048: steps of 2^¼), among which the
calibration finds the fewest reaching the sampled recall target. A coarse grid costs the
whole search its overshoot (doubling: up to twice the work needed; steps of √2:
up to 41%; docs/benchmarks.md, approximate nearest-neighbour search)."""

SHORTLIST = 32
"""Candidates per query re-scored at full width, at least twice the list: narrowed scores
misorder a list's tail, more so in fewer directions, and re-scoring twice the list puts it
back (docs/benchmarks.md, approximate nearest-neighbour search)."""

FIRST_PROBES = 16
"""Clusters of the first pass, which sets each query's floor for the full one; each gives its
best 2 · shortlist / FIRST_PROBES members to it."""

MAX_WORK = 0.25
"""The approximate search is used only below this share of an exact search's products."""

PAIRS_PER_BLOCK = 1 << 22
"""(query, probed cluster) pairs handled at once: bounds the probe lists and the members
kept (a few hundred MiB)."""


def use_ann(n_queries: int, n_candidates: int, ann_from: int) -> bool:
    """Whether a search of this size tries the approximate path: both sides hold at least
    ``ann_from`` rows (0: never). With few queries or few candidates exact search is cheap,
    so the smaller side decides."""
    return ann_from > 0 and min(n_queries, n_candidates) >= ann_from


@dataclass(frozen=True)
class Recall:
    """What the sample measured: the share of each sampled query's exact best ``at``
    (:data:`~mmalign.search.recall.RECALL_AT`) found in its list of ``length``, probing
    ``probes`` of ``clusters`` clusters at width ``width`` of ``dim``, on ``sample`` queries;
    ``work`` is the share of an exact search's products the whole search does."""

    recall: float
    at: int
    length: int
    probes: int
    clusters: int
    width: int
    dim: int
    work: float
    sample: int

    @property
    def pays(self) -> bool:
        """Whether the probing reached the recall target within :data:`MAX_WORK` of exact search's products."""
        return self.recall >= TARGET_RECALL and self.work <= MAX_WORK


@dataclass(frozen=True)
class ClusterIndex:
    """The candidates in their leading directions, grouped by cluster."""

    basis: Tensor  # d × w, orthonormal columns
    centroids: Tensor  # C × w, unit rows
    members: Tensor  # candidate rows sorted by cluster
    bounds: list[int]  # cluster c holds members[bounds[c] : bounds[c + 1]]
    narrow: Tensor  # the members' coordinates in the basis, in the order of ``members``

    def sizes(self) -> Tensor:
        """Candidates per cluster."""
        return torch.tensor(self.bounds).diff()


def ann_topk(queries: Tensor, candidates: Tensor, k: int, reporter: Reporter, *,
             block: int = 4096) -> tuple[Tensor, Tensor, Recall] | None:
    """Each query's approximate ``k`` largest inner products with ``candidates``, best first
    (equal scores in any order), and the recall the sample measured; None when reaching the
    recall target would not be cheaper than exact search (the caller searches exactly).

    ``queries`` and ``candidates`` are float32 matrices of the same width.
    """
    k = min(k, len(candidates))
    with reporter.progress("clustering the candidates and measuring recall", total=None):
        index, measured = measured_index(queries, candidates, k, block)
    if index is None:
        reporter.info(
            f"exact search of {len(candidates):,} candidates: no probing reached "
            f"{describe(measured.at, measured.length)} "
            f"{TARGET_RECALL} within {MAX_WORK:.0%} of exact search's products"
        )
        return None
    values, indices = search_index(index, queries, candidates, k, measured.probes, block, reporter)
    del index
    # The probing's thousands of per-step buffers leave the kept heap fragmented: trimmed, what
    # follows (the other direction, Sinkhorn's entries) starts from the live set
    # (docs/benchmarks.md, "Partitioned training").
    release_freed_memory()
    reporter.info(
        f"approximate search of {len(candidates):,} candidates ({measured.probes} of {measured.clusters} clusters "
        f"probed, width {measured.width} of {measured.dim}, {measured.work:.1%} of exact search's products): "
        f"{describe(measured.at, measured.length)} {measured.recall:.3f} against exact search on {measured.sample} "
        "sampled queries"
    )
    return values, indices, measured


def cluster_count(n_candidates: int) -> int:
    """The power of two nearest :data:`CLUSTERS_PER_ROOT`·√N, with clusters of
    :data:`MIN_MEMBERS` candidates on average at least."""
    target = CLUSTERS_PER_ROOT * math.sqrt(n_candidates)
    count = 2 ** round(math.log2(max(target, 1)))
    return max(1, min(count, n_candidates // MIN_MEMBERS))


def measured_index(queries: Tensor, candidates: Tensor, k: int, block: int) -> tuple[ClusterIndex | None, Recall]:
    """The index of the :data:`ENERGY` share whose probing pays with the fewest products, and
    what its calibration measured; None and the last measurement where no share pays.

    A later share's calibration stops where its products pass the best so far, so a losing
    share costs little more than its clustering.
    """
    directions = leading_directions(queries, candidates)
    best: tuple[ClusterIndex, Recall] | None = None
    measured: Recall | None = None
    widths: set[int] = set()
    for level in ENERGY:
        width = width_for(directions[1], level)
        if width in widths:  # the same directions as a share already measured
            continue
        widths.add(width)
        index = build_index(queries, candidates, block, level=level, directions=directions)
        measured = calibrate(index, queries, candidates, k, block, max_work=best[1].work if best else MAX_WORK)
        if measured.pays and (best is None or measured.work < best[1].work):
            best = (index, measured)
        del index
    assert measured is not None
    return best if best is not None else (None, measured)


def build_index(queries: Tensor, candidates: Tensor, block: int = 4096, *, level: float = ENERGY[-1],
                directions: tuple[Tensor, Tensor] | None = None) -> ClusterIndex:
    """The candidates' clusters in the leading directions of both sides holding ``level`` of
    their energy (``directions``: :func:`~mmalign.search.directions.leading_directions` of the
    two sides, when already computed)."""
    basis, energy = leading_directions(queries, candidates) if directions is None else directions
    basis = basis[:, : width_for(energy, level)].contiguous()
    narrow = candidates @ basis
    centroids = kmeans(narrow, cluster_count(len(candidates)), block)
    assignment = nearest_clusters(narrow, centroids, 1, block).squeeze(1)
    members = assignment.argsort(stable=True)
    counts = torch.bincount(assignment, minlength=len(centroids))
    bounds = [0, *counts.cumsum(0).tolist()]
    return ClusterIndex(basis, centroids, members, bounds, narrow[members].contiguous())


def kmeans(rows: Tensor, clusters: int, block: int) -> Tensor:
    """Unit centroids of spherical k-means over a seeded sample of ``rows``.

    Started from sampled rows; a cluster left empty keeps its centroid.
    """
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    sample = sample_rows(rows, generator, SAMPLE_PER_CLUSTER * clusters)
    centroids = torch.nn.functional.normalize(sample_rows(sample, generator, clusters), dim=1)
    for _ in range(ITERATIONS):
        assignment = nearest_clusters(sample, centroids, 1, block).squeeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, sample)
        empty = sums.norm(dim=1) == 0
        sums[empty] = centroids[empty]
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids


def nearest_clusters(rows: Tensor, centroids: Tensor, probes: int, block: int) -> Tensor:
    """Each row's ``probes`` best-scoring centroids (indices, best first)."""
    out = torch.empty(len(rows), probes, dtype=torch.int64)
    for start, scores in block_products(rows, centroids.T, block_rows(len(centroids), block)):
        out[start : start + len(scores)] = scores.topk(probes, dim=1).indices
    return out


def shortlists(index: ClusterIndex, narrow_queries: Tensor, probes: int, shortlist: int, block: int,
               reporter: Reporter = SILENT) -> Tensor:
    """Each query's ``shortlist`` best candidates (rows; -1 where fewer were probed) by
    narrowed score over the members of its ``probes`` best clusters."""
    out = torch.full((len(narrow_queries), shortlist), -1, dtype=torch.int64)
    step = max(1, PAIRS_PER_BLOCK // probes)
    with reporter.progress("probing clusters", total=len(narrow_queries)) as task:
        for start in range(0, len(narrow_queries), step):
            queries = narrow_queries[start : start + step]
            probe = nearest_clusters(queries, index.centroids, probes, block)
            floor = _floor(index, queries, probe[:, :FIRST_PROBES], shortlist)
            out[start : start + step] = _best_per_query(*_members_above(index, queries, probe, floor), len(queries), shortlist)
            task.advance(len(queries))
    return out


def _by_cluster(index: ClusterIndex, probe: Tensor) -> Iterator[tuple[Tensor, int, int]]:
    """For each cluster some query probes and that has members: the positions in
    ``probe.flatten()`` naming it (query = position // probes), and its members' bounds."""
    flat = probe.flatten()
    order = flat.argsort(stable=True)
    first = 0
    for cluster, count in enumerate(torch.bincount(flat, minlength=len(index.centroids)).tolist()):
        lo, hi = index.bounds[cluster], index.bounds[cluster + 1]
        if count and hi > lo:
            yield order[first : first + count], lo, hi
        first += count


def _cluster_scores(index: ClusterIndex, queries: Tensor, who: Tensor, lo: int, hi: int) -> Tensor:
    """Narrowed scores of the queries ``who`` against the members ``lo:hi`` of one cluster, in
    one matrix product. The rows are gathered with ``index_select``, faster than indexing's
    gather on the CPU."""
    return queries.index_select(0, who) @ index.narrow[lo:hi].T


def _floor(index: ClusterIndex, queries: Tensor, probe: Tensor, shortlist: int) -> Tensor:
    """Each query's ``shortlist``-th best narrowed score among the best few members of each of
    its clusters in ``probe`` (-inf where they hold fewer).

    The ``shortlist``-th best of any subset of the members is at most that of all of them, so
    every member of the final shortlist scores at least this floor; the best clusters' best
    members put it close. Members below it need no top-k, merge or sort.
    """
    n, width = probe.shape
    per_cluster = -(-2 * shortlist // width)
    best = torch.full((n * width, per_cluster), float("-inf"))
    for pairs, lo, hi in _by_cluster(index, probe):
        kept = min(per_cluster, hi - lo)
        best[pairs, :kept] = _cluster_scores(index, queries, pairs // width, lo, hi).topk(kept, dim=1).values
    return best.view(n, width * per_cluster).topk(shortlist, dim=1).values[:, -1]


def _members_above(index: ClusterIndex, queries: Tensor, probe: Tensor,
                   floor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(query, narrowed score, candidate row) of the members of each query's probed clusters
    scoring at least the query's ``floor``."""
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    floors = floor.numpy()
    for pairs, lo, hi in _by_cluster(index, probe):
        who = pairs // probe.shape[1]
        scores = _cluster_scores(index, queries, who, lo, hi)
        # A fraction of a percent of the pairs pass: numpy's comparison and flatnonzero find
        # them several times faster than torch's broadcast comparison and nonzero.
        flat = torch.from_numpy(np.flatnonzero(scores.numpy() >= floors[who.numpy(), None]))
        rows, columns = flat // (hi - lo), flat % (hi - lo)
        found.append((who[rows], scores.view(-1)[flat], index.members[lo + columns]))
    if not found:
        return torch.empty(0, dtype=torch.int64), torch.empty(0), torch.empty(0, dtype=torch.int64)
    who, values, members = (torch.cat(parts) for parts in zip(*found))
    return who, values, members


def _best_per_query(who: Tensor, values: Tensor, members: Tensor, n_queries: int, shortlist: int) -> Tensor:
    """Each query's ``shortlist`` best rows among the entries naming it, best first; -1 where it
    has fewer.

    One sort on an integer key, the query in the high bits and ``1 − score`` in steps of
    2^-31 below them: by query, then by score descending (scores of unit rows lie in [−1, 1];
    scores closer than a step keep the entries' order, and the full-width re-scoring orders the
    shortlist anyway). Integer keys sort by radix, several times faster than the same order
    as float keys, and the sort is a large share of the probing's time past the products.
    """
    gap = ((1 - values.double()).clamp_(0, 2) * 2.0**31).long()  # below 2^33
    order = ((who << 33) | gap).argsort(stable=True)
    who, members = who[order], members[order]
    counts = torch.bincount(who, minlength=n_queries)
    rank = torch.arange(len(who)) - (counts.cumsum(0) - counts)[who]
    keep = rank < shortlist
    best_rows = torch.full((n_queries, shortlist), -1, dtype=torch.int64)
    best_rows[who[keep], rank[keep]] = members[keep]
    return best_rows


def search_index(index: ClusterIndex, queries: Tensor, candidates: Tensor, k: int, probes: int, block: int,
                 reporter: Reporter = SILENT) -> tuple[Tensor, Tensor]:
    """Each query's ``k`` best candidates found by probing ``probes`` clusters: (scores, rows),
    best first, scores at full width."""
    shortlist = min(shortlist_length(k), len(candidates))
    short = shortlists(index, queries @ index.basis, probes, shortlist, block, reporter)
    values, rows = rescore(queries, candidates, short, k, block)
    short_of_k = torch.nonzero((rows < 0).any(1)).flatten()  # probed clusters held fewer than k
    if len(short_of_k):
        values[short_of_k], rows[short_of_k] = (queries[short_of_k] @ candidates.T).topk(k, dim=1)
    return values, rows


def shortlist_length(k: int) -> int:
    """Candidates per query re-scored at full width for lists of ``k``: :data:`SHORTLIST`, at least 2k."""
    return max(SHORTLIST, 2 * k)


def calibrate(index: ClusterIndex, queries: Tensor, candidates: Tensor, k: int, block: int, *,
              max_work: float = MAX_WORK) -> Recall:
    """The fewest probes of :data:`PROBES` whose lists hold :data:`TARGET_RECALL` of the exact
    best :data:`~mmalign.search.recall.RECALL_AT` of a sample of the queries, among those whose
    probing costs at most ``max_work`` of exact search's products; the recall and work
    measured at it (where none reaches the target: at the last probes tried, or none).

    Found by bisection over the grid, as the recall grows with the probes: a handful of
    sample searches instead of one per step, which on the sample cost about the same
    whatever the probes (every cluster is visited once the sample probes a few each).
    """
    at, length = measured_lists(k, len(candidates))
    sample = sample_rows(queries, torch.Generator().manual_seed(SAMPLE_SEED))
    exact = torch.empty(len(sample), at, dtype=torch.int64)
    for start, scores in block_products(sample, candidates.T, block_rows(len(candidates), block)):
        exact[start : start + len(scores)] = scores.topk(at, dim=1).indices
    sizes = index.sizes().float()
    narrow_sample = sample @ index.basis
    width, dim, n = index.basis.shape[1], candidates.shape[1], len(candidates)
    probe_order = nearest_clusters(narrow_sample, index.centroids, len(index.centroids), block)
    scanned = sizes[probe_order].cumsum(1).mean(0)  # mean candidates scanned at 1, 2, ... probes
    affordable: list[tuple[int, float]] = []
    for probes in sorted({min(p, len(index.centroids)) for p in PROBES}):
        work = ((len(index.centroids) + float(scanned[probes - 1])) * width + shortlist_length(k) * dim) / (n * dim)
        if work > max_work:
            break
        affordable.append((probes, work))
    best = measured = Recall(0.0, at, length, 0, len(index.centroids), width, dim, 1.0, len(sample))
    low, high = 0, len(affordable) - 1
    while low <= high:
        middle = (low + high) // 2
        probes, work = affordable[middle]
        found = search_index(index, sample, candidates, length, probes, block)[1]
        measured = Recall(recall(found, exact), at, length, probes, len(index.centroids), width, dim, work,
                          len(sample))
        if measured.recall >= TARGET_RECALL:
            best, high = measured, middle - 1
        else:
            low = middle + 1
    return best if best.recall >= TARGET_RECALL else measured
