"""The cost curve at scale: synthetic KG pairs from 15k to 1M+ entities per side.

For each size (entities per side) and input format, ``benchmarks/synthetic.py`` writes a pair
(degree 5, 300 relation types, 25 % dangling entities per side, noisy names unless
``--no-names``) and each stage runs in its own child process, as a user would run it:

- **generate**: ``python benchmarks/synthetic.py``, wall seconds and peak RSS;
- **ingest**: ``python -m mmalign ingest kg1 kg2 -w WORK -q``: wall and CPU seconds, peak
  RSS (the child's ``ru_maxrss`` from ``os.wait4``), and the workspace's size on disk.

- **train**: ``python -m mmalign train --seeds seeds.tsv --test test.tsv -w WORK -q`` at the
  defaults (plus ``--train-args``, e.g. ``"--gpu 0"``): the whole command's wall seconds and
  peak RSS, seconds per epoch, the selected and run epochs per member, and the test H@1 (test
  pairs ranked among their targets, CSLS) from the run's summary.json; feature building
  (names, attributes) happens inside it;
- **predict**: ``python -m mmalign predict --top-k 10 -w WORK -q`` for every non-seed KG1
  entity (its TSV to a file): wall seconds, peak RSS, rows written.

Each stage is a function in ``STAGES`` that fills its own columns of the row; the table
prints the columns some stage filled, so nothing unmeasured appears. ``--stages`` picks
stages by name (later stages need the earlier ones' files). The generated data and workspace
of a row are deleted when its stages are done (``--keep DIR`` keeps them there instead).

    flock /tmp/mmalign-heavy.lock python benchmarks/scale.py [--sizes 15k,100k,300k,1M]
        [--formats tsv,nt] [--no-names] [--stages generate,ingest,train,predict]
        [--train-args "--gpu 0"] [--keep DIR]
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
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from children import Measured, run_child  # noqa: E402  (benchmarks/children.py: a child's wall s, peak RSS, CPU s)
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
    train_args: list[str] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)
    precision: str | None = None
    """What the training ran in (``auto -> fp32``), for the machine line."""

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def work(self) -> Path:
        return self.folder / "work"


def megabytes(path: Path) -> float:
    """Bytes of all files under ``path``, in MB (2^20)."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file()) / 2**20


def child(row: Row, command: list[str], stdout: Any = subprocess.DEVNULL) -> Measured:
    """Run one stage's command (logged to stderr; its stdout to ``stdout``); wall s, peak RSS MB, CPU s."""
    print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
    return run_child(command, stdout=stdout)


def generate(row: Row) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "synthetic.py"), str(row.data),
               "--entities", str(row.entities), "--format", row.format] + ["--names"] * row.names  # fmt: skip
    measured = child(row, command)
    counts = json.loads((row.data / "synthetic.json").read_text())["counts"]
    row.cells["relation triples (KG1 + KG2)"] = f"{counts['kg1']['relation_triples'] + counts['kg2']['relation_triples']:,}"
    row.cells["input MB"] = f"{megabytes(row.data / 'kg1') + megabytes(row.data / 'kg2'):,.0f}"
    row.cells["generate s"] = f"{measured.seconds:.1f}"
    row.cells["generate peak MB"] = f"{measured.peak_mb:,.0f}"


def ingest(row: Row) -> None:
    command = [sys.executable, "-m", "mmalign", "ingest", str(row.data / "kg1"), str(row.data / "kg2"), "-w", str(row.work), "-q"]
    measured = child(row, command)
    row.cells["ingest s"] = f"{measured.seconds:.1f}"
    row.cells["ingest CPU s"] = f"{measured.cpu_seconds:.1f}"
    row.cells["ingest peak MB"] = f"{measured.peak_mb:,.0f}"
    row.cells["workspace MB"] = f"{megabytes(row.work):,.0f}"
    if row.entities in GOALS:
        goal_s, goal_mb = GOALS[row.entities]
        met = "met" if measured.seconds <= goal_s and measured.peak_mb <= goal_mb else "MISSED"
        row.cells["ingest goal"] = f"≤ {goal_s:.0f} s, ≤ {goal_mb:,.0f} MB: {met}"


def train(row: Row) -> None:
    command = [sys.executable, "-m", "mmalign", "train", "--seeds", str(row.data / "seeds.tsv"), "--test", str(row.data / "test.tsv"),
               "-w", str(row.work), "-q", *row.train_args]  # fmt: skip
    measured = child(row, command)
    summary = json.loads((row.work / "runs" / "latest" / "summary.json").read_text())
    members = summary["members"]
    row.precision = f"{summary['precision']['requested']} -> {summary['precision']['chosen']}"
    row.cells["train s"] = f"{measured.seconds:,.0f}"
    row.cells["s/epoch"] = f"{summary['seconds_per_epoch']:.2f}"
    row.cells["selected / run epochs"] = " + ".join(f"{m['selected_epoch']}/{m['epochs_run']}" for m in members)
    row.cells["train peak MB"] = f"{measured.peak_mb:,.0f}"
    row.cells["test H@1"] = f"{summary['test']['hits@1']:.3f}"


def predict(row: Row) -> None:
    out = row.folder / "pairs.tsv"
    command = [sys.executable, "-m", "mmalign", "predict", "--top-k", "10", "-w", str(row.work), "-q"]
    with out.open("w", encoding="utf-8") as stdout:
        measured = child(row, command, stdout)
    row.cells["predict top-10 s"] = f"{measured.seconds:,.1f}"
    row.cells["predict peak MB"] = f"{measured.peak_mb:,.0f}"
    row.cells["predicted KG1 entities"] = f"{predicted_entities(out):,}"


def predicted_entities(path: Path) -> int:
    """Distinct KG1 entities in a predict TSV (header and ``#`` lines skipped)."""
    seen = set()
    with path.open(encoding="utf-8") as lines:
        next(lines, None)
        for line in lines:
            if not line.startswith("#"):
                seen.add(line.split("\t", 1)[0])
    return len(seen)


STAGES: dict[str, Callable[[Row], None]] = {"generate": generate, "ingest": ingest, "train": train, "predict": predict}
"""The stages, in the order they run for each row; each fills its own columns."""


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
    parser.add_argument("--stages", default=",".join(STAGES), help=f"stages to run, comma-separated ({', '.join(STAGES)})")
    parser.add_argument("--train-args", default="", help='extra `mmalign train` arguments, one string ("--gpu 0")')
    parser.add_argument("--keep", type=Path, help="keep each row's data and workspace under this folder")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if not set(formats) <= set(FORMATS):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    stages = args.stages.split(",")
    if not set(stages) <= set(STAGES):
        parser.error(f"--stages: choose from {', '.join(STAGES)}")
    stages = [name for name in STAGES if name in stages]
    sizes = [parse_count(size) for size in args.sizes.split(",")]
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="mmalign-scale-"))
    load = os.getloadavg()
    rows = []
    try:
        for entities in sizes:
            for format in formats:
                row = Row(entities, format, args.names, scratch / f"{entities}-{format}", shlex.split(args.train_args))
                if "generate" in stages:
                    shutil.rmtree(row.folder, ignore_errors=True)
                for name in stages:
                    STAGES[name](row)
                if args.keep is None:
                    shutil.rmtree(row.folder)
                rows.append(row)
                print("\n".join(table(rows[-1:])), file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    from train_dbp15k import machine_line, threads  # torch only now, or it would count in every child's peak (see children.py)

    precision = next((row.precision for row in rows if row.precision), None)
    print(machine_line(precision, threads()) if precision else machine_line(threads=threads()))
    if args.train_args:
        print(f"train args: {args.train_args}")
    print(f"\n1-min load average as the runs began: {load[0]:.2f} on {os.cpu_count()} CPUs\n")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
