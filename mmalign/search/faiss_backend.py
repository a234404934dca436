"""The optional faiss backend: exact inner-product top-k with ``IndexFlatIP``.

faiss is an optional extra (``pip install faiss-cpu``), imported on first use only, so the
package works and imports fast without it.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from mmalign.report import Reporter

FAISS_CHUNK = 16384
"""Queries per faiss call: faiss blocks internally; this only paces progress reports."""


@functools.cache
def _faiss() -> ModuleType | None:
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_available() -> bool:
    """Whether the optional faiss backend can be used."""
    return _faiss() is not None


def faiss_search(base: Tensor, queries: Tensor, k: int, reporter: Reporter) -> tuple[Tensor, Tensor]:
    """Each query's ``k`` largest inner products with the rows of ``base``, ties in arbitrary order."""
    faiss = _faiss()
    assert faiss is not None
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base.contiguous().numpy())
    return search_in_chunks(index, queries, k, reporter, "ranking")


def search_in_chunks(index: Any, queries: Tensor, k: int, reporter: Reporter, description: str) -> tuple[Tensor, Tensor]:
    """``(scores, indices)`` of a faiss index's ``k`` best rows for each query, best first."""
    values = torch.empty(len(queries), k)
    indices = torch.empty(len(queries), k, dtype=torch.int64)
    q = queries.contiguous().numpy()
    with reporter.progress(description, total=len(queries)) as task:
        for start in range(0, len(queries), FAISS_CHUNK):
            d, i = index.search(q[start : start + FAISS_CHUNK], k)
            values[start : start + len(d)] = torch.from_numpy(d)
            indices[start : start + len(d)] = torch.from_numpy(i)
            task.advance(len(d))
    return values, indices
