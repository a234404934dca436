"""The sparse graph operators LoginMEA needs, built once from the relation triples.

Both KGs live in one global id space (KG1 entities first), so the two graphs are disconnected
components of one graph. Everything here is an edge list; nothing is N × N or N × R dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmalign.sparse import SparsePattern


@dataclass
class Graph:
    """Edges of the RREA graph and the operators derived from them.

    ``rows[e] ← cols[e]`` are the de-duplicated directed pairs (a triple ``(h, r, t)`` gives
    ``h ← t`` through ``r`` and ``t ← h`` through the inverse ``r + R``), sorted by (row, col).
    ``edge_set[e]`` names the set of relation ids on the pair (most pairs have one); the
    relation vector of an edge is the uniform mean of its set's relation embeddings
    (``set_pattern``/``set_weights``: sets × 2R).
    """

    n_entities: int
    n_relations: int
    rows: torch.Tensor
    cols: torch.Tensor
    edge_set: torch.Tensor
    n_sets: int
    set_pattern: SparsePattern
    set_weights: torch.Tensor
    adjacency: SparsePattern  # rows ← cols, RREA aggregation
    # rows × sets and cols × sets, one entry per distinct (entity, set) pair: an entity's edges
    # often share a relation set (many neighbours through one relation), and the reflection
    # term and u_ij · x_j depend on the edge only through that pair, so their sparse products
    # run over the distinct pairs (fewer entries than edges; docs/benchmarks.md, "Relation
    # sets shared by an entity's edges"). ``row_pair[e]``/``col_pair[e]``: edge e's entry.
    row_set: SparsePattern  # for the reflection term
    row_pair: torch.Tensor
    col_set: SparsePattern  # for u_ij · x_j
    col_pair: torch.Tensor
    mean_pattern: SparsePattern  # {i} ∪ undirected neighbours
    mean_weights: torch.Tensor  # 1 / |{i} ∪ N(i)|
    counts: torch.Tensor  # sparse CSR N × N: triples between i and j (both directions)

    @property
    def n_edges(self) -> int:
        return int(self.rows.numel())

    def to(self, device: torch.device) -> "Graph":
        for name in ("rows", "cols", "edge_set", "row_pair", "col_pair", "set_weights", "mean_weights"):
            setattr(self, name, getattr(self, name).to(device))
        for pattern in (self.set_pattern, self.adjacency, self.row_set, self.col_set, self.mean_pattern):
            pattern.to(device)
        return self


def _relation_sets(edge_of_entry: np.ndarray, rels: np.ndarray, n_edges: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Give each edge the id of its relation set; entries are sorted by (edge, relation)."""
    counts = np.bincount(edge_of_entry, minlength=n_edges)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    set_of_edge = np.empty(n_edges, dtype=np.int64)
    table: dict[tuple[int, ...], int] = {}
    members: list[np.ndarray] = []
    single = counts == 1
    # Single-relation edges: the set is keyed by the relation itself (vectorised).
    single_rels = rels[starts[single]]
    uniq, inverse = np.unique(single_rels, return_inverse=True)
    for rel in uniq:
        table[(int(rel),)] = len(members)
        members.append(np.array([rel], dtype=np.int64))
    set_of_edge[single] = np.asarray([table[(int(r),)] for r in uniq], dtype=np.int64)[inverse] if len(uniq) else 0
    for edge in np.flatnonzero(~single):
        key = tuple(int(r) for r in rels[starts[edge] : starts[edge] + counts[edge]])
        if key not in table:
            table[key] = len(members)
            members.append(np.asarray(key, dtype=np.int64))
        set_of_edge[edge] = table[key]
    return set_of_edge, members


def _entity_set_pairs(entities: np.ndarray, sets: np.ndarray, n_entities: int,
                      n_sets: int) -> tuple[SparsePattern, torch.Tensor]:
    """The distinct (entity, set) pairs of the edges as an entities × sets pattern (sorted, so
    its edge order is its CSR order), and each edge's pair."""
    keys, pair = np.unique(entities * n_sets + sets, return_inverse=True)
    pattern = SparsePattern(torch.from_numpy(keys // n_sets), torch.from_numpy(keys % n_sets), n_entities, n_sets)
    return pattern, torch.from_numpy(pair.reshape(-1).astype(np.int64, copy=False))


def build_graph(triples: np.ndarray, n_entities: int, n_relations: int) -> Graph:
    """Build the RREA edge list, relation sets and neighbourhood operators from global triples."""
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    rows = np.concatenate([h, t])
    cols = np.concatenate([t, h])
    rels = np.concatenate([r, r + n_relations])
    pair = rows * n_entities + cols
    order = np.lexsort((rels, pair))
    pair, rels = pair[order], rels[order]
    keep = np.ones(len(pair), dtype=bool)
    keep[1:] = (pair[1:] != pair[:-1]) | (rels[1:] != rels[:-1])
    pair, rels = pair[keep], rels[keep]
    edges, edge_of_entry = np.unique(pair, return_inverse=True)
    edge_rows, edge_cols = edges // n_entities, edges % n_entities
    edge_set, members = _relation_sets(edge_of_entry, rels, len(edges))

    set_ids = np.concatenate([np.full(len(m), i) for i, m in enumerate(members)]) if members else np.zeros(0, np.int64)
    set_rels = np.concatenate(members) if members else np.zeros(0, np.int64)
    set_weights = np.concatenate([np.full(len(m), 1.0 / len(m)) for m in members]) if members else np.zeros(0)

    # Neighbourhood mean over {i} ∪ undirected neighbours (duplicates removed).
    self_loops = np.arange(n_entities, dtype=np.int64)
    mean_pairs = np.unique(np.concatenate([edges, self_loops * n_entities + self_loops]))
    mean_rows, mean_cols = mean_pairs // n_entities, mean_pairs % n_entities
    degree = np.bincount(mean_rows, minlength=n_entities)

    # Triple counts between entities, both directions (the image fallback's neighbour mean).
    count_pairs, count_values = np.unique(np.concatenate([h * n_entities + t, t * n_entities + h]), return_counts=True)
    count_rows = torch.from_numpy(count_pairs // n_entities)
    crow = torch.zeros(n_entities + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(count_rows, minlength=n_entities), 0)
    counts = torch.sparse_csr_tensor(
        crow, torch.from_numpy(count_pairs % n_entities), torch.from_numpy(count_values.astype(np.float32)),
        (n_entities, n_entities),
    )

    rows_t, cols_t, set_t = (torch.from_numpy(a) for a in (edge_rows, edge_cols, edge_set))
    n_sets = len(members)
    row_set, row_pair = _entity_set_pairs(edge_rows, edge_set, n_entities, n_sets)
    col_set, col_pair = _entity_set_pairs(edge_cols, edge_set, n_entities, n_sets)
    return Graph(
        n_entities=n_entities,
        n_relations=n_relations,
        rows=rows_t,
        cols=cols_t,
        edge_set=set_t,
        n_sets=n_sets,
        set_pattern=SparsePattern(torch.from_numpy(set_ids), torch.from_numpy(set_rels), n_sets, 2 * n_relations),
        set_weights=torch.from_numpy(set_weights.astype(np.float32)),
        adjacency=SparsePattern(rows_t, cols_t, n_entities, n_entities),
        row_set=row_set,
        row_pair=row_pair,
        col_set=col_set,
        col_pair=col_pair,
        mean_pattern=SparsePattern(torch.from_numpy(mean_rows), torch.from_numpy(mean_cols), n_entities, n_entities),
        mean_weights=torch.from_numpy((1.0 / degree[mean_rows]).astype(np.float32)),
        counts=counts,
    )
