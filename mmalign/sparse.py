"""Sparse message-passing primitives with hand-written gradients.

Graph aggregation here is CSR sparse × dense (several times faster on CPU than gathering
E × d edge tensors and scattering them back), and per-edge dot products are SDDMM
(``torch.sparse.sampled_addmm``), an order of magnitude or more faster than gather-then-dot
(docs/benchmarks.md, "Memory and speed of the training step"). Neither torch op
differentiates with respect to the sparse values on CPU, so both get a small autograd Function
whose backward is again one SpMM/SDDMM: no ``E × d`` tensor is ever kept for backward.

Values are always given in *edge order* (the order the caller built the pattern with); each
pattern keeps the permutation into its own CSR order and, once a backward has asked for it,
its transpose's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


SLICE_ROWS = 1 << 17
"""Rows per slice where a forward without gradients works a slice of rows at a time (tens of MB each)."""


def _csr_layout(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
    """CSR row pointers, column indices and the permutation from edge order into CSR order.

    The permutation is None where edge order already is CSR order (the graph's adjacency and
    neighbourhood patterns are built sorted): no second copy of the columns, no permutation
    array (two E-long index arrays, 0.3 GB each at 20 M edges) and no gather of the values.
    """
    key = rows * n_cols + cols
    counts = torch.bincount(rows, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):
        return crow, cols, None
    order = torch.argsort(key, stable=True)
    return crow, cols[order].contiguous(), order


class SparsePattern:
    """A fixed sparsity pattern (``rows[e], cols[e]``) of shape ``n_rows × n_cols``.

    Duplicated (row, col) entries are allowed: SpMM sums them, SDDMM computes each.
    The transposed layout is built on first use: only a backward needs it, and a pattern
    used without gradients (the whole graph under partitioned training, evaluation) would
    otherwise hold three more index arrays for nothing (1.3 GB at 1M entities a side).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> None:
        rows, cols = rows.long().cpu(), cols.long().cpu()
        self.shape = (n_rows, n_cols)
        self.nnz = int(rows.numel())
        self.rows, self.cols = rows, cols
        self.crow, self.col, self.order = _csr_layout(rows, cols, n_rows, n_cols)
        self._transposed: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self.device = torch.device("cpu")

    @property
    def transposed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Row pointers, columns and permutation of the transpose's CSR layout."""
        if self._transposed is None:
            self._transposed = _csr_layout(self.cols, self.rows, self.shape[1], self.shape[0])
        return self._transposed

    @classmethod
    def from_csr(cls, matrix: torch.Tensor) -> tuple["SparsePattern", torch.Tensor]:
        """Pattern and values (edge order = CSR order) of a sparse CSR matrix."""
        crow = matrix.crow_indices()
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1), crow[1:] - crow[:-1])
        return cls(rows, matrix.col_indices(), *matrix.shape), matrix.values()

    def to(self, device: torch.device) -> "SparsePattern":
        """Move the index tensors (patterns are built once, then moved with the model)."""
        for name in ("rows", "cols", "crow", "col", "order"):
            value = getattr(self, name)
            setattr(self, name, None if value is None else value.to(device))
        if self._transposed is not None:
            self._transposed = tuple(None if value is None else value.to(device) for value in self._transposed)  # type: ignore[assignment]
        self.device = torch.device(device)
        return self

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix holding ``values`` (edge order)."""
        return torch.sparse_csr_tensor(self.crow, self.col, _permuted(values, self.order), self.shape)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """The transposed CSR matrix holding ``values`` (edge order)."""
        crow, col, order = self.transposed
        return torch.sparse_csr_tensor(crow, col, _permuted(values, order), self.shape[::-1])

    def sddmm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``s[e] = a[rows[e]] · b[cols[e]]`` without gathering rows (no autograd)."""
        zeros = torch.zeros(self.nnz, dtype=a.dtype, device=a.device)
        pattern = torch.sparse_csr_tensor(self.crow, self.col, zeros, self.shape)
        in_csr = torch.sparse.sampled_addmm(pattern, a, b.transpose(0, 1), beta=0.0).values()
        if self.order is None:
            return in_csr
        out = torch.empty_like(in_csr)
        out[self.order] = in_csr
        return out


def row_slices(pattern: "SparsePattern", values: torch.Tensor, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, CSR matrix of its slice)`` for slices of ``rows`` rows of ``pattern`` holding ``values`` (edge order).

    The slices are views of one CSR matrix (only their row pointers are new), so a product
    taken a slice at a time needs no N-row temporary.
    """
    matrix = pattern.matrix(values)
    for start in range(0, pattern.shape[0], rows):
        yield start, csr_row_range(matrix, start, min(start + rows, pattern.shape[0]))


def csr_row_range(matrix: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a sparse CSR matrix: views of its columns and values, new row pointers."""
    crow = matrix.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    return torch.sparse_csr_tensor(crow[start : stop + 1] - first, matrix.col_indices()[first:last],
                                   matrix.values()[first:last], (stop - start, matrix.shape[1]), check_invariants=False)


def csr_times(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``matrix @ dense`` for a sparse CSR ``matrix``, without the zero-filled input of ``@``.

    On the CPU ``@`` adds the product to a fresh zero matrix (one fill and one copy of the
    output, the size of the product itself); ``addmm`` with ``beta=0`` ignores its input, NaN
    included (documented), so an uninitialised output serves, and the result is the same to
    the bit. Other devices keep ``@``: this was measured on the CPU only.
    """
    if dense.device.type != "cpu":
        return matrix @ dense
    out = dense.new_empty(matrix.shape[0], dense.shape[1])
    return torch.addmm(out, matrix, dense, beta=0.0, out=out)


def _permuted(values: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """``values`` (edge order) in CSR order."""
    return values if order is None else values[order]


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, x: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, x)
        ctx.pattern = pattern
        return csr_times(pattern.matrix(values), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        values, x = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        grad = grad.contiguous()
        grad_values = pattern.sddmm(grad, x) if ctx.needs_input_grad[0] else None
        grad_x = csr_times(pattern.matrix_t(values), grad) if ctx.needs_input_grad[1] else None
        return grad_values, grad_x, None


class _SDDMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        ctx.pattern = pattern
        return pattern.sddmm(a.contiguous(), b.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        pattern: SparsePattern = ctx.pattern
        grad_a = csr_times(pattern.matrix(grad), b) if ctx.needs_input_grad[0] else None
        grad_b = csr_times(pattern.matrix_t(grad), a) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


def spmm(pattern: SparsePattern, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``Y[i] = Σ_e values[e] · x[cols[e]]`` over edges with ``rows[e] = i``; differentiable in both."""
    return _SpMM.apply(values, x, pattern)


def sddmm(pattern: SparsePattern, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``s[e] = a[rows[e]] · b[cols[e]]``; differentiable in ``a`` and ``b``."""
    return _SDDMM.apply(a, b, pattern)


def segment_softmax(scores: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``scores`` within each segment (edges of one row); empty segments are fine."""
    shift = torch.full((n_segments,), float("-inf"), dtype=scores.dtype, device=scores.device)
    shift = shift.scatter_reduce(0, segments, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - shift[segments])
    total = torch.zeros(n_segments, dtype=scores.dtype, device=scores.device).index_add(0, segments, exp)
    # index_select, not total[segments]: the indexing's backward (an accumulating index_put)
    # sums in a thread-dependent order on the CPU, which broke run-to-run determinism.
    return exp / total.index_select(0, segments)


def csr_rows(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of a dense or sparse CSR matrix, in that order (torch cannot index CSR rows)."""
    if matrix.layout != torch.sparse_csr:
        return matrix[rows]
    crow = matrix.crow_indices()
    starts = crow[rows]
    lengths = crow[rows + 1] - starts
    new_crow = torch.zeros(len(rows) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=new_crow[1:])
    take = torch.repeat_interleave(starts - new_crow[:-1], lengths) + torch.arange(int(new_crow[-1]))
    return torch.sparse_csr_tensor(new_crow, matrix.col_indices()[take], matrix.values()[take],
                                   (len(rows), matrix.shape[1]), check_invariants=False)
