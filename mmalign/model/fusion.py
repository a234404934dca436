"""Local fusion of the modality embeddings (paper Eq. 3-9) and the code's early concatenation.

- :class:`AdaptiveWeights`: entity-specific modality weights ``α_i^m = softmax_m(wᵀ tanh(x_i^m))``.
- :class:`LowRankFusion`: low-rank multimodal fusion; never materialises the (d+1)^M tensor.
- :class:`EarlyConcat`: the authors' code's global-softmax weighted concatenation (layer-0 block).
- :class:`ConcatFusion`, weighted sum: ablations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import normalize

from mmalign.model.activation import tanh


class AdaptiveWeights(nn.Module):
    """Entity-adaptive modality weights; ``per_modality`` gives each modality its own scorer."""

    def __init__(self, dim: int, n_modalities: int, per_modality: bool = False) -> None:
        super().__init__()
        self.scorers = nn.ModuleList(
            nn.Linear(dim, 1, bias=False) for _ in range(n_modalities if per_modality else 1)
        )

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        scorers = self.scorers if len(self.scorers) == len(xs) else [self.scorers[0]] * len(xs)
        scores = torch.cat([scorer(tanh(x)) for scorer, x in zip(scorers, xs)], dim=1)
        return torch.softmax(scores, dim=1)  # N × M


class LowRankFusion(nn.Module):
    """``h = Σ_k λ_k ⊙_m (z_m W_m^(k)) + b`` with ``z_m = [1 ; x̂_m]`` (paper Eq. 8-9).

    With one modality the rank sum is linear in ``z``: ``Σ_k λ_k z W^(k) = z (Σ_k λ_k W^(k))``,
    so it is computed as one matrix product — the same function at 1/rank of the cost.
    """

    def __init__(self, in_dims: list[int], out_dim: int, rank: int, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.rank, self.out_dim = rank, out_dim
        # The N × (d+1) × (rank·out) products dominate fusion (≈ 20 G multiply-adds per modality
        # on DBP15K); bfloat16 runs them much faster on CPUs with AVX-512 BF16 (docs/benchmarks.md,
        # "Memory and speed of the training step"). Parameters, the modality product and the rank
        # sum stay in the parameters' dtype. None: no conversion.
        self.compute_dtype = compute_dtype
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(rank, d + 1, out_dim)) for d in in_dims)
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        self.bias = nn.Parameter(torch.zeros(1, out_dim))
        for factor in self.factors:
            nn.init.xavier_normal_(factor)
        nn.init.xavier_normal_(self.rank_weights)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        n = xs[0].shape[0]
        ones = xs[0].new_ones(n, 1)
        if len(xs) == 1:
            weight = torch.einsum("k,kio->io", self.rank_weights[0], self.factors[0])
            return torch.cat([ones, xs[0]], dim=1) @ weight + self.bias
        product = None
        dtype = self.compute_dtype or xs[0].dtype
        # λ_k folded into the first modality's factor (rank · (d+1) · out numbers): the rank sum
        # is then a plain sum, whose backward broadcasts the output gradient, where the einsum
        # over the N × rank × out product ran a batched product and two permuting copies of
        # that product each step.
        factors = [self.factors[0] * self.rank_weights[0][:, None, None], *self.factors[1:]]
        for x, factor in zip(xs, factors):
            z = torch.cat([ones, x], dim=1)
            weight = factor.permute(1, 0, 2).reshape(z.shape[1], -1)
            projected = (z.to(dtype) @ weight.to(dtype)).to(x.dtype)  # N × (rank · out)
            product = projected if product is None else product * projected
        return product.view(n, self.rank, self.out_dim).sum(1) + self.bias


class EarlyConcat(nn.Module):
    """``tanh([β_m norm(x_m)]_m)`` with global ``β = softmax(u)`` (the code's layer-0 block)."""

    def __init__(self, n_modalities: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.ones(n_modalities))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        beta = torch.softmax(self.logits, dim=0)
        return tanh(torch.cat([beta[m] * normalize(x, dim=1) for m, x in enumerate(xs)], dim=1))


class ConcatFusion(nn.Module):
    """Ablation "repl. concat fusion": ``W_c [norm(x_m)]_m`` mapped back to the graph width."""

    def __init__(self, in_dims: list[int], out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(sum(in_dims), out_dim)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(torch.cat([normalize(x, dim=1) for x in xs], dim=1))


def weighted_sum(weighted: list[torch.Tensor]) -> torch.Tensor:
    """Ablation "w/o low-rank": ``Σ_m α^m norm(x^m)`` (inputs already weighted)."""
    return torch.stack(weighted).sum(0)
