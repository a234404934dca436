"""Alignment losses over a batch of seed pairs (rows of ``left``/``right`` are aligned)."""

from __future__ import annotations

import torch
from torch.nn.functional import cross_entropy, normalize


def _cross_logits(left: torch.Tensor, right: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine logits of every left row against every right row, and the diagonal labels."""
    logits = normalize(left, dim=1) @ normalize(right, dim=1).T / tau
    return logits, torch.arange(len(left), device=left.device)


def infonce(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Paper Eq. 15 / the code: one-directional in-batch InfoNCE, cross-KG negatives only."""
    logits, labels = _cross_logits(left, right, tau)
    return cross_entropy(logits, labels)


def infonce_sym(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE in both directions over the same logits: KG2 rows are anchors too, at no extra product."""
    logits, labels = _cross_logits(left, right, tau)
    return 0.5 * (cross_entropy(logits, labels) + cross_entropy(logits.T, labels))


def icl(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Ablation "repl. ICL" (MCLEA/MEAformer): both directions, plus intra-KG in-batch negatives."""
    left, right = normalize(left, dim=1), normalize(right, dim=1)
    n = len(left)
    labels = torch.arange(n, device=left.device)
    mask = torch.eye(n, dtype=torch.bool, device=left.device)
    cross = left @ right.T / tau
    intra_left = (left @ left.T / tau).masked_fill(mask, float("-inf"))
    intra_right = (right @ right.T / tau).masked_fill(mask, float("-inf"))
    forward = cross_entropy(torch.cat([cross, intra_left], dim=1), labels)
    backward = cross_entropy(torch.cat([cross.T, intra_right], dim=1), labels)
    return 0.5 * (forward + backward)


LOSSES = {"infonce": infonce, "infonce_sym": infonce_sym, "icl": icl}
