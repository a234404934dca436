"""TEMPORARY shim until the floors branch lands its evaluation module."""

from __future__ import annotations

import numpy as np
import torch

from mmalign.metrics import hits_mrr
from mmalign.search import rank_of_targets


def test_metrics(embeddings: torch.Tensor, pairs: np.ndarray, csls_k: int, candidates: np.ndarray | None = None) -> dict[str, float]:
    targets = np.unique(pairs[:, 1]) if candidates is None else candidates
    target_index = np.searchsorted(targets, pairs[:, 1])
    queries, query_rows = np.unique(pairs[:, 0], return_inverse=True)
    ranks = rank_of_targets(embeddings[queries], embeddings[targets], torch.from_numpy(target_index),
                            csls_k=csls_k, query_rows=torch.from_numpy(query_rows))
    return hits_mrr(ranks)


def validation_metrics(embeddings: torch.Tensor, splits, n1: int, csls_k: int) -> dict[str, float]:
    candidates = np.setdiff1d(np.arange(n1, len(embeddings)), splits.train[:, 1])
    return test_metrics(embeddings, splits.valid, csls_k, candidates)
