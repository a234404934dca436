"""The CPU kernel choices of a training step, timed on this machine: each form the code uses
against the plain torch form it replaced, on the shapes of a DBP15K run.

    python benchmarks/kernels.py [--repeats 10] [--work WORKSPACE ...]

Rows (median milliseconds of ``--repeats`` after a warm-up; random inputs, the work does not
depend on the values):

- tanh of a 38,960 × 100 block: ``torch.tanh`` against :func:`mmalign.model.activation.tanh`
  (``2σ(2x) − 1``).
- a CSR × dense product (38,960 rows, 260,000 entries, width 100): ``@`` against
  :func:`mmalign.sparse.csr_times` (``addmm`` with ``beta=0`` into an uninitialised output).
- the loss's B × B similarities at width 600: one ``left @ right.T`` against
  :func:`mmalign.model.loss._similarities` (tall products of 256 right rows).
- the pseudo-pair search's both-ways lists over 15,338 × 15,522 rows at width 600: blocks of
  left rows against every right row against blocks of right columns
  (:func:`mmalign.search.mutual.top_k_both`).
- with ``--work``, on each ingested workspace's own graph (the saving depends on how often an
  entity's edges share a relation set): one RREA layer's reflection products at width 100,
  forward and backward (``u_ij · x_j``, ``Σ_j β_ij s_ij u_ij`` and their gradients), over
  every edge against over each distinct (entity, relation set) pair
  (:func:`mmalign.graph.build_graph`'s ``row_set``/``col_set``).

These forms were chosen on an AVX2 CPU; this table is how to check them on another one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mmalign.cli._app import configure_compute  # noqa: E402  (the CLI's threads and allocator)
from mmalign.graph import build_graph  # noqa: E402
from mmalign.machine import machine_line  # noqa: E402
from mmalign.model.activation import tanh  # noqa: E402
from mmalign.model.loss import _similarities  # noqa: E402
from mmalign.search import mutual  # noqa: E402
from mmalign.sparse import SparsePattern, csr_times  # noqa: E402
from mmalign.training.inputs import global_triples  # noqa: E402
from mmalign.workspace import Workspace  # noqa: E402


def median_ms(work: Callable[[], object], repeats: int) -> float:
    """Median wall milliseconds of ``work`` over ``repeats`` runs after one warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def rows(repeats: int) -> list[tuple[str, float, float]]:
    """(what, plain torch ms, the code's form ms) for each kernel choice."""
    generator = torch.Generator().manual_seed(0)
    out: list[tuple[str, float, float]] = []
    block = torch.randn(38_960, 100, generator=generator)
    out.append(("tanh, 38,960 × 100", median_ms(lambda: torch.tanh(block), repeats),
                median_ms(lambda: tanh(block), repeats)))
    n, nnz = 38_960, 260_000
    pattern = SparsePattern(torch.randint(0, n, (nnz,), generator=generator).sort().values,
                            torch.randint(0, n, (nnz,), generator=generator), n, n)
    matrix = pattern.matrix(torch.rand(nnz, generator=generator))
    out.append(("CSR × dense, 38,960 rows, 260k entries, width 100", median_ms(lambda: matrix @ block, repeats),
                median_ms(lambda: csr_times(matrix, block), repeats)))
    for size in (2_025, 2_700, 3_500):
        left, right = torch.randn(size, 600, generator=generator), torch.randn(size, 600, generator=generator)
        out.append((f"loss similarities, {size:,}² at width 600", median_ms(lambda: left @ right.T, repeats),
                    median_ms(lambda: _similarities(left, right), repeats)))
    left = torch.nn.functional.normalize(torch.randn(15_338, 600, generator=generator), dim=1)
    right_t = torch.nn.functional.normalize(torch.randn(15_522, 600, generator=generator), dim=1).T.contiguous()
    searches = max(2, repeats // 4)
    kept = mutual.COLUMN_BLOCK_BYTES
    try:
        mutual.COLUMN_BLOCK_BYTES = 0  # every column block too large: rows at a time
        by_rows = median_ms(lambda: mutual.top_k_both(left, right_t, 10, 1024, torch.float32), searches)
    finally:
        mutual.COLUMN_BLOCK_BYTES = kept
    by_columns = median_ms(lambda: mutual.top_k_both(left, right_t, 10, 1024, torch.float32), searches)
    out.append(("search lists both ways, 15,338 × 15,522 at width 600", by_rows, by_columns))
    return out


def reflection_row(work: Path, repeats: int) -> tuple[str, float, float]:
    """One RREA layer's reflection products on ``work``'s graph: per edge against per distinct pair."""
    workspace = Workspace.open(work)
    triples, n_relations = global_triples(workspace)
    n = len(workspace.kg1.entities) + len(workspace.kg2.entities)
    graph = build_graph(triples, n, n_relations)
    per_edge = (SparsePattern(graph.rows, graph.edge_set, n, graph.n_sets),
                SparsePattern(graph.cols, graph.edge_set, n, graph.n_sets))
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(graph.n_edges, generator=generator)
    x, grad = torch.randn(n, 100, generator=generator), torch.randn(n, 100, generator=generator)
    sets = torch.randn(graph.n_sets, 100, generator=generator)

    def edges() -> None:
        rows, cols = per_edge
        cols.sddmm(x, sets)  # the projection u_ij · x_j, over the columns' pattern as the layer took it
        csr_times(rows.matrix(values), sets)  # the reflection term
        rows.sddmm(grad, sets)  # its backward: the values' gradient ...
        csr_times(rows.matrix_t(values), grad)  # ... and the set vectors'
        csr_times(cols.matrix(values), sets)  # the projection's backward: x's gradient ...
        csr_times(cols.matrix_t(values), x)  # ... and the set vectors'

    def pairs() -> None:
        graph.col_set.sddmm(x, sets).index_select(0, graph.col_pair)
        row_values = values.new_zeros(graph.row_set.nnz).index_add(0, graph.row_pair, values)
        csr_times(graph.row_set.matrix(row_values), sets)
        graph.row_set.sddmm(grad, sets).index_select(0, graph.row_pair)
        csr_times(graph.row_set.matrix_t(row_values), grad)
        col_values = values.new_zeros(graph.col_set.nnz).index_add(0, graph.col_pair, values)
        csr_times(graph.col_set.matrix(col_values), sets)
        csr_times(graph.col_set.matrix_t(col_values), x)

    what = (f"reflection products, {work.name if work.name != 'work' else work.parent.name}: {graph.n_edges:,} edges, "
            f"{graph.row_set.nnz:,} distinct (entity, set) pairs")
    return what, median_ms(edges, repeats), median_ms(pairs, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per form (the search: a quarter, at least 2)")
    parser.add_argument("--work", type=Path, action="append", default=[],
                        help="an ingested workspace whose graph times the reflection products (repeatable)")
    args = parser.parse_args()
    configure_compute()
    print(machine_line("fp32", torch.get_num_threads()))
    print("| kernel | plain torch (ms) | mmalign's form (ms) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for what, plain, ours in rows(args.repeats) + [reflection_row(work, args.repeats) for work in args.work]:
        print(f"| {what} | {plain:,.1f} | {ours:,.1f} | {ours / plain:.2f} |")


if __name__ == "__main__":
    main()
