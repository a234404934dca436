"""Approximate nearest neighbours (faiss HNSW) for searches too large to score exactly.

Exact search costs queries × candidates products: 100k × 100k at width 1200 is minutes on a
small CPU, 1M × 1M hours. Above a size threshold (``compute.ann_from``) the searches of
:func:`mmalign.search.topk` read their lists from an HNSW graph instead: a build of
O(N log N) and a search of O(log N) per query. (The mutual search of pseudo pairs, which
needs both directions, is narrowed instead: :mod:`~mmalign.search.narrow`.)

Why HNSW and not IVF: on trained alignment embeddings (zh_en, 19.5k × 1200) IVF-Flat reached
recall@10 0.95 only at nprobe 64 of 559 lists, slower than exact search, while HNSW reached
0.98 at efSearch 32 (docs/benchmarks.md). At 1M × 1200 this graph falls short of the target
(recall@10 0.90 at the largest beam), and the search logs so. Storage is flat float32: a compressed
one (PQ, SQ8) would cut memory 4× or more at a loss of recall; docs/benchmarks.md gives the
memory at 1M.

Recall is measured, not assumed: each search scores a sample of its own queries exactly
(cheap: sample × N) and raises ``efSearch`` until recall@10 on them reaches
:data:`TARGET_RECALL`, then reports the recall it got. Deterministic: the graph is built on
one thread (insertion order fixed; faiss's level generator has a fixed seed), the sample is
drawn with a fixed seed, and searching a built graph is deterministic on any thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmalign.report import Reporter
from mmalign.search.blocks import block_products, block_rows
from mmalign.search.faiss_backend import _faiss, faiss_available, search_in_chunks

HNSW_M = 32
"""Links per node of the graph."""

EF_CONSTRUCTION = 40
"""faiss's default build-time beam."""

EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
"""Search beams tried in turn until the sampled recall reaches :data:`TARGET_RECALL`."""

TARGET_RECALL = 0.98
RECALL_AT = 10
"""Recall is measured at top-``max(k, RECALL_AT)``: a top-1 recall on a few hundred queries is too coarse."""

SAMPLE = 256
"""Queries searched exactly to measure recall."""

SAMPLE_SEED = 0


def use_ann(n_queries: int, n_candidates: int, ann_from: int) -> bool:
    """Whether a search of this size goes approximate: both sides hold at least ``ann_from``
    rows (0: never) and faiss is installed. With few queries or few candidates exact search
    is cheap, so the smaller side decides."""
    return ann_from > 0 and min(n_queries, n_candidates) >= ann_from and faiss_available()


@dataclass(frozen=True)
class Recall:
    """What the sample measured: recall@``at`` of the lists at beam ``ef_search``, on ``sample`` queries."""

    recall: float
    at: int
    ef_search: int
    sample: int


def recall(found: Tensor, exact: Tensor) -> float:
    """Mean fraction of each row of ``exact`` (indices) that the same row of ``found`` holds."""
    hits = (found[:, :, None] == exact[:, None, :]).any(1)
    return float(hits.float().mean())


def ann_topk(queries: Tensor, candidates: Tensor, k: int, reporter: Reporter, *,
             block: int = 4096) -> tuple[Tensor, Tensor, Recall]:
    """Each query's approximate ``k`` largest inner products with ``candidates``, best first
    (equal scores in any order), and the recall the sample measured.

    ``queries`` and ``candidates`` are float32 matrices of the same width.
    """
    k = min(k, len(candidates))
    with reporter.progress("building the HNSW graph", total=None):
        index = build_index(candidates)
    measured = calibrate(index, queries, candidates, k, block)
    values, indices = search_index(index, queries, k, measured.ef_search, reporter)
    reporter.info(
        f"approximate search of {len(candidates):,} candidates (HNSW M {HNSW_M}, efSearch {measured.ef_search}): "
        f"recall@{measured.at} {measured.recall:.3f} against exact search on {measured.sample} sampled queries"
    )
    return values, indices, measured


def build_index(candidates: Tensor) -> Any:
    """An HNSW graph of the rows of ``candidates`` (inner product), built on one thread."""
    faiss = _faiss()
    assert faiss is not None
    index = faiss.IndexHNSWFlat(candidates.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(candidates.contiguous().numpy())
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def search_index(index: Any, queries: Tensor, k: int, ef_search: int, reporter: Reporter) -> tuple[Tensor, Tensor]:
    """Each query's ``k`` best rows of the graph at beam ``ef_search``: (scores, indices), best first."""
    index.hnsw.efSearch = ef_search
    return search_in_chunks(index, queries, k, reporter, "approximate ranking")


def calibrate(index: Any, queries: Tensor, candidates: Tensor, k: int, block: int) -> Recall:
    """The smallest beam of :data:`EF_SEARCH` whose lists hold :data:`TARGET_RECALL` of the
    exact top-``max(k, RECALL_AT)`` of a sample of the queries (the largest beam if none does),
    and the recall measured at it."""
    at = min(max(k, RECALL_AT), len(candidates))
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    sample = queries[torch.randperm(len(queries), generator=generator)[:SAMPLE]]
    exact = torch.empty(len(sample), at, dtype=torch.int64)
    for start, scores in block_products(sample, candidates.T, block_rows(len(candidates), block)):
        exact[start : start + len(scores)] = scores.topk(at, dim=1).indices
    xq = sample.contiguous().numpy()
    for beam in EF_SEARCH:
        ef = index.hnsw.efSearch = max(beam, at)
        found = torch.from_numpy(index.search(xq, at)[1])
        got = recall(found, exact)
        if got >= TARGET_RECALL:
            break
    return Recall(got, at, ef, len(sample))

