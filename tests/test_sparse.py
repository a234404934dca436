"""The CSR SpMM/SDDMM primitives and the segment softmax against dense references."""

from __future__ import annotations

import torch

from mmalign.sparse import SparsePattern, csr_times, sddmm, segment_softmax, spmm


def _random_pattern(n_rows: int, n_cols: int, nnz: int, seed: int = 0) -> SparsePattern:
    g = torch.Generator().manual_seed(seed)
    return SparsePattern(torch.randint(0, n_rows, (nnz,), generator=g), torch.randint(0, n_cols, (nnz,), generator=g), n_rows, n_cols)


def test_spmm_and_sddmm_match_dense_with_gradients() -> None:
    torch.manual_seed(0)
    p = _random_pattern(7, 5, 20)  # duplicates included
    values = torch.randn(p.nnz, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda v, x: spmm(p, v, x), (values, x))
    dense = torch.zeros(7, 5, dtype=torch.float64).index_put((p.rows, p.cols), values.detach(), accumulate=True)
    assert torch.allclose(spmm(p, values, x), dense @ x)
    a = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: sddmm(p, a, b), (a, b))
    assert torch.allclose(sddmm(p, a, b), (a[p.rows] * b[p.cols]).sum(1))


def test_segment_softmax_sums_to_one_per_row() -> None:
    rows = torch.tensor([0, 0, 2, 2, 2, 3])
    weights = segment_softmax(torch.randn(6), rows, 5)
    sums = torch.zeros(5).index_add(0, rows, weights)
    assert torch.allclose(sums[[0, 2, 3]], torch.ones(3))
    assert sums[1] == 0 and sums[4] == 0  # rows without edges stay empty


def test_csr_times_is_the_product_to_the_bit_whatever_the_output_held() -> None:
    """The uninitialised output of csr_times is never read: the same bits as ``@``, NaN-free."""
    p = _random_pattern(300, 200, 2_000, seed=1)
    values, x = torch.randn(p.nnz), torch.randn(200, 16)
    matrix = p.matrix(values)
    expected = matrix @ x
    garbage = torch.full((300, 16), float("nan"))  # freed memory reused by the next allocation
    del garbage
    got = csr_times(matrix, x)
    assert torch.equal(got, expected)
    out = torch.full((300, 16), float("nan"))
    assert torch.equal(torch.addmm(out, matrix, x, beta=0.0, out=out), expected)  # what csr_times relies on
