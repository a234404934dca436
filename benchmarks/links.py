"""``mmalign link`` on trained runs: F1 over every non-seed KG1 entity, accept precision, calibration.

For each ``NAME=WORKDIR`` (a workspace with a trained run and its gold in ``links.tsv``), runs
``python -m mmalign link --all -q -o FILE`` in a child process (time, peak RSS), then scores
the file by the consolidated protocol (:mod:`mmalign.links.metrics`):

- gold = the workspace's ``links.tsv`` minus the run's seeds (train and valid pairs), so the
  non-seed KG1 entities without a gold link count as "no match" and a link for one is wrong;
- ECE (10 bins) over every decided row, and over the rows of the run's test-pair KG1 entities;
- the estimated share of non-seed entities without a counterpart, against the true share.

The run's ``links/calibration.json`` is written (or read back when it matches).

    python benchmarks/links.py zh_en=/tmp/final/zh_en/work db15k=/tmp/final/db15k/work [--run NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmalign.links.linker import calibration_file  # noqa: E402  (the checkout's, not an installed copy)
from mmalign.links.linkfile import read_links  # noqa: E402
from mmalign.links.metrics import link_metrics  # noqa: E402
from mmalign.machine import machine_line  # noqa: E402
from mmalign.pairs import read_pairs, read_run_pairs  # noqa: E402
from mmalign.run import pairs_file, resolve_run  # noqa: E402
from mmalign.workspace import Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_link(work: Path, run: str | None, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``mmalign link --all`` in its own process."""
    command = [sys.executable, "-m", "mmalign", "link", "-w", str(work), "--all", "-q", "-o", str(out)]
    if run:
        command += ["--run", run]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def measure(name: str, work: Path, run: str | None, scratch: Path) -> tuple[str, list[str]]:
    """The summary row of one dataset and its calibration table's rows."""
    out = scratch / f"{name}.tsv"
    seconds, rss = run_link(work, run, out)
    workspace = Workspace.open(work)
    folder = resolve_run(work, Path(run) if run else None)
    seeds = np.concatenate([p for p in (read_run_pairs(pairs_file(folder, s), workspace) for s in ("train", "valid"))
                            if p is not None])
    test = read_run_pairs(pairs_file(folder, "test"), workspace)
    gold = read_pairs(work / "links.tsv", workspace)
    gold = gold[~np.isin(gold[:, 0], seeds[:, 0])]
    rows = read_links(out, workspace)
    scored = link_metrics(rows, gold)
    on_test = link_metrics(rows, gold, entities=test[:, 0]) if test is not None else None
    bands = {group["band"]: group for group in scored["bands"]}
    calibration = json.loads(calibration_file(folder).read_text())
    non_seed = len(rows.kg1)
    unmatched = 1 - len(np.unique(gold[:, 0])) / non_seed
    accept, both = bands["accept"], bands["accept+review"]
    row = (
        f"| {name} | {non_seed:,} | {unmatched:.3f} | {calibration['population']['estimated_unmatched']:.3f} "
        f"| {calibration['accept']:.3f} | {accept['links']:,} | {fmt(accept['precision'])} | {fmt(accept['recall'])} "
        f"| {fmt(accept['f1'])} | {fmt(both['precision'])} | {fmt(both['recall'])} | {fmt(both['f1'])} "
        f"| {fmt(scored['ece'])} | {fmt(on_test['ece'] if on_test else None)} | {seconds:.1f} | {rss / 1000:.2f} |"
    )
    bins = [
        f"| {name} | [{b['low']:.1f}, {b['high']:.1f}{']' if b['high'] == 1 else ')'} | {b['count']:,} "
        f"| {fmt(b['confidence'])} | {fmt(b['precision'])} |"
        for b in scored["calibration"] if b["count"]
    ]
    return row, bins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="NAME=WORKDIR")
    parser.add_argument("--run", default=None, help="run folder or name under runs/ (default: runs/latest)")
    args = parser.parse_args()
    print(machine_line())
    rows, bins = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.datasets:
            name, _, work = spec.partition("=")
            row, calibration = measure(name, Path(work), args.run, Path(scratch))
            rows.append(row)
            bins += calibration
    print("| dataset | non-seed KG1 | true unmatched | est. unmatched | accept ≥ | accepted | accept P | accept R | accept F1 "
          "| acc+rev P | acc+rev R | acc+rev F1 | ECE all | ECE test | s | peak GB |")
    print("| --- |" + " ---: |" * 15)
    print("\n".join(rows))
    print()
    print("| dataset | confidence | links | mean confidence | precision |")
    print("| --- | --- | ---: | ---: | ---: |")
    print("\n".join(bins))


if __name__ == "__main__":
    main()
