"""Which pairs Sinkhorn should keep: each query's best candidates, or each side's, against SEU's
dense matrix.

For each ``NAME=RUN`` (a run folder inside its workspace, ``WORK/runs/ID``) and each of two
protocols, the run's embeddings are ranked by dense Sinkhorn (every pair; the reference) and by
the sparse forms of :mod:`mmalign.search.sinkhorn` (``sides`` × ``lists``), at the run's
temperature and iterations:

- ``test``: the papers' protocol, the test pairs' sources against their targets (what a run's
  test metrics rank);
- ``predict``: every non-seed KG1 entity against every non-seed KG2 entity (what ``mmalign
  predict`` ranks), H@k over the test pairs.

Printed per row: H@1 and H@10 of the test pairs, the share of queries whose first candidate is
the dense matrix's, pairs listed (before merging the pairs both sides list), and seconds.
Exact search throughout (DBP15K-sized runs).

    python benchmarks/sinkhorn_lists.py zh_en=/tmp/x/zh_en/work/runs/latest [ja_en=...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmalign.machine import machine_line  # noqa: E402  (the checkout's, not an installed copy)
from mmalign.pairs import read_pairs  # noqa: E402
from mmalign.predict import open_run, ranking_setting  # noqa: E402
from mmalign.search import ListSides, sinkhorn_topk  # noqa: E402
from mmalign.training.splits import given_seeds  # noqa: E402

FORMS = ((ListSides.BOTH, 50), (ListSides.QUERIES, 50), (ListSides.QUERIES, 100), (ListSides.QUERIES, 200))


def dense_top(queries: torch.Tensor, candidates: torch.Tensor, temperature: float, iterations: int) -> torch.Tensor:
    """Each query's 10 best candidates under SEU's dense Sinkhorn (rows, then columns)."""
    scores = queries @ candidates.T / temperature
    for _ in range(iterations):
        scores -= torch.logsumexp(scores, 1, keepdim=True)
        scores -= torch.logsumexp(scores, 0, keepdim=True)
    return scores.topk(10, dim=1).indices


def rows_of(rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of the ``wanted`` entity rows within the sorted, distinct ``rows``."""
    return np.searchsorted(rows, wanted)


def protocol_rows(name: str, folder: Path, workspace, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, candidate rows) of the protocol: the test pairs' own, or every non-seed entity."""
    if name == "test":
        return np.unique(test[:, 0]), np.unique(test[:, 1])
    seeds = given_seeds(folder, workspace)
    return (np.setdiff1d(np.arange(len(workspace.kg1.entities)), seeds[:, 0]),
            np.setdiff1d(np.arange(len(workspace.kg2.entities)), seeds[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
    args = parser.parse_args()
    print(machine_line("fp32"), file=sys.stderr)
    print("| run | protocol | pairs kept | pairs listed | H@1 | H@10 | rank-1 as dense | seconds |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for spec in args.runs:
        label, run = spec.split("=", 1)
        run = Path(run).resolve()
        folder, workspace, left, right, config = open_run(run.parent.parent, run)
        ranking = ranking_setting(config, None)  # the config open_run read, as predict ranks
        test = read_pairs(folder / "pairs" / "test.tsv", workspace)
        for protocol in ("test", "predict"):
            q_rows, c_rows = protocol_rows(protocol, folder, workspace, test)
            queries = torch.nn.functional.normalize(left[torch.from_numpy(q_rows)], dim=1)
            candidates = torch.nn.functional.normalize(right[torch.from_numpy(c_rows)], dim=1)
            source = torch.from_numpy(rows_of(q_rows, test[:, 0]))
            target = torch.from_numpy(rows_of(c_rows, test[:, 1]))
            start = time.perf_counter()
            reference = dense_top(queries, candidates, ranking.sinkhorn_temperature, ranking.sinkhorn_iterations)
            rows = [("dense", len(queries) * len(candidates), reference, time.perf_counter() - start)]
            for sides, lists in FORMS:
                start = time.perf_counter()
                top = sinkhorn_topk(queries, candidates, 10, lists=lists, sides=sides,
                                    temperature=ranking.sinkhorn_temperature, iterations=ranking.sinkhorn_iterations)[1]
                entries = len(queries) * lists + (len(candidates) * lists if sides is ListSides.BOTH else 0)
                rows.append((f"{sides.value}, lists of {lists}", entries, top, time.perf_counter() - start))
            for form, entries, top, seconds in rows:
                h1 = float((top[source, 0] == target).float().mean())
                h10 = float((top[source] == target[:, None]).any(1).float().mean())
                agree = float((top[:, 0] == reference[:, 0]).float().mean())
                print(f"| {label} | {protocol} | {form} | {entries:,} | {h1:.4f} | {h10:.4f} | {agree:.4f} | "
                      f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
