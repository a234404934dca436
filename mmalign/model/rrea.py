"""Relational reflection graph attention (RREA), LoginMEA's global aggregation (paper Eq. 10-14).

Per layer: ``x_i' = tanh(Σ_j β_ij (I − 2 u_ij u_ijᵀ) x_j)`` where ``u_ij`` is the unit mean of
the relation embeddings on edge (i, j) and ``β`` is a softmax over i's edges of ``vᵀ u_ij``.
The reflection is expanded so that no ``E × d`` tensor exists:
``Σ_j β_ij x_j`` is one SpMM, ``s_ij = u_ij · x_j`` is one SDDMM against the (few) distinct
relation sets, and ``Σ_j β_ij s_ij u_ij`` is one SpMM over (row, relation-set) pairs. Both of
the latter run over an entity's distinct relation sets rather than its edges (the SDDMM's
values read back per edge, the SpMM's edge values summed per pair first): the same sums,
over fewer entries.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from mmalign.graph import Graph
from mmalign.model.activation import tanh, tanh_
from mmalign.sparse import SLICE_ROWS, csr_times, row_slices, segment_softmax, sddmm, spmm


def relation_set_vectors(graph: Graph, relation_table: torch.Tensor) -> torch.Tensor:
    """Unit vector ``u`` of every relation set (sets × d); computed once per forward pass."""
    mixed = spmm(graph.set_pattern, graph.set_weights, relation_table)
    return torch.nn.functional.normalize(mixed, dim=1)


class RREALayer(nn.Module):
    """One relational reflection attention layer: no weight matrix, one attention vector.

    ``attention="relation"`` scores an edge by its relation vector alone, ``vᵀ u_ij`` (the paper's
    Eq. 12 and the LoginMEA code); ``"full"`` scores ``vᵀ [x_i ; msg_ij ; u_ij]`` as the original
    RREA code does, so a neighbour's weight also depends on both entities. The full score is
    expanded like the message: ``v_n · msg_ij = v_n · x_j − 2 (u_ij · x_j)(v_n · u_ij)``, so it
    costs two N-vectors and two set-vectors, never an ``E × d`` tensor.
    """

    def __init__(self, dim: int, attention: str = "relation") -> None:
        super().__init__()
        if attention not in ("relation", "full"):
            raise ValueError(f"unknown attention {attention!r}")
        self.full = attention == "full"
        self.attention = nn.Parameter(torch.empty(3 * dim if self.full else dim, 1))  # [v_s; v_n; v_r] when full
        nn.init.xavier_uniform_(self.attention)

    def forward(self, x: torch.Tensor, graph: Graph, set_vectors: torch.Tensor) -> torch.Tensor:
        # index_select: plain indexing's backward sums repeated indices in a thread-dependent order.
        # The relation-only score comes before the projection, as it always has: the order ops are
        # built in sets the order their gradients are summed in, and with it the trained bits.
        if self.full:
            projection = _projection(x, graph, set_vectors)
            v_self, v_neighbour, v_relation = self.attention.view(3, -1, 1)
            per_set = (set_vectors @ torch.cat([v_relation, v_neighbour], dim=1)).index_select(0, graph.edge_set)
            scores = ((x @ v_self).squeeze(1).index_select(0, graph.rows)
                      + (x @ v_neighbour).squeeze(1).index_select(0, graph.cols)
                      - 2.0 * projection * per_set[:, 1] + per_set[:, 0])
        else:
            scores = (set_vectors @ self.attention).squeeze(1).index_select(0, graph.edge_set)
            projection = _projection(x, graph, set_vectors)
        beta = segment_softmax(scores, graph.rows, graph.n_entities)
        # −2 folded into the edge values (E numbers) rather than applied to an N × d block.
        reflection = _per_row_pair(-2.0 * beta * projection, graph)
        if torch.is_grad_enabled():
            mixed = spmm(graph.adjacency, beta, x)
            return tanh(mixed + spmm(graph.row_set, reflection, set_vectors))
        # Evaluation (the whole-graph forward): the same values a slice of rows at a time, in
        # place, so the layer's only N × d tensor is its output.
        out = torch.empty_like(x)
        for (start, mixing), (_, reflecting) in zip(row_slices(graph.adjacency, beta, SLICE_ROWS),
                                                        row_slices(graph.row_set, reflection, SLICE_ROWS)):
            out[start : start + mixing.shape[0]] = tanh_(csr_times(mixing, x).add_(csr_times(reflecting, set_vectors)))
        return out


def _projection(x: torch.Tensor, graph: Graph, set_vectors: torch.Tensor) -> torch.Tensor:
    """``u_ij · x_j`` of every edge, one dot product per distinct (j, set) pair."""
    return sddmm(graph.col_set, x, set_vectors).index_select(0, graph.col_pair)


def _per_row_pair(values: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Edge values summed over the edges sharing a (row, relation set) pair: the entries of ``row_set``."""
    return values.new_zeros(graph.row_set.nnz).index_add(0, graph.row_pair, values)


class GATLayer(nn.Module):
    """Plain graph attention (the "repl. GAT" ablation; MCLEA/MEAformer's sparse GAT).

    Per-head diagonal weight (init ones), score ``exp(−LeakyReLU(aᵀ[W x_i ; W x_j]))`` normalised
    over i's neighbours incl. itself, heads averaged; no relation information.
    """

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, dim))
        self.attention = nn.Parameter(torch.empty(heads, 2 * dim))
        nn.init.xavier_uniform_(self.attention)

    def forward(self, x: torch.Tensor, graph: Graph, set_vectors: torch.Tensor | None = None) -> torch.Tensor:
        pattern, dim = graph.mean_pattern, x.shape[1]
        outputs = []
        for head in range(self.weight.shape[0]):
            wx = x * self.weight[head]
            left = wx @ self.attention[head, :dim]
            right = wx @ self.attention[head, dim:]
            scores = -torch.nn.functional.leaky_relu(left.index_select(0, pattern.rows) + right.index_select(0, pattern.cols), 0.2)
            weights = segment_softmax(scores, pattern.rows, graph.n_entities)
            outputs.append(spmm(pattern, weights, wx))
        return torch.stack(outputs).mean(0)


class GraphStack(nn.Module):
    """``depth`` graph layers; returns the input block and every layer's output (Eq. 13)."""

    def __init__(self, dim: int, depth: int, layer: str, attention: str = "relation") -> None:
        super().__init__()
        self.layers = nn.ModuleList(RREALayer(dim, attention) if layer == "rrea" else GATLayer(dim) for _ in range(depth))
        self.elu_between = layer == "gat"

    def forward(self, x: torch.Tensor, graph: Graph, set_vectors: torch.Tensor | None) -> list[torch.Tensor]:
        return list(self.iterate(x, graph, set_vectors))

    def iterate(self, x: torch.Tensor, graph: Graph, set_vectors: torch.Tensor | None) -> Iterator[torch.Tensor]:
        """The input block, then each layer's output as soon as it is computed.

        Holds only the block the next layer reads: a caller that copies each block away and
        drops it (the whole-graph forward without gradients) never holds the whole stack.
        """
        yield x
        for index, layer in enumerate(self.layers):
            x = layer(x, graph, set_vectors)
            if self.elu_between and index < len(self.layers) - 1:
                x = torch.nn.functional.elu(x)
            yield x
