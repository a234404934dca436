"""``mmalign link`` on trained runs: F1 over every non-seed KG1 entity, accept precision, calibration.

For each ``NAME=WORKDIR`` (a workspace with a trained run and its gold in ``links.tsv``), runs
``python -m mmalign link --all -q -o FILE`` in a child process (time, peak RSS), then scores
the file by the consolidated protocol (:mod:`mmalign.links.metrics`):

- gold = the workspace's ``links.tsv`` (without one, the run's test pairs) minus the run's
  seeds (train and valid pairs), so the non-seed KG1 entities without a gold link count as
  "no match" and a link for one is wrong;
- ECE (10 bins) over every decided row, and over the rows of the run's test-pair KG1 entities;
- the estimated share of non-seed entities without a counterpart, against the true share.

The run's ``links/calibration.json`` is written (or read back when it matches; ``--refit``
removes it first, so the time includes the fit).

``--names FILE`` (entity<TAB>name for both KGs, such as DBP15K's ``names_translated.tsv``)
adds a check of the gold itself: DBP15K's gold is a 15k subset, and an entity without a gold
link may still have its counterpart in the other KG. Among accepted links, it gives the share
whose two names agree exactly (lower case, letters and digits) for links the gold confirms
and for links of entities without a gold link (their ratio estimates how many of the latter,
all counted wrong, are right), with the KG1 entities' mean degree (triples).

    python benchmarks/links.py zh_en=/tmp/final/zh_en/work db15k=/tmp/final/db15k/work
                               [--run NAME] [--refit] [--names FILE] [--prior degree|flat]
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import Measured, run_child  # noqa: E402  (benchmarks/children.py: the benchmarks' one child runner)
from mmalign.links import LinkConfig  # noqa: E402  (the checkout's, not an installed copy)
from mmalign.links.linker import calibration_file  # noqa: E402
from mmalign.links.prior import Prior, degrees  # noqa: E402
from mmalign.links.linkfile import read_links  # noqa: E402
from mmalign.links.metrics import link_metrics  # noqa: E402
from mmalign.machine import machine_line  # noqa: E402
from mmalign.pairs import read_pairs, read_run_pairs  # noqa: E402
from mmalign.run import pairs_file, resolve_run  # noqa: E402
from mmalign.workspace import Workspace  # noqa: E402



def run_link(work: Path, run: str | None, out: Path, prior: str) -> Measured:
    """Wall seconds and peak RSS (MB) of ``mmalign link --all --prior PRIOR`` in its own process."""
    command = [sys.executable, "-m", "mmalign", "link", "-w", str(work), "--all", "-q", "--prior", prior, "-o", str(out)]
    if run:
        command += ["--run", run]
    return run_child(command)


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def fmt1(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def normalised(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", ascii_name).strip()


def name_agreement(rows_kg1: list[str], rows_kg2: list[str], names: dict[str, str]) -> float | None:
    """Share of the pairs whose names agree exactly after :func:`normalised` (None: no pairs)."""
    if not rows_kg1:
        return None
    same = [normalised(names.get(a, "")) == normalised(names.get(b, "")) != "" for a, b in zip(rows_kg1, rows_kg2)]
    return sum(same) / len(same)


def gold_check(name: str, rows, gold: np.ndarray, workspace: Workspace, names: dict[str, str]) -> str:
    """Name agreement of accepted links: confirmed by the gold, and of entities without a gold link."""
    gold_set, gold_kg1 = set(map(tuple, gold.tolist())), set(gold[:, 0].tolist())
    kg1, kg2 = workspace.kg1.entities, workspace.kg2.entities
    accepted = [(a, b) for a, b, band in zip(rows.kg1.tolist(), rows.kg2.tolist(), rows.band.tolist()) if band == 0 and b >= 0]
    right = [(kg1[a], kg2[b]) for a, b in accepted if (a, b) in gold_set]
    no_gold = [(kg1[a], kg2[b]) for a, b in accepted if a not in gold_kg1]
    degree = degrees(workspace.kg1.triples, len(kg1))
    index = workspace.kg1.entity_index()
    degree_right = float(np.mean([degree[index[a]] for a, _ in right])) if right else None
    degree_no_gold = float(np.mean([degree[index[a]] for a, _ in no_gold])) if no_gold else None
    agree_right = name_agreement([a for a, _ in right], [b for _, b in right], names)
    agree_no_gold = name_agreement([a for a, _ in no_gold], [b for _, b in no_gold], names)
    estimate = len(no_gold) * agree_no_gold / agree_right if agree_right and agree_no_gold is not None else None
    corrected = (len(right) + estimate) / len(accepted) if estimate is not None and accepted else None
    return (f"| {name} | {len(right):,} | {fmt(agree_right)} | {fmt1(degree_right)} | {len(no_gold):,} "
            f"| {fmt(agree_no_gold)} | {fmt1(degree_no_gold)} "
            f"| {'–' if estimate is None else f'{estimate:,.0f}'} | {fmt(corrected)} |")


def measure(name: str, work: Path, run: str | None, scratch: Path, refit: bool, names: dict[str, str] | None,
            prior: str) -> tuple[str, list[str], str | None]:
    """The summary row of one dataset, its calibration table's rows and its gold check row."""
    out = scratch / f"{name}.tsv"
    folder = resolve_run(work, Path(run) if run else None)
    if refit:
        calibration_file(folder).unlink(missing_ok=True)
    linked = run_link(work, run, out, prior)
    workspace = Workspace.open(work)
    seeds = np.concatenate([p for p in (read_run_pairs(pairs_file(folder, s), workspace) for s in ("train", "valid"))
                            if p is not None])
    test = read_run_pairs(pairs_file(folder, "test"), workspace)
    # The full gold: links.tsv (benchmark folders that ship one), else the run's test pairs.
    gold = read_pairs(work / "links.tsv", workspace) if (work / "links.tsv").is_file() else test
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
        f"| {fmt(on_test['bands'][0]['precision'] if on_test else None)} | {fmt(scored['ece'])} "
        f"| {fmt(on_test['ece'] if on_test else None)} | {linked.seconds:.1f} | {linked.peak_mb / 1000:.2f} |"
    )
    bins = [
        f"| {name} | [{b['low']:.1f}, {b['high']:.1f}{']' if b['high'] == 1 else ')'} | {b['count']:,} "
        f"| {fmt(b['confidence'])} | {fmt(b['precision'])} |"
        for b in scored["calibration"] if b["count"]
    ]
    return row, bins, gold_check(name, rows, gold, workspace, names) if names else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="NAME=WORKDIR")
    parser.add_argument("--run", default=None, help="run folder or name under runs/ (default: runs/latest)")
    parser.add_argument("--refit", action="store_true", help="remove links/calibration.json first")
    parser.add_argument("--names", type=Path, default=None, help="entity<TAB>name file for the gold check")
    parser.add_argument("--prior", choices=[p.value for p in Prior], default=LinkConfig().prior.value,
                        help="link's --prior (default: link's)")
    args = parser.parse_args()
    names = None
    if args.names:
        names = dict(line.split("\t", 1) for line in args.names.read_text(encoding="utf-8").splitlines() if "\t" in line)
    print(f"{machine_line()} · link --prior {args.prior}")
    rows, bins, checks = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.datasets:
            name, _, work = spec.partition("=")
            row, calibration, check = measure(name, Path(work), args.run, Path(scratch), args.refit, names, args.prior)
            rows.append(row)
            bins += calibration
            checks += [check] if check else []
    print("| dataset | non-seed KG1 | true unmatched | est. unmatched | accept ≥ | accepted | accept P | accept R | accept F1 "
          "| acc+rev P | acc+rev R | acc+rev F1 | accept P test | ECE all | ECE test | s | peak GB |")
    print("| --- |" + " ---: |" * 16)
    print("\n".join(rows))
    print()
    print("| dataset | confidence | links | mean confidence | precision |")
    print("| --- | --- | ---: | ---: | ---: |")
    print("\n".join(bins))
    if checks:
        print()
        print("| dataset | accepted, gold-confirmed | names agree | KG1 degree | accepted, no gold link | names agree "
              "| KG1 degree | of these right (est.) | accept P with them |")
        print("| --- |" + " ---: |" * 8)
        print("\n".join(checks))


if __name__ == "__main__":
    main()
