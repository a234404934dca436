"""What each validation reading says while one model trains, beside the output's test H@1.

Validation can rank by CSLS or by Sinkhorn (``selection.reading``); the run's output (test
pairs, ``predict``) is ranked by Sinkhorn. Whether a stopping rule stops where the output stops
gaining can be read off these curves. One member trains a fixed budget (it never stops early)
and at every validation this prints:

- the validation pairs ranked by CSLS against every KG2 entity outside the training seeds;
- the validation pairs ranked by Sinkhorn over every non-seed entity of both sides (lists of
  ``ranking.sinkhorn_lists``, the run's Sinkhorn settings, CSLS after the lists), and the
  seconds that ranking took on its own (the training shares its lists with the pseudo-pair
  search);
- the test pairs' H@1 by the run's own test ranking (a diagnostic: nothing here selects).

    python benchmarks/validation_curve.py --work WORK --seeds SEEDS --test TEST [--epochs 130] [--seed 2023] \
        [--set NAME=VALUE ...]

``WORK`` is an ingested workspace (``benchmarks/train_dbp15k.py --keep DIR`` leaves them),
trained at the defaults with ``--names none``. Tables: docs/benchmarks.md, "Trials
dropped on the AMD EPYC (2026-12-06)".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmalign.cli._app import configure_compute  # noqa: E402  (the checkout's, not an installed copy)
from mmalign.cli.train import _set_pairs  # noqa: E402  (what mmalign train --set parses)
from mmalign.machine import machine_line  # noqa: E402
from mmalign.training import loop, runs  # noqa: E402
from mmalign.training.config import TrainConfig  # noqa: E402
from mmalign.training.selection import Reading  # noqa: E402
from mmalign.training.splits import test_pair_metrics, validation_metrics  # noqa: E402
from mmalign.training.unpaired import read_validation  # noqa: E402


def sinkhorn_validation(trainer: loop.Trainer, embeddings: torch.Tensor) -> tuple[float, float]:
    """Validation H@1 by the Sinkhorn reading (:func:`~mmalign.training.unpaired.read_validation`,
    with a pass of its own over the unpaired entities), and its seconds."""
    config = trainer.config
    started = time.perf_counter()
    metrics = read_validation(Reading.SINKHORN, embeddings, trainer.splits, trainer.inputs.n1, config.ranking,
                              config.selection.csls, trainer.precision.dtype)
    return float(metrics["hits@1"]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=130)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting on top of the defaults, as mmalign train --set")
    args = parser.parse_args()
    configure_compute()
    extra = _set_pairs(args.set)
    config = TrainConfig.build({"names": "none", "members": 1, "epochs": args.epochs,
                                "min_epochs": args.epochs, "seed": args.seed, **extra})
    rows: list[tuple[int, float, float, float, float]] = []
    readings: set[str] = set()
    validate = loop.Trainer.validate

    def validate_and_read(trainer: loop.Trainer, embeddings: torch.Tensor, lists=None):
        csls_k = trainer.config.selection.csls
        csls = validation_metrics(embeddings, trainer.splits, trainer.inputs.n1, csls_k)["hits@1"]
        sinkhorn, seconds = sinkhorn_validation(trainer, embeddings)
        test = test_pair_metrics(embeddings, trainer.splits.test, csls_k, trainer.config.ranking)
        rows.append((trainer.epoch + 1, float(csls), sinkhorn, float(test["hits@1"]), seconds))
        readings.add(trainer.reading.value)
        return validate(trainer, embeddings, lists)

    loop.Trainer.validate = validate_and_read  # type: ignore[method-assign]
    runs.train(args.work, args.seeds, config, test=args.test)
    print(machine_line(config.compute.precision.value))
    print(f"the stopping rule's validation reading: {', '.join(sorted(readings))}")
    print("| epoch | validation H@1, CSLS | validation H@1, Sinkhorn | test H@1 | Sinkhorn validation s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for epoch, csls, sinkhorn, test, seconds in rows:
        print(f"| {epoch} | {csls:.4f} | {sinkhorn:.4f} | {test:.4f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
