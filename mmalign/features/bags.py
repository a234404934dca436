"""Bag-of-relations and bag-of-attributes modalities (loginmea-spec §1.3-1.4), as sparse CSR.

Both count over the two KGs together and keep the K most frequent items (ties: lower id first,
i.e. first seen at ingest). Relations: an entity counts each kept relation it is head or tail
of (``counts``, the code) or marks it (``binary``, the paper); ``split`` (the default) gives
heads and tails a column each, as RREA's relation features do, so "born in" says whether the
entity is the person or the place; ``merged`` (the spec's code) shares one column. Attributes:
binary, keyed by the attribute's name so that KGs sharing a vocabulary share columns.
"""

from __future__ import annotations

import numpy as np
import torch

from mmalign.features.base import FeatureContext, ModalityFeatures, register
from mmalign.features.config import RelationDirection, RelationValues


def sparse_rows(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """CSR matrix summing duplicate (row, col) entries."""
    key = rows.astype(np.int64) * shape[1] + cols
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=values, minlength=len(uniq)).astype(np.float32)
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(uniq // shape[1], minlength=shape[0]), out=crow[1:])
    return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(uniq % shape[1]), torch.from_numpy(summed), shape)


def _top_k(ids: np.ndarray, n_ids: int, k: int) -> np.ndarray:
    """Column of each id among the k most frequent (−1 when not kept)."""
    counts = np.bincount(ids, minlength=n_ids)
    kept = np.argsort(-counts, kind="stable")[:k]
    kept = kept[counts[kept] > 0]
    column = np.full(n_ids, -1, dtype=np.int64)
    column[kept] = np.arange(len(kept))
    return column


@register("relation")
def relation_bag(ctx: FeatureContext) -> ModalityFeatures | None:
    triples = ctx.triples
    if len(triples) == 0:
        return None
    k = ctx.config.bag_size
    column = _top_k(triples[:, 1], ctx.n_relations, k)
    col = column[triples[:, 1]]
    keep = col >= 0
    heads, tails, col = triples[keep, 0], triples[keep, 2], col[keep]
    rows = np.concatenate([heads, tails])
    tail_offset = k if ctx.config.relation_direction is RelationDirection.SPLIT else 0  # merged: one column
    cols = np.concatenate([col, col + tail_offset])
    values = np.ones(len(rows))
    matrix = sparse_rows(rows, cols, values, (ctx.n_entities, k + tail_offset))
    values = ctx.config.relation_values or RelationValues.COUNT  # unset: the code variant's
    if values is RelationValues.BINARY:
        matrix = torch.sparse_csr_tensor(matrix.crow_indices(), matrix.col_indices(), torch.ones_like(matrix.values()), matrix.shape)
    present = np.zeros(ctx.n_entities, dtype=bool)
    present[rows] = True
    return ModalityFeatures("relation", matrix, present, {"columns": int((column >= 0).sum()), "values": values.value})


@register("attribute")
def attribute_bag(ctx: FeatureContext) -> ModalityFeatures | None:
    ws = ctx.workspace
    names: dict[str, int] = {}
    entity_parts, attr_parts = [], []
    for kg, offset in ((ws.kg1, 0), (ws.kg2, ctx.n_kg1)):
        if len(kg.attr_triples) == 0:
            continue
        ids = np.asarray([names.setdefault(a, len(names)) for a in kg.attributes], dtype=np.int64)
        entity_parts.append(kg.attr_triples[:, 0].astype(np.int64) + offset)
        attr_parts.append(ids[kg.attr_triples[:, 1]])
    if not entity_parts:
        return None
    entities, attrs = np.concatenate(entity_parts), np.concatenate(attr_parts)
    pairs = np.unique(entities * len(names) + attrs)  # binary: one mark per (entity, attribute)
    entities, attrs = pairs // len(names), pairs % len(names)
    k = ctx.config.bag_size
    column = _top_k(attrs, len(names), k)
    keep = column[attrs] >= 0
    matrix = sparse_rows(entities[keep], column[attrs[keep]], np.ones(int(keep.sum())), (ctx.n_entities, k))
    present = np.zeros(ctx.n_entities, dtype=bool)
    present[entities] = True
    return ModalityFeatures("attribute", matrix, present, {"columns": int((column >= 0).sum())})
