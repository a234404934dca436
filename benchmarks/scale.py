"""The cost curve at scale: synthetic KG pairs from 15k to 1M+ entities per side.

For each size (entities per side) and input format, ``benchmarks/synthetic.py`` writes a pair
(degree 5, 300 relation types, 25 % dangling entities per side, noisy names unless
``--no-names``) and each stage runs in its own child process, as a user would run it:

- **generate**: ``python benchmarks/synthetic.py``, wall seconds and peak RSS;
- **ingest**: ``python -m mmalign ingest kg1 kg2 -w WORK -q``: wall and CPU seconds, peak
  RSS (the child's ``ru_maxrss`` from ``os.wait4``), and the workspace's size on disk.

Each stage is a function in ``STAGES`` that fills its own columns of the row; the table
prints the columns some stage filled, so nothing unmeasured appears. Feature building,
training (seconds per epoch, time to the selected model) and predict (top-10 for every
entity, H@1 on the test pairs) are the stages to come. The generated data and workspace of
a row are deleted when its stages are done (``--keep DIR`` keeps them there instead).

    flock /tmp/mmalign-heavy.lock python benchmarks/scale.py [--sizes 15k,100k,300k,1M]
        [--formats tsv,nt] [--no-names] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ingest import run  # noqa: E402  (benchmarks/ingest.py: the child runner, wall s, peak RSS, CPU s)
from synthetic import FORMATS, parse_count  # noqa: E402

GOALS = {10**6: (300.0, 16 * 1024.0)}
"""Entities per side -> ingest seconds and peak RSS (MB) the issue asks for on the 2-core machine."""


@dataclass
class Row:
    """One size and format: where its files go, and the cells its stages measured."""

    entities: int
    format: str
    names: bool
    folder: Path
    cells: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def work(self) -> Path:
        return self.folder / "work"


def megabytes(path: Path) -> float:
    """Bytes of all files under ``path``, in MB (2^20)."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file()) / 2**20


def child(row: Row, command: list[str]) -> tuple[float, float, float]:
    """Run one stage's command (logged to stderr); wall s, peak RSS MB, CPU s."""
    print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
    return run(command, stdout=subprocess.DEVNULL)


def generate(row: Row) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "synthetic.py"), str(row.data),
               "--entities", str(row.entities), "--format", row.format] + ["--names"] * row.names  # fmt: skip
    seconds, peak, _ = child(row, command)
    counts = json.loads((row.data / "synthetic.json").read_text())["counts"]
    row.cells["relation triples (KG1 + KG2)"] = f"{counts['kg1']['relation_triples'] + counts['kg2']['relation_triples']:,}"
    row.cells["input MB"] = f"{megabytes(row.data / 'kg1') + megabytes(row.data / 'kg2'):,.0f}"
    row.cells["generate s"] = f"{seconds:.1f}"
    row.cells["generate peak MB"] = f"{peak:,.0f}"


def ingest(row: Row) -> None:
    command = [sys.executable, "-m", "mmalign", "ingest", str(row.data / "kg1"), str(row.data / "kg2"), "-w", str(row.work), "-q"]
    seconds, peak, cpu = child(row, command)
    row.cells["ingest s"] = f"{seconds:.1f}"
    row.cells["ingest CPU s"] = f"{cpu:.1f}"
    row.cells["ingest peak MB"] = f"{peak:,.0f}"
    row.cells["workspace MB"] = f"{megabytes(row.work):,.0f}"
    if row.entities in GOALS:
        goal_s, goal_mb = GOALS[row.entities]
        met = "met" if seconds <= goal_s and peak <= goal_mb else "MISSED"
        row.cells["ingest goal"] = f"≤ {goal_s:.0f} s, ≤ {goal_mb:,.0f} MB: {met}"


STAGES: list[Callable[[Row], None]] = [generate, ingest]
"""The stages run for each row, in order; each fills its own columns."""


def table(rows: list[Row]) -> list[str]:
    """A markdown table of the columns any row has (a stage that did not run leaves none)."""
    columns = list(dict.fromkeys(column for row in rows for column in row.cells))
    lines = ["| entities per side | format | " + " | ".join(columns) + " |", "| ---: | --- |" + " ---: |" * len(columns)]
    for row in rows:
        cells = " | ".join(row.cells.get(column, "") for column in columns)
        lines.append(f"| {row.entities:,} | {row.format}{' + names' * row.names} | {cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="15k,100k,300k,1M", help="entities per side, comma-separated (15k, 1M, 2500000)")
    parser.add_argument("--formats", default="tsv,nt", help=f"input formats, comma-separated ({', '.join(FORMATS)})")
    parser.add_argument("--names", action=argparse.BooleanOptionalAction, default=True, help="noisy names (default on)")
    parser.add_argument("--keep", type=Path, help="keep each row's data and workspace under this folder")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if not set(formats) <= set(FORMATS):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    sizes = [parse_count(size) for size in args.sizes.split(",")]
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="mmalign-scale-"))
    load = os.getloadavg()
    rows = []
    try:
        for entities in sizes:
            for format in formats:
                row = Row(entities, format, args.names, scratch / f"{entities}-{format}")
                shutil.rmtree(row.folder, ignore_errors=True)
                for stage in STAGES:
                    stage(row)
                if args.keep is None:
                    shutil.rmtree(row.folder)
                rows.append(row)
                print("\n".join(table(rows[-1:])), file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    from train_dbp15k import machine_line, threads  # torch only now, or it would count in every child's peak (see run)

    print(machine_line(threads=threads()))
    print(f"\n1-min load average as the runs began: {load[0]:.2f} on {os.cpu_count()} CPUs\n")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
