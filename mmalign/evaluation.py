"""Evaluation: the ranking protocols and the metrics papers report (Hits@k, MRR, MR).

Training (validation, test) and ``mmalign evaluate`` rank through here, so a run's test
pairs give the same numbers in both. Every protocol ranks id pairs ``(row of left, row of
right)`` the same way: the queries are the distinct left entities of the pairs, each used
once (so CSLS sees each entity once even when gold is one-to-many), and each pair's target
is ranked among a set of candidate rows of ``right``. Protocols differ only in that set:

- :func:`gold_targets`, the papers' protocol: the distinct targets of the pairs, so numbers
  compare with published tables;
- :func:`non_seed_targets`, validation's: every KG2 entity outside the training seeds;
- every row of ``right`` (``mmalign evaluate --all-candidates``): harder, closer to real use.

How a query's candidates are ordered is :class:`RankingConfig`'s: Sinkhorn (the default for
test pairs and ``mmalign evaluate``, :mod:`mmalign.search.sinkhorn`) or CSLS/cosine (always
for validation, whose candidate set is every non-seed KG2 entity, not an assignment).

Ranks are 1-based (1 = the gold target scored best), one per pair. Hits@k and MRR are
fractions in [0, 1] (papers print them ×100); MR is the mean rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from mmalign.errors import MMAlignError
from mmalign.report import SILENT, Reporter
from mmalign.search import ListSides, rank_of_targets, sinkhorn_ranks
from mmalign.settings import Choice, Section, at_least

Metrics = dict[str, float | int]
"""What :func:`hits_mrr` returns: ``hits@k`` for each k, ``mrr``, ``mr`` and ``count``."""


class RankMethod(Choice):
    """How the candidates of a query are ordered."""

    # Sinkhorn-normalised cosines over both sides' candidate lists: more test pairs ranked first
    # than CSLS on every saved benchmark run (docs/benchmarks.md).
    SINKHORN = "sinkhorn"
    CSLS = "csls"  # CSLS with selection.csls (cosine at 0): what runs before this setting reported

    @classmethod
    def label(cls, key: str) -> str:
        return "ranking"


@dataclass(frozen=True)
class RankingConfig(Section):
    """How test pairs, ``mmalign evaluate`` and ``predict`` rank; validation too where it reads
    Sinkhorn (``selection.reading``); the pseudo-pair search keeps CSLS."""

    method: RankMethod = RankMethod.SINKHORN
    # SEU's values (Mao et al., 2021: exp(50 · cos), 10 iterations), not tuned here.
    sinkhorn_temperature: float = 0.02
    sinkhorn_iterations: int = 10
    # Best candidates kept (by cosine) for the normalisation, per row of each side in
    # ``sinkhorn_sides``: longer lists, closer to SEU's dense matrix; (queries + candidates) × 50
    # entries is little memory at any size.
    sinkhorn_lists: int = 50
    # Whose lists: each side's (``both``: two searches), or each query's only (one search: half
    # of ``predict``'s search at scale, but the candidates' lists hold true pairs the queries'
    # miss where the model or the approximate search is weak, docs/benchmarks.md).
    sinkhorn_sides: ListSides = ListSides.BOTH

    def check(self) -> None:
        if not self.sinkhorn_temperature > 0:
            raise MMAlignError(f"--sinkhorn-temperature must be above 0, got {self.sinkhorn_temperature}")
        at_least("sinkhorn_iterations", self.sinkhorn_iterations, 1)
        at_least("sinkhorn_lists", self.sinkhorn_lists, 1)


def gold_targets(pairs: np.ndarray) -> np.ndarray:
    """The papers' candidates: the distinct targets of the pairs, sorted."""
    return np.unique(pairs[:, 1])


def non_seed_targets(entities: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Validation's candidates: ``entities`` (the KG2 rows) minus the training seeds' targets.

    The validation split is small (10% of the seeds), and ranking it only against its own
    targets saturates long before test accuracy does; all non-seed KG2 entities make a
    candidate set as hard as the real task, without looking at test labels.
    """
    return np.setdiff1d(entities, seeds[:, 1])


def rank_pairs(
    left: Tensor,
    right: Tensor,
    pairs: np.ndarray,
    candidates: np.ndarray,
    *,
    csls_k: int = 0,
    ranking: RankingConfig | None = None,
    block: int = 4096,
    reporter: Reporter = SILENT,
) -> Tensor:
    """Rank of each pair's target among ``candidates`` for the pair's query, int64, one per pair.

    ``pairs`` is (P, 2): rows of ``left``, rows of ``right``. ``candidates`` are rows of
    ``right``, sorted and distinct, holding every pair's target (ValueError otherwise).
    By CSLS with ``csls_k`` (cosine at 0) unless ``ranking`` asks for Sinkhorn (then
    candidates outside the Sinkhorn lists follow them in that order).
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    candidates = np.asarray(candidates, dtype=np.int64)
    if len(candidates) > 1 and not bool((np.diff(candidates) > 0).all()):
        raise ValueError("candidates must be sorted and distinct")
    target_index = np.searchsorted(candidates, pairs[:, 1])
    if not bool((target_index < len(candidates)).all()) or not np.array_equal(candidates[target_index], pairs[:, 1]):
        raise ValueError("every pair's target must be among the candidates")
    queries, query_rows = np.unique(pairs[:, 0], return_inverse=True)
    if ranking is not None and ranking.method is RankMethod.SINKHORN:
        pool = right if len(candidates) == len(right) else right[torch.from_numpy(candidates)]
        return sinkhorn_ranks(
            left[torch.from_numpy(queries)], pool, torch.from_numpy(target_index),
            lists=ranking.sinkhorn_lists, temperature=ranking.sinkhorn_temperature,
            iterations=ranking.sinkhorn_iterations, sides=ranking.sinkhorn_sides, csls_k=csls_k,
            query_rows=torch.from_numpy(query_rows), block=block, reporter=reporter,
        )
    # Candidates that are most of right (validation's every non-seed entity) are ranked in
    # place with the other rows left out: a copy of them would be most of right again.
    if 2 * len(candidates) > len(right):
        excluded = torch.from_numpy(np.setdiff1d(np.arange(len(right)), candidates))
        pool, targets = right, torch.from_numpy(pairs[:, 1])
    else:
        excluded, pool, targets = None, right[torch.from_numpy(candidates)], torch.from_numpy(target_index)
    return rank_of_targets(
        left[torch.from_numpy(queries)], pool, targets, csls_k=csls_k, block=block,
        query_rows=torch.from_numpy(query_rows), excluded=excluded, reporter=reporter,
    )


def evaluate_pairs(
    left: Tensor,
    right: Tensor,
    pairs: np.ndarray,
    candidates: np.ndarray,
    *,
    csls_k: int = 0,
    ranking: RankingConfig | None = None,
    reporter: Reporter = SILENT,
) -> dict[str, float | int]:
    """:func:`hits_mrr` of the pairs' ranks among ``candidates`` (see :func:`rank_pairs`)."""
    return hits_mrr(rank_pairs(left, right, pairs, candidates, csls_k=csls_k, ranking=ranking, reporter=reporter))


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
