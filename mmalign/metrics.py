"""Ranks → the alignment metrics papers report: Hits@k, MRR, MR.

Ranks are 1-based (1 = the gold target scored best), one per (query, gold target) pair, as
produced by :func:`mmalign.search.rank_of_targets`. Hits@k and MRR are fractions in [0, 1]
(papers print them ×100); MR is the mean rank.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def hits_mrr(ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float | int]:
    """``{"hits@1": …, "hits@5": …, "hits@10": …, "mrr": …, "mr": …, "count": n}``.

    Keys follow ``ks`` (``hits@{k}`` each), then ``mrr``, ``mr`` (floats) and ``count`` (int,
    the number of ranks). Raises ValueError on no ranks or ranks below 1, which would mean a
    bug upstream rather than a bad model.
    """
    ranks = torch.as_tensor(ranks)
    if ranks.numel() == 0:
        raise ValueError("no ranks to summarise")
    if int(ranks.min()) < 1:
        raise ValueError("ranks are 1-based; got a rank below 1")
    ranks = ranks.to(torch.float64).flatten()
    out: dict[str, float | int] = {f"hits@{k}": float((ranks <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / ranks).mean())
    out["mr"] = float(ranks.mean())
    out["count"] = int(ranks.numel())
    return out
