"""Training without seed pairs: seeds bootstrapped from names, then the default training.

For each dataset: ``mmalign ingest``, ``mmalign features names`` when an encoder is sbert, then
``mmalign train`` with no ``--seeds`` and every gold pair as ``--test`` (the unsupervised
protocol: H@1 over all gold pairs, each KG1 entity ranked among the gold KG2 entities, as the
run's ``ranking.method`` ranks: Sinkhorn by default). Training never reads the gold: the
bootstrapped pairs come from names alone, and the model is selected on a part of them. Besides the run's metrics the table gives what the log
said of the bootstrap (pairs, margin, estimated precision) and their precision measured
against gold: over all bootstrapped pairs, and over those with an entity in a gold pair (DBP15K's
entities outside the 15,000 gold pairs often do have a counterpart the gold file does not
list, so a pair of two such entities is not known to be wrong).

    python benchmarks/bootstrap.py [--datasets zh_en,db15k] [--encoders zh_en=char+sbert,db15k=char]
                                   [--keep DIR] [-- extra train args]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import run_child  # noqa: E402  (benchmarks/children.py: a child's wall s and peak RSS)
from names import DATA, ENCODERS  # noqa: E402  (the encoder specs of the names benchmark)
from train_dbp15k import epoch_cell, machine_line, threads  # noqa: E402  (the same cells)

DEFAULT_ENCODERS = "zh_en=char+sbert,ja_en=char+sbert,db15k=char"


def key_pairs(path: Path) -> list[tuple[str, str]]:
    """``kg1<TAB>kg2`` lines of a pair file, a ``kg1_entity`` header skipped."""
    rows = [line.split("\t")[:2] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [(a, b) for a, b in rows if a != "kg1_entity"]


def gold_precision(run: Path, gold: Path) -> tuple[float, float, int]:
    """Precision of the run's bootstrapped pairs (train + valid) against gold: all, and with a gold entity."""
    truth = dict(key_pairs(gold))
    targets = set(truth.values())
    found = key_pairs(run / "pairs" / "train.tsv") + key_pairs(run / "pairs" / "valid.tsv")
    right = [truth.get(a) == b for a, b in found]
    known = [ok for (a, b), ok in zip(found, right) if a in truth or b in targets]
    return sum(right) / len(found), sum(known) / max(len(known), 1), len(known)


GROUPS = ("in a right bootstrapped training pair", "in a wrong bootstrapped training pair", "in a validation pair",
          "not bootstrapped")


def test_breakdown(work: Path, run: Path) -> dict[str, tuple[int, int]]:
    """Test pairs (all gold) and how many the run ranks first (as its ``ranking`` ranks), by
    what the bootstrap made of their KG1 entity.

    Shows where the errors are: a model memorises its training pairs, wrong ones included,
    while entities that names do not pair are left to the structure and pseudo-labelling.
    """
    import torch

    from mmalign.evaluation import gold_targets, rank_pairs
    from mmalign.run import load_embeddings
    from mmalign.training.config import load_run_config
    from mmalign.training.splits import read_split_files
    from mmalign.workspace import Workspace

    splits = read_split_files(run, Workspace.open(work))
    kg1, kg2 = load_embeddings(run)
    embeddings = torch.cat([kg1, kg2])
    config = load_run_config(run)
    right = rank_pairs(embeddings, embeddings, splits.test, gold_targets(splits.test), csls_k=config.selection.csls,
                       ranking=config.ranking).numpy() == 1
    trained = dict(splits.train.tolist())
    validation = set(splits.valid[:, 0].tolist())
    counts = {group: [0, 0] for group in GROUPS}
    for (kg1_id, kg2_id), ok in zip(splits.test.tolist(), right):
        if kg1_id in trained:
            group = GROUPS[0] if trained[kg1_id] == kg2_id else GROUPS[1]
        else:
            group = GROUPS[2] if kg1_id in validation else GROUPS[3]
        counts[group][0] += 1
        counts[group][1] += int(ok)
    return {group: (n, ok) for group, (n, ok) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="zh_en,db15k")
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS, help="dataset=encoder,... (encoders of benchmarks/names.py)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--keep", type=Path, default=None, help="keep workspaces here")
    parser.add_argument("extra", nargs="*", help="extra `mmalign train` arguments (after --)")
    args = parser.parse_args()
    encoders = dict(item.split("=", 1) for item in args.encoders.split(","))
    python = [sys.executable, "-m", "mmalign"]
    rows, breakdowns = [], {}
    precision = "auto"
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets.split(","):
            folder = Path(args.keep or scratch) / dataset
            work = folder / "work"
            folder.mkdir(parents=True, exist_ok=True)
            if dataset == "db15k":
                base = args.data / "db15k-fb15k237"
                run_child(python + ["ingest", str(base / "kg1-dbpedia"), str(base / "kg2-freebase"), "-w", str(work), "-q"])
                gold = base / "links.tsv"
            else:
                run_child(python + ["ingest", str(args.data / "dbp15k" / dataset), "-w", str(work), "-q"])
                gold = work / "links.tsv"
            spec = ENCODERS[encoders[dataset]]
            names = ["--names", "recorded+iri", "--name-encoder", spec]
            if "sbert" in spec:
                run_child(python + ["features", "names", "-w", str(work), *names, "-q"])
            command = python + ["train", "-w", str(work), "--test", str(gold), "-q", *names, *args.extra]
            print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
            trained = run_child(command)
            run = (work / "runs" / "latest").resolve()
            summary = json.loads((run / "summary.json").read_text())
            precision = f"{summary['precision']['requested']} -> {summary['precision']['chosen']}"
            seeds = summary["seeds"]
            measured, known, known_count = gold_precision(run, gold)
            breakdowns[dataset] = test_breakdown(work, run)
            rows.append((dataset, encoders[dataset], seeds, measured, known, known_count, summary, trained.seconds, trained.peak_mb))
            print(json.dumps({"dataset": dataset, "h@1": summary["test"]["hits@1"], "seeds": seeds}), file=sys.stderr, flush=True)
    print(machine_line(precision, threads()))
    print("| dataset | names | bootstrapped pairs | margin | estimated precision | gold precision (all / with a gold entity) "
          "| H@1 (all gold pairs) | H@10 | MRR | selected epoch | epochs run | s/epoch | total s | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for dataset, encoder, seeds, measured, known, known_count, summary, wall, rss in rows:
        test = summary["test"]
        print(f"| {dataset} | {encoder} | {seeds['pairs']:,} | {seeds['margin']:.3f} | {seeds['estimated_precision']:.3f} | "
              f"{measured:.3f} / {known:.3f} ({known_count:,}) | {test['hits@1']:.3f} | {test['hits@10']:.3f} | {test['mrr']:.3f} | "
              f"{epoch_cell(summary, 'selected_epoch')} | {epoch_cell(summary, 'epochs_run')} | {summary['seconds_per_epoch']:.2f} | "
              f"{wall:.0f} | {rss:.0f} |")
    print("\n| dataset | test pairs whose KG1 entity is | pairs | ranked first |")
    print("| --- | --- | ---: | ---: |")
    for dataset, groups in breakdowns.items():
        for group, (n, ok) in groups.items():
            print(f"| {dataset} | {group} | {n:,} | {ok:,} ({ok / max(n, 1):.3f}) |")
    print(f"\nextra train args: {shlex.join(args.extra) or '(none)'}")


if __name__ == "__main__":
    main()
