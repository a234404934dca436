"""Train with default settings on the real benchmarks; report accuracy, time and peak RSS.

DBP15K zh_en / ja_en: structure only (relations; names off), a random 30% seed / 70% test
split drawn here with a fixed seed (never by position: the gold file is in id order).
DB15K↔FB15k-237: the shipped seed20/test20 split, relations + attributes.
Each training runs as ``python -m mmalign train ... -q`` in its own process; peak RSS is that
child's ``ru_maxrss`` (os.wait4). Metrics come from the run's summary.json (candidates = the
test targets, CSLS k=3, model selected on the 10% validation split of the seeds).

``--train-seeds 2023,1,2`` trains each dataset once per ``--seed`` (which draws the validation
split and the initialisation; the seed/test split stays fixed) and adds a mean ± sample
standard deviation row, so a difference can be set against the spread between seeds.

    python benchmarks/train_dbp15k.py [--datasets zh_en,ja_en,db15k] [--data ../shared/data]
                                      [--train-seeds S1,S2,...] [--ranks N] [--keep DIR [--reuse]]
                                      [-- extra train args]

``--ranks N`` trains under ``torchrun`` with N processes on this machine (``python -m
torch.distributed.run --standalone --nproc_per_node N -m mmalign train ...``); peak RSS is then
the largest of one process (``ru_maxrss`` covers the launcher's waited-for children one at a
time), not their sum.

``--reuse`` skips the ingest of a dataset whose workspace is already under ``--keep`` (to re-train
with other options, or on a machine that has the workspaces but not the raw data: ``-- --gpu 0``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from children import run_child  # noqa: E402  (benchmarks/children.py: a child's wall s and peak RSS)
from mmalign.machine import machine_line  # noqa: E402  (the checkout's, not an installed copy)

ROOT = Path(__file__).resolve().parent.parent


def random_split(links: Path, share: float, seed: int, out: Path) -> tuple[Path, Path]:
    pairs = [line for line in links.read_text(encoding="utf-8").splitlines() if line]
    order = np.random.default_rng(seed).permutation(len(pairs))
    k = int(len(pairs) * share)
    seeds, test = out / "seeds.tsv", out / "test.tsv"
    seeds.write_text("".join(pairs[i] + "\n" for i in order[:k]), encoding="utf-8")
    test.write_text("".join(pairs[i] + "\n" for i in order[k:]), encoding="utf-8")
    return seeds, test


def epoch_cell(summary: dict, key: str) -> str:
    """A run's members' ``key`` epochs from its summary.json: "150", or "150 + 140" for two."""
    return " + ".join(str(member[key]) for member in summary["members"])


def threads(ranks: int = 1) -> int:
    """The thread count of each ``mmalign`` child: every core unless OMP_NUM_THREADS says otherwise
    (torchrun sets it to 1 for each of several processes)."""
    return int(os.environ.get("OMP_NUM_THREADS") or ((os.cpu_count() or 1) if ranks == 1 else 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="zh_en,ja_en,db15k")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--split-seed", type=int, default=12345)
    parser.add_argument("--train-seeds", default="", help="comma-separated `mmalign train --seed` values (default: train's own)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces and run folders under this folder (default: a temporary one)")
    parser.add_argument("--ranks", type=int, default=1, help="processes under torchrun (default 1: plain `python -m mmalign`)")
    parser.add_argument("--reuse", action="store_true", help="skip the ingest where --keep already holds the dataset's workspace")
    parser.add_argument("extra", nargs="*", help="extra `mmalign train` arguments (after --)")
    args = parser.parse_args()
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep")
    python = [sys.executable, "-m", "mmalign"]
    trainer = python if args.ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               "--nproc_per_node", str(args.ranks), "-m", "mmalign"]
    train_seeds = [int(seed) for seed in args.train_seeds.split(",") if seed]
    rows: list[str] = []  # table rows, one per training plus a mean ± sd row per dataset
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for name in args.datasets.split(","):
            work, folder = Path(tmp) / name / "work", Path(tmp) / name
            folder.mkdir(parents=True, exist_ok=True)
            ingested = args.reuse and (work / "manifest.json").exists()
            if name == "db15k":
                base = args.data / "db15k-fb15k237"
                if not ingested:
                    run_child(python + ["ingest", str(base / "kg1-dbpedia"), str(base / "kg2-freebase"), "-w", str(work), "-q"])
                seeds, test, setting = base / "splits" / "seed20.tsv", base / "splits" / "test20.tsv", "rel+attr, 20% seeds"
                extra = ["--names", "none"]  # names are on by default; this row is relations + attributes
            else:
                if not ingested:
                    run_child(python + ["ingest", str(args.data / "dbp15k" / name), "-w", str(work), "-q"])
                seeds, test = random_split(work / "links.tsv", 0.3, args.split_seed, folder)
                setting, extra = "structure only, 30% seeds", ["--names", "none"]
            runs = []
            for seed in train_seeds or [None]:
                command = trainer + ["train", "--seeds", str(seeds), "--test", str(test), "-w", str(work), "-q", *extra, *args.extra]
                command += [] if seed is None else ["--seed", str(seed)]
                print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
                measured = run_child(command)
                summary = json.loads((work / "runs" / "latest" / "summary.json").read_text())
                precision = f"{summary['precision']['requested']} -> {summary['precision']['chosen']}"
                test_metrics = summary["test"]
                runs.append((test_metrics["hits@1"], test_metrics["hits@10"], test_metrics["mrr"]))
                label = setting if seed is None else f"{setting}, seed {seed}"
                rows.append(f"| {name} | {label} | {runs[-1][0]:.3f} | {runs[-1][1]:.3f} | {runs[-1][2]:.3f} | {epoch_cell(summary, 'selected_epoch')} "
                            f"| {epoch_cell(summary, 'epochs_run')} | {summary['seconds_per_epoch']:.2f} | {measured.seconds:.0f} | {measured.peak_mb:.0f} |")
            if len(runs) > 1:
                mean, sd = np.mean(runs, axis=0), np.std(runs, axis=0, ddof=1)
                cells = " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(mean, sd))
                rows.append(f"| {name} | {setting}, mean ± sd of {len(runs)} seeds | {cells} | | | | | |")
    print(machine_line(precision, threads(args.ranks)) + (f" · {args.ranks} processes under torchrun (threads per process)" if args.ranks > 1 else ""))
    print("| dataset | setting | H@1 | H@10 | MRR | selected epoch | epochs run | s/epoch | total s | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nextra args: {shlex.join(args.extra) or '(none)'}")


if __name__ == "__main__":
    main()
