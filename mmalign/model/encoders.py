"""Per-modality encoders (paper Eq. 1-2): one linear layer each, dense or sparse CSR input."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmalign.sparse import SparsePattern, csr_row_range, spmm


class SparseInput:
    """A fixed sparse CSR feature matrix prepared for :func:`spmm` (transpose built once)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.pattern, self.values = SparsePattern.from_csr(matrix)
        self.shape = matrix.shape

    def to(self, device: torch.device) -> "SparseInput":
        self.pattern.to(device)
        self.values = self.values.to(device)
        return self


def prepare_input(matrix: torch.Tensor, device: torch.device) -> "torch.Tensor | SparseInput":
    """Dense matrices move to ``device``; sparse CSR ones become :class:`SparseInput`."""
    if matrix.layout == torch.sparse_csr:
        return SparseInput(matrix).to(device)
    return matrix.to(device)


class ModalityEncoder(nn.Module):
    """``x = W f + b`` without activation (the authors' code); accepts a sparse CSR ``f``.

    Sparse inputs (bags of relations/attributes, hashed name n-grams) stay sparse: the product
    is ``torch.sparse.mm``, so no dense N × K matrix is ever built.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        # PyTorch's nn.Linear default init (Kaiming-uniform weight, uniform bias).
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.kaiming_uniform_(self.weight.T, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, features: "torch.Tensor | SparseInput") -> torch.Tensor:
        return multiply(features, self.weight) + self.bias


def dense(features: "torch.Tensor | SparseInput") -> torch.Tensor:
    """The features as a dense matrix (for narrow inputs only: N × columns floats)."""
    if isinstance(features, SparseInput):
        return features.pattern.matrix(features.values).to_dense()
    return features.to_dense() if features.layout == torch.sparse_csr else features


def multiply(features: "torch.Tensor | SparseInput", weight: torch.Tensor) -> torch.Tensor:
    """``features @ weight`` for a dense, CSR or prepared sparse input (sparse stays sparse)."""
    if isinstance(features, SparseInput):
        return spmm(features.pattern, features.values, weight)
    if features.layout == torch.sparse_csr:
        prepared = SparseInput(features).to(features.device)
        return spmm(prepared.pattern, prepared.values, weight)
    return features @ weight


def row_slice(features: "torch.Tensor | SparseInput", start: int, stop: int) -> "torch.Tensor | SparseInput":
    """Rows ``start:stop`` of a dense, CSR or prepared sparse input (a view where it can be)."""
    if isinstance(features, SparseInput):
        features = features.pattern.matrix(features.values)
    if features.layout != torch.sparse_csr:
        return features[start:stop]
    return SparseInput(csr_row_range(features, start, stop))
