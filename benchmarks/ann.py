"""Benchmark of approximate nearest-neighbour search (clusters probed in the leading
directions) against exact blockwise search.

    python benchmarks/ann.py                                  # 100k and 1M candidates, width 1200
    python benchmarks/ann.py --sizes 25000 50000 --queries 5000
    python benchmarks/ann.py --embeddings RUN/embeddings.safetensors   # a trained run's kg1 vs kg2

Synthetic mode: N candidates that look like alignment embeddings (clusters of 50 rows whose
members meet at cosine 0.5, as a trained zh_en model's 10th neighbour does), and queries made
from a sample of them as ``normalize(x + noise)`` at cosine 0.94 (a zh_en gold pair's
median). Exact top-10 of ``--queries`` queries (blockwise torch, what the search module does
below ``ann_from``) is the reference; the ANN lists come from :mod:`mmalign.search.ann` with
its own calibration of the clusters probed. Times: the index's build (leading directions,
k-means, assignment), the calibration, the ANN queries and the exact queries, and both
extrapolated to N × N (every candidate also a query, as the pseudo-pair search and predict
are): exact linearly in the queries, ANN as build + calibration + per-query time × N. The partner column is the fraction of queries whose own source row is first.
The last column times what model selection keeps exact at every size: 1,000 validation pairs
ranked with CSLS (k 3) against all N candidates (:func:`mmalign.search.rank_of_targets`).
``--mutual N``: the pseudo-pair search (mutual CSLS nearest neighbours) with N per side,
exact against approximate.

``--embeddings``: kg2's rows are the candidates, all of them, and ``--queries`` of kg1's rows
(seeded sample) the queries; ``--csls`` also times the CSLS top-10 (``topk(csls_k=3)``) and
the mutual CSLS pairs over all rows, exact against approximate.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mmalign import search  # noqa: E402
from mmalign.machine import machine_line  # noqa: E402  (the checkout's, not an installed copy)
from mmalign.search import ann  # noqa: E402
from mmalign.search.recall import SAMPLE, TARGET_RECALL, recall  # noqa: E402

CLUSTER = 50
PAIR_COSINE = 0.94
CHUNK = 100_000


def synthetic(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(candidates, queries, each query's source row): unit rows, made in chunks so that
    1M × 1200 needs one copy only."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(1, n // CLUSTER), dim, generator=g)
    candidates = torch.empty(n, dim)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        rows = centres[torch.randint(0, len(centres), (stop - start,), generator=g)]
        candidates[start:stop] = torch.nn.functional.normalize(rows.add_(torch.randn(stop - start, dim, generator=g)), dim=1)
    source = torch.randperm(n, generator=g)[:n_queries]
    noise = math.sqrt(1 / PAIR_COSINE**2 - 1) / math.sqrt(dim)
    queries = torch.nn.functional.normalize(candidates[source] + noise * torch.randn(len(source), dim, generator=g), dim=1)
    return candidates, queries, source


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def compare(queries: torch.Tensor, candidates: torch.Tensor, source: torch.Tensor | None, n_all: int) -> str:
    """One table row: recall and times of ANN against exact top-10 for these queries."""
    (_, exact), t_exact = timed(search.topk, queries, candidates, 10, backend="torch")
    (index, measured), t_build = timed(ann.measured_index, queries, candidates, 10, 4096)
    if index is None:
        return (f"| {len(candidates):,} | {len(queries):,} | {candidates.shape[1]} | {measured.clusters} | — | "
                f"{measured.width} | {measured.work:.3f} | exact search (no probing reached recall@10 "
                f"{TARGET_RECALL} below {ann.MAX_WORK:.0%} of the products) | | | | {t_build:.1f} "
                f"| | {t_exact:.1f} | | {t_exact * n_all / len(queries):,.1f} |")
    (_, found), t_query = timed(ann.search_index, index, queries, candidates, 10, measured.probes, 4096)
    del index
    validation = ""
    if source is not None:  # 1,000 validation pairs ranked exactly with CSLS, as selection does
        _, t_valid = timed(search.rank_of_targets, queries[:1000], candidates, source[:1000], csls_k=3)
        validation = f" {t_valid:.1f} |"
    r1 = float((found[:, 0] == exact[:, 0]).float().mean())
    partner = "—" if source is None else f"{float((exact[:, 0] == source).float().mean()):.3f} / {float((found[:, 0] == source).float().mean()):.3f}"
    per_query = n_all / len(queries)
    return (f"| {len(candidates):,} | {len(queries):,} | {candidates.shape[1]} | {measured.clusters} | {measured.probes} "
            f"| {measured.width} | {measured.work:.3f} | {measured.recall:.3f} | {r1:.4f} | {recall(found, exact):.4f} "
            f"| {partner} | {t_build:.1f} | {t_query:.1f} | {t_exact:.1f} "
            f"| {t_build + t_query * per_query:,.1f} | {t_exact * per_query:,.1f} |{validation}")


HEADER = ("| candidates | queries | dim | clusters | probed | width | work | sample recall@10 | recall@1 | recall@10 "
          "| partner first (exact / ANN) | build and calibrate s | ANN query s | exact query s | ANN N×N s | exact N×N s |")
RULE = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"


def mutual(left: torch.Tensor, right: torch.Tensor) -> None:
    """The pseudo-pair search (mutual CSLS nearest, k 3) exact and approximate: time and pairs."""
    exact_pairs, t_exact = timed(search.mutual_nearest, left, right, csls_k=3, precision="fp32")
    ann_pairs, t_ann = timed(search.mutual_nearest, left, right, csls_k=3, ann_from=1)
    a, b = set(zip(*(t.tolist() for t in exact_pairs))), set(zip(*(t.tolist() for t in ann_pairs)))
    print(f"\n| mutual CSLS pairs (k 3), {len(left):,} per side | exact s | ANN s | agreement |\n|---|---:|---:|---|")
    print(f"| | {t_exact:.1f} | {t_ann:.1f} | {len(a & b):,} shared of {len(a):,} exact, {len(b):,} ANN |", flush=True)


def real(path: Path, n_queries: int, csls: bool) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    left, right = tensors["kg1"].float(), tensors["kg2"].float()
    sample = left[torch.randperm(len(left), generator=torch.Generator().manual_seed(0))[:n_queries]]
    print(f"{HEADER}\n{RULE}")
    print(compare(sample, right, None, len(left)), flush=True)
    if not csls:
        return
    print("\n| search | exact s | ANN s | agreement |\n|---|---:|---:|---:|")
    (_, csls_exact), t_exact = timed(search.topk, left, right, 10, csls_k=3)
    (_, csls_found), t_ann = timed(search.topk, left, right, 10, csls_k=3, ann_from=1)
    print(f"| CSLS top-10 (k 3) | {t_exact:.1f} | {t_ann:.1f} | recall@1 {float((csls_found[:, 0] == csls_exact[:, 0]).float().mean()):.4f}, "
          f"recall@10 {recall(csls_found, csls_exact):.4f} |", flush=True)
    mutual(left, right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="candidates per run")
    parser.add_argument("--dim", type=int, default=1200, help="the default model's output width (2 members × 600)")
    parser.add_argument("--queries", type=int, default=10_000, help="queries scored exactly and approximately")
    parser.add_argument("--mutual", type=int, nargs="*", default=[], help="also time the pseudo-pair search at these sizes per side")
    parser.add_argument("--embeddings", type=Path, help="a run's embeddings.safetensors instead of synthetic rows")
    parser.add_argument("--csls", action="store_true", help="with --embeddings: also CSLS top-10 and mutual pairs over all rows")
    args = parser.parse_args()
    print(machine_line("fp32", torch.get_num_threads()))
    print(f"clusters: the power of two nearest {ann.CLUSTERS_PER_ROOT}·√N; width: the leading directions holding "
          f"{ann.ENERGY:.0%} of the energy; probed: the fewest of {ann.PROBES} reaching recall@10 "
          f"{TARGET_RECALL} on {SAMPLE} sampled queries; work: the share of exact search's products\n")
    if args.embeddings:
        real(args.embeddings, args.queries, args.csls)
    else:
        synthetic_tables(args)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def synthetic_tables(args: argparse.Namespace) -> None:
    print(f"{HEADER} exact validation s |\n{RULE}---:|")
    for n in args.sizes:
        candidates, queries, source = synthetic(n, args.dim, min(n, args.queries))
        print(compare(queries, candidates, source, n), flush=True)
        del candidates, queries
    for n in args.mutual:
        candidates, queries, _ = synthetic(n, args.dim, n)
        mutual(queries, candidates)
        del candidates, queries


if __name__ == "__main__":
    main()
