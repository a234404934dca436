"""Nearest-neighbour search between two sets of entity embeddings: the one engine.

Inputs are L2-normalised rows, so cosine similarity is a dot product. Nothing here ever holds
a queries × candidates matrix: one side is scored in blocks of rows against the other
(:mod:`~mmalign.search.blocks`), so memory is O(block × N + N × d) and a million entities per
side run in bounded memory.

Scores are cosine or CSLS (Conneau et al., 2018), which corrects for hubs:

    CSLS(i, j) = 2 cos(i, j) − r_Q(i) − r_C(j)

with r_Q(i) the mean of query i's ``csls_k`` largest cosines over the candidates and r_C(j)
the mean of candidate j's ``csls_k`` largest cosines over the queries.

- :func:`topk`: each query's k best candidates, exact tie order, torch or faiss (``topk_lists``);
  :func:`topk_both_ways`: both directions' exact lists, one CSLS pass fewer than two calls.
- :func:`rank_of_targets`: where given targets rank among all candidates (``ranks``).
- :func:`mutual_nearest`: pairs that are each other's best, both directions in one pass
  (``mutual``).
- :func:`one_to_one`: a greedy, stable 1:1 matching from top-k lists (``matching``).
- :func:`sinkhorn_ranks`, :func:`sinkhorn_topk`: ranks and top-k lists under
  Sinkhorn-normalised cosines over both sides' lists (or the queries', :class:`ListSides`), the
  assignment view.

Above a size (``ann_from`` rows on both sides: the settings ``compute.ann_from`` for
``predict`` and ``link``, ``compute.pseudo_ann_from`` for the pseudo-pair search) :func:`topk`
reads approximate lists from clusters probed in the embeddings' leading directions (``ann``)
and :func:`mutual_nearest` runs a narrowed pass re-scored at full width (``narrow``); both
measure their recall against exact search on a sample (``recall``) and report it, and fall
back to exact search where they would not reach it more cheaply. :func:`rank_of_targets`
stays exact at every size: validation ranks few queries, O(queries × N).
"""

from mmalign.search.blocks import BLOCK_BYTES, MIN_ROWS, block_rows
from mmalign.search.faiss_backend import faiss_available
from mmalign.search.matching import one_to_one
from mmalign.search.mutual import mutual_nearest
from mmalign.search.ranks import rank_of_targets
from mmalign.search.sinkhorn import ListSides, sinkhorn_ranks, sinkhorn_topk
from mmalign.search.topk_lists import Backend, topk, topk_both_ways

__all__ = [
    "BLOCK_BYTES",
    "MIN_ROWS",
    "Backend",
    "ListSides",
    "block_rows",
    "faiss_available",
    "mutual_nearest",
    "one_to_one",
    "rank_of_targets",
    "sinkhorn_ranks",
    "sinkhorn_topk",
    "topk",
    "topk_both_ways",
]
