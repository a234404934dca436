"""Seconds per phase of one late training epoch on DBP15K zh_en (structure only), per configuration.

A late epoch is the expensive one: the seeds plus sampled pseudo pairs (12,300 pseudo pairs
are planted, as many as a real run holds by then). Each configuration runs in its own
process (``--child``), so every one starts from a fresh heap and thread pool; the
phases are timed by wrapping the trainer's calls, and the step's phases are medians over
``--steps`` steps after a warm-up step. The pseudo-pair search and the validation run once
on the embeddings of a trained model when ``--embeddings`` names a run's
``members/0/embeddings.safetensors`` (the search's cost depends on how clustered they are),
else on the untrained model's.

    python benchmarks/epoch_phases.py [--data ../shared/data] [--steps 3] [--before] [--embeddings FILE]
    python benchmarks/epoch_phases.py --work WORK --seeds SEEDS --test TEST [--config defaults]

``--work`` times another ingested workspace (a synthetic pair of ``benchmarks/synthetic.py``,
say) with its own seed and test files instead of zh_en; ``--config NAME`` picks configurations.
The pseudo-pair search is the trainer's own (the unpaired entities, with the run's
``pseudo_ann_from``; part by part for ``4 parts``, whose planted pairs lie within parts). The
child's peak RSS is read after each of ``MEMORY``'s points, so the table shows which phase set
the peak.

``--before`` adds the configuration this project defaulted to until 2026-12-04: bfloat16
products (emulated, and so slow, on CPUs without native bfloat16) and 14,000 pairs per
epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from children import run_child  # noqa: E402  (benchmarks/children.py: a child's wall s and peak RSS)
from train_dbp15k import random_split, threads  # noqa: E402  (the benchmark's own split)

CONFIGS = {
    # name: (settings, environment)
    "before": ({"precision": "bf16", "max_pairs": 14000}, {}),
    "fp32, 14,000 pairs": ({"precision": "fp32", "max_pairs": 14000}, {}),
    "defaults": ({}, {}),
    # The pseudo-pair search exact, or narrowed where it reaches its recall (mmalign/search/
    # narrow.py), whatever the size (the defaults choose by pseudo_ann_from).
    "exact search": ({"pseudo_ann_from": 0}, {}),
    "narrowed search": ({"pseudo_ann_from": 1}, {}),
    # Partitioned training (mmalign/training/partitions.py): steps and the search part by part.
    "4 parts": ({"partitions": 4}, {}),
}
PHASES = ("forward", "loss", "backward", "optimizer", "step", "embeddings", "search", "validation")
MEMORY = ("inputs", "model", "steps", "embeddings", "search", "validation")
"""Points after which the child reads its peak RSS so far: which phase set the peak."""


def child(work: Path, seeds: Path, test: Path, settings: dict, steps: int, embeddings: Path | None) -> dict[str, float]:
    """Runs in the child: build a trainer as ``mmalign train`` does, time its phases."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from mmalign.cli._app import configure_compute

    configure_compute()
    from mmalign.hardware import choose_precision
    from mmalign.model.loginmea import LoginMEA
    from mmalign.report import SILENT
    from mmalign.training import TrainConfig
    from mmalign.training.inputs import build_inputs
    from mmalign.training.loop import Trainer
    from mmalign.training.partitions import build_partition, sides_by_part
    from mmalign.training.splits import make_splits
    from mmalign.workspace import Workspace

    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    peak_mb: dict[str, float] = {}

    def peak(point: str) -> None:
        peak_mb[point] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed(phase: str, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            times[phase].append(time.perf_counter() - start)
            return out
        return wrapper

    workspace = Workspace.open(work)
    config = TrainConfig.build({"names": "none", "members": 1, **settings}).resolved()
    splits = make_splits(workspace, seeds, valid=None, valid_fraction=config.selection.valid_fraction,
                         valid_max=config.selection.valid_max, test=test,
                         seed=config.seed, skip_unknown=False, reporter=SILENT)
    cpu = torch.device("cpu")
    precision = choose_precision(config.compute.precision.value, cpu)
    inputs = build_inputs(workspace, config.features, config.seed, cpu, SILENT)
    partition = None
    if config.schedule.partitions > 1:
        partition = build_partition(inputs, splits.train, splits.valid, config.schedule.partitions, config.seed, SILENT)
    peak("inputs")
    model = LoginMEA(config.model, [f.dim for f in inputs.features], inputs.n_entities, inputs.n_relations, inputs.direct, precision.dtype)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(model, inputs, splits, config, Path(folder), precision, cpu, SILENT, partition)
        peak("model")
        rng = np.random.default_rng(0)
        left = np.setdiff1d(np.arange(inputs.n1), splits.train[:, 0])
        right = np.setdiff1d(np.arange(inputs.n1, inputs.n_entities), splits.train[:, 1])
        planted = min(12300, len(left), len(right))
        # Partitioned, pairs are planted within parts (a pair across parts is never trained).
        groups = sides_by_part(None if partition is None else partition.part_of, left, right)
        share = [min(len(l), len(r), round(planted * len(l) / len(left))) for l, r in groups]
        trainer.pseudo.pairs = np.concatenate([np.stack([rng.permutation(l)[:k], rng.permutation(r)[:k]], 1)
                                               for (l, r), k in zip(groups, share)])
        model.forward_blocks = timed("forward", model.forward_blocks)
        trainer.optimizer.step = timed("optimizer", trainer.optimizer.step)
        loss_fn, backward = trainer.loss_fn, torch.Tensor.backward
        trainer.loss_fn = timed("loss", loss_fn)

        def tensor_backward(self, *args, **kwargs):
            start = time.perf_counter()
            out = backward(self, *args, **kwargs)
            times["loss" if self.dim() == 0 else "backward"].append(time.perf_counter() - start)
            return out

        torch.Tensor.backward = tensor_backward
        trainer.step()  # warm-up
        for phase in times:
            times[phase].clear()
        per_step: dict[str, list[float]] = {phase: [] for phase in ("forward", "loss", "backward", "optimizer", "step")}
        for _ in range(steps):
            start = time.perf_counter()
            trainer.step()
            per_step["step"].append(time.perf_counter() - start)
            for phase in ("forward", "loss", "backward", "optimizer"):
                per_step[phase].append(sum(times[phase]))
                times[phase].clear()
        torch.Tensor.backward = backward
        peak("steps")
        start = time.perf_counter()
        current = trainer.embeddings()
        times["embeddings"].append(time.perf_counter() - start)
        peak("embeddings")
        if embeddings is not None:
            saved = load_file(str(embeddings))
            current = torch.cat([saved["kg1"], saved["kg2"]])
        start = time.perf_counter()
        # As training searches: the unpaired entities, part by part when partitioned.
        trainer.pseudo.update(current, config.pseudo.start + config.pseudo.check_every, splits.train, inputs.n1, inputs.n_entities,
                              splits.test, None if partition is None else partition.part_of)
        times["search"].append(time.perf_counter() - start)
        peak("search")
        start = time.perf_counter()
        trainer.validate(current)
        times["validation"].append(time.perf_counter() - start)
        peak("validation")
    out = {phase: statistics.median(values) for phase, values in per_step.items()}
    out.update({phase: times[phase][0] for phase in ("embeddings", "search", "validation")})
    out["pairs"] = len(trainer._epoch_pairs())
    out["precision"] = precision.chosen
    out["entities"] = inputs.n_entities
    out["peak_mb"] = peak_mb
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="also time the bf16 configuration of before 2026-12-04")
    parser.add_argument("--embeddings", type=Path, help="a trained run's members/0/embeddings.safetensors for the search")
    parser.add_argument("--work", type=Path, help="an ingested workspace to time instead of zh_en (with --seeds, --test)")
    parser.add_argument("--seeds", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--config", action="append", choices=list(CONFIGS), help="a configuration to time (repeatable; default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = child(Path(spec["work"]), Path(spec["seeds"]), Path(spec["test"]), spec["settings"], spec["steps"],
                       Path(spec["embeddings"]) if spec["embeddings"] else None)
        print(json.dumps(result))
        return
    from mmalign.machine import machine_line

    names = args.config or [name for name in CONFIGS if args.before or name != "before"]
    if args.work and not (args.seeds and args.test):
        parser.error("--work needs --seeds and --test")
    rows, peaks = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.work:
            work, seeds, test = args.work, args.seeds, args.test
        else:
            work = Path(tmp) / "work"
            run_child([sys.executable, "-m", "mmalign", "ingest", str(args.data / "dbp15k" / "zh_en"), "-w", str(work), "-q"])
            seeds, test = random_split(work / "links.tsv", 0.3, 12345, Path(tmp))
        for name in names:
            settings, extra_env = CONFIGS[name]
            steps = 1 if name == "before" else args.steps  # an emulated-bf16 step takes about a minute here
            spec = {"work": str(work), "seeds": str(seeds), "test": str(test), "settings": settings, "steps": steps,
                    "embeddings": str(args.embeddings) if args.embeddings else None}
            print(f"timing {name} ...", file=sys.stderr, flush=True)
            measured = run_child([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, env=extra_env)
            rows[name] = json.loads(measured.stdout.strip().splitlines()[-1])
            peaks[name] = measured.peak_mb
    print(machine_line(", ".join(f"{name}: {row['precision']}" for name, row in rows.items()), threads()))
    print(f"| phase (seconds) | {' | '.join(names)} |")
    print(f"| --- | {' | '.join('---:' for _ in names)} |")
    for phase in PHASES:
        note = " (per step)" if phase in ("forward", "loss", "backward", "optimizer", "step") else ""
        print(f"| {phase}{note} | {' | '.join(f'{rows[name][phase]:.2f}' for name in names)} |")
    pairs = " | ".join(f"{rows[name]['pairs']:,}" for name in names)
    print(f"| pairs in the epoch's loss | {pairs} |")
    for point in MEMORY:
        cells = " | ".join(f"{rows[name]['peak_mb'][point]:,.0f}" for name in names)
        print(f"| peak RSS after {point} (MB) | {cells} |")
    print(f"| peak RSS (MB) | {' | '.join(f'{peaks[name]:,.0f}' for name in names)} |")
    print(f"\n{rows[names[0]]['entities']:,} entities in all ({args.work or 'DBP15K zh_en'})")


if __name__ == "__main__":
    main()
