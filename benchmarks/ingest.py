"""Time `mmalign ingest` on the real benchmarks and report seconds and peak RSS.

Each ingest runs in its own subprocess (``python -m mmalign ingest ... -q``) into a fresh
temporary workspace, so import time is included, as a user would see it. The peak RSS is the
child's own ``ru_maxrss`` from ``os.wait4`` (the per-child form of
``getrusage(RUSAGE_CHILDREN)``, which would mix the runs). A second run on the same
workspace times the "up to date" check.

    python benchmarks/ingest.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not
DATASETS = {
    "db15k-fb15k237": ["db15k-fb15k237/kg1-dbpedia", "db15k-fb15k237/kg2-freebase"],
    "dbp15k/zh_en": ["dbp15k/zh_en"],
}
GOAL = "goal for db15k-fb15k237: <= 60 s and <= 2048 MB peak RSS on a 2-core machine"


def run(command: list[str], stdout: Any = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process.

    Fails loudly if the child fails. CPU seconds show the work done even when other
    processes share the machine and stretch the wall time. ``stdout``: where the child's
    standard output goes (``subprocess.DEVNULL`` keeps it out of a table); default ours.

    Linux carries a parent's RSS high-water mark across fork and exec into the child's
    ``ru_maxrss``, so callers import torch (``mmalign.machine``) only after their children ran.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=stdout)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {shlex.join(command)}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss is in KiB on Linux


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
            seconds, peak, _ = run(command)
            again, _, _ = run(command)
        rows.append((name, seconds, peak, again))
    from mmalign.machine import machine_line  # after the children: see run()

    print(machine_line("n/a (no dense products)"))
    print(f"| dataset | ingest s | peak RSS MB | re-run (up to date) s |\n| --- | ---: | ---: | ---: |")
    for name, seconds, peak, again in rows:
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {again:.1f} |")
    print(f"\n{GOAL}")


if __name__ == "__main__":
    main()
