"""Time `mmalign ingest` on the real benchmarks and report seconds and peak RSS.

Each ingest runs in its own subprocess (``python -m mmalign ingest ... -q``) into a fresh
temporary workspace, so import time is included, as a user would see it. The peak RSS is the
child's own ``ru_maxrss`` (see benchmarks/children.py). A second run on the same workspace
times the "up to date" check.

    python benchmarks/ingest.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from children import run_child

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not
DATASETS = {
    "db15k-fb15k237": ["db15k-fb15k237/kg1-dbpedia", "db15k-fb15k237/kg2-freebase"],
    "dbp15k/zh_en": ["dbp15k/zh_en"],
}
GOAL = "goal for db15k-fb15k237: <= 60 s and <= 2048 MB peak RSS on a 2-core machine"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    args = parser.parse_args()
    rows = []
    for name, parts in DATASETS.items():
        paths = [args.data / part for part in parts]
        if not all(path.is_dir() for path in paths):
            print(f"skipping {name}: not found under {args.data}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix="mmalign-bench-") as tmp:
            command = [sys.executable, "-m", "mmalign", "ingest", *map(str, paths), "-w", f"{tmp}/work", "-q"]
            print(f"$ PYTHONPATH={ROOT} {shlex.join(command)}", file=sys.stderr)
            first, again = run_child(command), run_child(command)
        rows.append((name, first.seconds, first.peak_mb, again.seconds))
    from mmalign.machine import machine_line  # after the children: see benchmarks/children.py

    print(machine_line("n/a (no dense products)"))
    print("| dataset | ingest s | peak RSS MB | re-run (up to date) s |\n| --- | ---: | ---: | ---: |")
    for name, seconds, peak, again in rows:
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {again:.1f} |")
    print(f"\n{GOAL}")


if __name__ == "__main__":
    main()
