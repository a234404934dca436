"""Partitioned training (``schedule.partitions``): each step's forward runs on parts of the graph.

A full-graph step keeps every layer's activations of every entity for the backward, so its
memory grows with the graph; the pseudo-pair search compares every unpaired entity of one KG
with every one of the other, so its time grows with the square. Partitioned training bounds
both, as Cluster-GCN does for one graph and LargeEA (METIS mini-batches) for a pair:

- METIS (``pymetis``) cuts the graph into parts of about equal size with few edges between
  them, every seed pair within one part, by two strategies (:data:`STRATEGIES`): the union of
  the KGs with each seed pair one vertex, or KG1 alone with KG2 following through the seeds.
  The one that keeps more validation pairs within one part is used.
- A step runs the model on each part's induced subgraph in turn (edges between parts are
  left out of training), takes the loss of the epoch's pairs that lie in that part, and adds
  up the gradients; one optimiser step follows, as for the full graph. The parameters are
  shared, so all parts' embeddings live in one space, and embeddings for search, validation
  and ``predict`` come from one forward over the whole graph (no gradients kept).
- Pseudo pairs are searched within each part: a pair the step could not train (its two
  entities in different parts) is not searched, and the search costs the sum of the parts'
  squares instead of the whole square.

The share of the validation pairs whose two entities fall into one part is reported: it
bounds the share of true pairs the pseudo-pair search can still find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.graph import Graph, build_graph
from mmalign.model.encoders import prepare_input
from mmalign.report import Reporter
from mmalign.sparse import csr_rows
from mmalign.training import distributed
from mmalign.training.inputs import Inputs


@dataclass
class Part:
    """One part: its entities (global ids, sorted), their induced subgraph and feature rows."""

    entities: np.ndarray
    graph: Graph
    matrices: list

    def local(self, ids: np.ndarray) -> np.ndarray:
        """Local row numbers of global ids that lie in this part."""
        return np.searchsorted(self.entities, ids)


@dataclass
class Partition:
    """Which part every entity lies in, and the parts the steps run on."""

    part_of: np.ndarray  # global id -> part
    parts: list[Part]
    cut: float  # share of the triples between parts (left out of training)
    strategy: str = "contracted"  # which of STRATEGIES made the parts
    valid_within: float = 1.0  # share of the validation pairs within one part

    def record(self) -> dict[str, object]:
        """What summary.json keeps of the partition."""
        sizes = np.bincount(self.part_of, minlength=len(self.parts))
        return {"parts": len(self.parts), "strategy": self.strategy, "smallest": int(sizes.min()), "largest": int(sizes.max()),
                "triples_cut": round(self.cut, 4), "validation_within": round(self.valid_within, 4)}

    def group(self, pairs: np.ndarray) -> list[tuple[Part, np.ndarray]]:
        """The pairs of each part, in part order; pairs whose entities lie in two parts are dropped."""
        left, right = self.part_of[pairs[:, 0]], self.part_of[pairs[:, 1]]
        inside = left == right
        return [(part, pairs[inside & (left == p)]) for p, part in enumerate(self.parts)]

    def within(self, pairs: np.ndarray) -> float:
        """Share of ``pairs`` whose two entities lie in one part."""
        return share_within(self.part_of, pairs)


def share_within(part_of: np.ndarray, pairs: np.ndarray) -> float:
    """Share of ``pairs`` whose two entities lie in one part (1 when there are none)."""
    return float(np.mean(part_of[pairs[:, 0]] == part_of[pairs[:, 1]])) if len(pairs) else 1.0


def sides_by_part(part_of: np.ndarray | None, left: np.ndarray, right: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each part's share of two sides' entities, in part order; both sides whole without parts."""
    if part_of is None:
        return [(left, right)]
    return [(left[part_of[left] == p], right[part_of[right] == p]) for p in range(int(part_of.max()) + 1)]


def _metis():
    try:
        import pymetis
    except ImportError as error:
        raise MMAlignError("partitioned training (--partitions above 1) needs pymetis: pip install 'mmalign[scale]'") from error
    return pymetis


def _metis_parts(heads: np.ndarray, tails: np.ndarray, n: int, n_parts: int, seed: int,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """METIS parts of the undirected graph of edges ``heads[e] - tails[e]`` over ``n`` vertices."""
    pymetis = _metis()
    keep = heads != tails
    heads, tails = heads[keep], tails[keep]
    # Undirected, de-duplicated adjacency in CSR order (METIS wants both directions, no loops).
    keys = np.unique(np.concatenate([heads * n + tails, tails * n + heads]))
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=xadj[1:])
    adjacency = pymetis.CSRAdjacency(xadj.astype(np.int32), (keys % n).astype(np.int32))
    vweights = None if weights is None else weights.ravel().astype(np.int32)
    result = pymetis.part_graph(n_parts, adjacency=adjacency, vweights=vweights, options=pymetis.Options(seed=seed))
    return np.asarray(result.vertex_part, dtype=np.int64)


def contracted_parts(triples: np.ndarray, n_entities: int, n1: int, seeds: np.ndarray, n_parts: int, seed: int) -> np.ndarray:
    """METIS over both KGs with each seed pair one vertex (its KG2 entity contracted onto its KG1 one).

    Two balance constraints, KG1 and KG2 entities, so that every part holds both KGs in
    proportion. Where the graph has communities (real KGs), an entity and its counterpart
    share seed neighbours and land in one part (on zh_en nearly all the validation pairs;
    docs/benchmarks.md, "Partitioned training").
    """
    vertex = np.arange(n_entities, dtype=np.int64)
    vertex[seeds[:, 1]] = seeds[:, 0]
    weights = np.zeros((n_entities, 2), dtype=np.int64)
    np.add.at(weights, (vertex, (np.arange(n_entities) >= n1).astype(np.int64)), 1)
    membership = _metis_parts(vertex[triples[:, 0]], vertex[triples[:, 2]], n_entities, n_parts, seed, weights)
    return membership[vertex]  # a seed's KG2 entity goes where its vertex went


def following_parts(triples: np.ndarray, n_entities: int, n1: int, seeds: np.ndarray, n_parts: int, seed: int,
                    rounds: int = 20) -> np.ndarray:
    """METIS over KG1 alone; KG2 follows: a seed's KG2 entity its partner, the others their neighbours.

    LargeEA's idea: each unplaced KG2 entity takes the part most of its placed neighbours are
    in, ``rounds`` times outwards from the seeds; what no round reaches is dealt round robin.
    Where a graph has no communities, one METIS cut of the union may put the two KGs' halves
    of one region in different parts, while this keeps the KG2 side tied to the seeds
    (on a synthetic 100k pair far more of the validation pairs land in one part than with the
    union's cut; docs/benchmarks.md, "Partitioned training").
    """
    in1 = (triples[:, 0] < n1) & (triples[:, 2] < n1)
    part_of = np.full(n_entities, -1, dtype=np.int64)
    part_of[:n1] = _metis_parts(triples[in1, 0], triples[in1, 2], n1, n_parts, seed)
    part_of[seeds[:, 1]] = part_of[seeds[:, 0]]
    kg2 = triples[~in1]
    rows, cols = np.concatenate([kg2[:, 0], kg2[:, 2]]), np.concatenate([kg2[:, 2], kg2[:, 0]])
    for _ in range(rounds):
        votes = (part_of[rows] < 0) & (part_of[cols] >= 0)
        if not votes.any():
            break
        keys, counts = np.unique(rows[votes] * n_parts + part_of[cols[votes]], return_counts=True)
        entity, part = keys // n_parts, keys % n_parts
        best = np.lexsort((part, -counts, entity))  # per entity: most votes, then the lower part
        first = np.ones(len(best), dtype=bool)
        first[1:] = entity[best][1:] != entity[best][:-1]
        part_of[entity[best][first]] = part[best][first]
    unplaced = np.flatnonzero(part_of < 0)
    part_of[unplaced] = np.arange(len(unplaced)) % n_parts
    return part_of


STRATEGIES = {"contracted": contracted_parts, "following": following_parts}


def partition_entities(triples: np.ndarray, n_entities: int, n1: int, seeds: np.ndarray, valid: np.ndarray,
                       n_parts: int, seed: int) -> tuple[np.ndarray, str]:
    """Part of every global entity, by the strategy that keeps more validation pairs within one part.

    ``triples``: global (head, relation, tail) rows; ``seeds``, ``valid``: global (kg1, kg2)
    pairs. Ties (and no validation pairs) go to ``contracted``. Chosen on validation pairs,
    which neither strategy sees, so the choice is fair to both.
    """
    best: tuple[float, str, np.ndarray] | None = None
    for name, strategy in STRATEGIES.items():
        part_of = strategy(triples, n_entities, n1, seeds, n_parts, seed)
        within = share_within(part_of, valid)
        if best is None or within > best[0]:
            best = (within, name, part_of)
    assert best is not None
    return best[2], best[1]


def build_partition(inputs: Inputs, seeds: np.ndarray, valid: np.ndarray, n_parts: int, seed: int, reporter: Reporter) -> Partition:
    """Cut the graph into ``n_parts`` parts and build each part's subgraph and feature rows."""
    triples = inputs.triples
    # Rank 0's cut on every rank under torchrun (METIS is seeded, but one answer is certain).
    main = distributed.is_main()
    part_of, strategy = distributed.broadcast_object(
        partition_entities(triples, inputs.n_entities, inputs.n1, seeds, valid, n_parts, seed) if main else None)
    device = inputs.graph.rows.device
    parts = []
    head_part, tail_part = part_of[triples[:, 0]], part_of[triples[:, 2]]
    for p in range(n_parts):
        entities = np.flatnonzero(part_of == p)
        inside = triples[(head_part == p) & (tail_part == p)]
        local = inside.copy()
        local[:, 0], local[:, 2] = np.searchsorted(entities, inside[:, 0]), np.searchsorted(entities, inside[:, 2])
        graph = build_graph(local, len(entities), inputs.n_relations).to(device)
        rows = torch.from_numpy(entities)
        matrices = [prepare_input(csr_rows(f.matrix, rows), device) for f in inputs.features]
        parts.append(Part(entities, graph, matrices))
    cut = float(np.mean(head_part != tail_part)) if len(triples) else 0.0
    partition = Partition(part_of, parts, cut, strategy, share_within(part_of, valid))
    record = partition.record()
    reporter.info(f"partitioned training: {n_parts} parts of {record['smallest']:,}-{record['largest']:,} entities (METIS, {strategy}), "
                  f"{cut:.1%} of the triples between parts, {partition.valid_within:.1%} of the validation "
                  "pairs within one part (the most the pseudo-pair search can find)")
    return partition
