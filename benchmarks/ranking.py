"""Test pairs of trained runs ranked by CSLS and by Sinkhorn: H@1, H@10, MRR, MR and seconds.

For each ``NAME=RUN`` (a run folder inside its workspace, ``WORK/runs/ID``), runs
``python -m mmalign evaluate --run RUN --gold RUN/pairs/test.tsv --ranking M --json -q`` in a
child process for M = csls and sinkhorn (the run's other settings as it trained), and prints
one table. Training is untouched: both columns rank the same embeddings, so the difference is
the ranking's alone.

    python benchmarks/ranking.py zh_en=/tmp/final/zh_en/work/runs/latest ja_en=...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import run_child  # noqa: E402  (benchmarks/children.py: the benchmarks' one child runner)
from mmalign.machine import machine_line  # noqa: E402  (the checkout's, not an installed copy)

METHODS = ("csls", "sinkhorn")


def rank(run: Path, method: str) -> tuple[dict[str, float], float]:
    """The metrics of ``mmalign evaluate`` on the run's test pairs, and its wall seconds."""
    work = run.resolve().parent.parent
    command = [sys.executable, "-m", "mmalign", "evaluate", "-w", str(work), "--run", str(run.resolve()),
               "--gold", str(run / "pairs" / "test.tsv"), "--ranking", method, "--json", "-q"]
    measured = run_child(command, stdout=subprocess.PIPE)
    return json.loads(measured.stdout), measured.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
    args = parser.parse_args()
    print(machine_line(), file=sys.stderr)
    head = ["run", "test pairs"] + [f"{m} {k}" for m in METHODS for k in ("H@1", "H@10", "MRR", "MR", "s")]
    print("| " + " | ".join(head) + " |")
    print("| --- | " + " | ".join("---:" for _ in head[1:]) + " |")
    for item in args.runs:
        name, _, path = item.partition("=")
        cells: list[str] = []
        count = 0
        for method in METHODS:
            metrics, seconds = rank(Path(path), method)
            count = int(metrics["count"])
            cells += [f"{metrics['hits@1']:.4f}", f"{metrics['hits@10']:.4f}", f"{metrics['mrr']:.4f}",
                      f"{metrics['mr']:.2f}", f"{seconds:.1f}"]
        print(f"| {name} | {count:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
