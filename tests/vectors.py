"""Small unit-row test data and brute-force float64 references for the search and evaluation tests."""

from __future__ import annotations

import numpy as np
import torch


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def dyadic(n: int, seed: int) -> torch.Tensor:
    """Unit rows of width 8 with four entries ±0.5: every dot product, and every CSLS score
    with an even ``csls_k``, is exact in float32 whatever the summation order. BLAS sums in
    different orders at matrix edges, so only such data gives identical vectors bit-equal
    scores, which the tie tests need."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.zeros(n, 8)
    for row in rows:
        row[torch.randperm(8, generator=g)[:4]] = 0.5 * (2 * torch.randint(0, 2, (4,), generator=g) - 1).float()
    return rows


def reference_scores(q: torch.Tensor, c: torch.Tensor, csls_k: int) -> np.ndarray:
    """The full score matrix in float64: cosine, or CSLS from its definition."""
    s = q.double() @ c.double().T
    if csls_k:
        r_q = s.topk(min(csls_k, s.shape[1]), dim=1).values.mean(1, keepdim=True)
        r_c = s.T.topk(min(csls_k, s.shape[0]), dim=1).values.mean(1)[None, :]
        s = 2 * s - r_q - r_c
    return s.numpy()


def reference_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices sorted by score descending, equal scores by lower index (stable sort)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
