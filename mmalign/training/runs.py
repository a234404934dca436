"""Starting a training run, and resuming an interrupted one, in ``WORKDIR/runs/<timestamp>``.

Everything a user can get wrong (pair files, settings, the device) is checked before the
run folder exists; the folder then holds ``config.json`` (the configuration the run computes
with, the precision chosen and why, data hashes, versions) and ``pairs/``, and the members
train in ``members/<k>/`` (:mod:`mmalign.training.ensemble`). Under ``torchrun`` rank 0 alone
creates and writes the folder (:mod:`mmalign.training.distributed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import mmalign
from mmalign.atomic import atomic_write_json
from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.hardware import PrecisionChoice, choose_precision
from mmalign.report import SILENT, Reporter
from mmalign.run import new_run, read_json
from mmalign.training import distributed
from mmalign.training.bootstrap import bootstrap_seeds
from mmalign.training.config import TrainConfig
from mmalign.training.ensemble import TrainResult, train_members
from mmalign.training.inputs import build_inputs
from mmalign.training.pseudo import PseudoPool
from mmalign.training.splits import Splits, make_splits, read_split_files, write_split_files
from mmalign.workspace import Workspace

CONFIG = "config.json"
CONFIG_FORMAT = 2
"""Version of ``config.json``: 2 holds the nested configuration under ``config``."""


def run_device(config: TrainConfig) -> torch.device:
    """The run's device, checked now (a missing GPU is a user error before anything is written)."""
    device = config.compute.device
    if device == "cpu":
        return resolve_device(None)
    # Under torchrun the node's processes take consecutive GPUs from the one asked for.
    return resolve_device(distributed.gpu_for_rank(int(device.split(":")[1])))


def train(workdir: Path, seeds: Path | None, config: TrainConfig, *, valid: Path | None = None, test: Path | None = None,
          skip_unknown: bool = False, reporter: Reporter = SILENT) -> TrainResult:
    """Train a new run in ``workdir/runs/<timestamp>`` and return its metrics.

    ``seeds`` None bootstraps the seed pairs from names (:mod:`mmalign.training.bootstrap`);
    with ``bootstrap.seeds_extend`` the bootstrapped pairs extend the seed file's.
    """
    workspace = Workspace.open(workdir)
    config = config.resolved()
    bootstrap = None
    if seeds is None or config.bootstrap.seeds_extend:
        bootstrap = bootstrap_seeds(workspace, config.features, config.bootstrap, config.selection.csls, reporter)
    splits = make_splits(workspace, seeds, valid=valid, valid_fraction=config.selection.valid_fraction,
                         valid_max=config.selection.valid_max, test=test,
                         seed=config.seed, skip_unknown=skip_unknown, reporter=reporter, bootstrap=bootstrap)
    if config.pseudo.pool is PseudoPool.TEST and splits.test is None:
        raise MMAlignError("--pseudo-pool test needs --test")
    device = run_device(config)
    with distributed.session(device):
        # Under torchrun every rank computed the splits and the precision (a timing probe with
        # auto) alike, but rank 0's are the run's; rank 0 alone creates and fills the run folder.
        splits, precision = distributed.broadcast_object((splits, choose_precision(config.compute.precision.value, device)))
        reporter.info(f"precision: {precision.chosen} ({precision.why})")
        # The configuration saved is the one the run computes with, so a resume elsewhere repeats it.
        config = config.override({"precision": precision.chosen})
        run_dir = distributed.broadcast_object(new_run(Path(workdir)) if distributed.is_main() else None)
        reporter.info(f"run folder: {run_dir}")
        if distributed.is_main():
            atomic_write_json(run_dir / CONFIG, _config_record(workspace, config, precision, seeds, valid, test, splits.origin))
            write_split_files(run_dir, workspace, splits)
        return _train(workspace, splits, config, run_dir, precision, device, reporter, resuming=False)


def resume(workdir: Path, run_dir: Path, *, reporter: Reporter = SILENT) -> TrainResult:
    """Continue an interrupted run from its members' last checkpoints (same settings, same data)."""
    saved = read_json(run_dir / CONFIG)
    workspace = Workspace.open(workdir)
    if saved.get("data") != workspace.manifest.get("sources"):
        raise MMAlignError("the workspace's data changed since this run started; start a new run instead of resuming", path=run_dir)
    config = TrainConfig.load(saved).resolved()
    device = run_device(config)
    legacy_single = "config" not in saved and config.members == 1
    with distributed.session(device):
        precision = PrecisionChoice(**saved["precision"]) if "precision" in saved else choose_precision(config.compute.precision.value, device)
        precision = distributed.broadcast_object(precision)
        return _train(workspace, read_split_files(run_dir, workspace, saved.get("seeds_origin")), config, run_dir, precision, device, reporter,
                      resuming=True, legacy_single=legacy_single)


def _train(workspace: Workspace, splits: Splits, config: TrainConfig, run_dir: Path, precision: PrecisionChoice,
           device: torch.device, reporter: Reporter, *, resuming: bool, legacy_single: bool = False) -> TrainResult:
    inputs = build_inputs(workspace, config.features, config.seed, device, reporter)
    return train_members(inputs, splits, config, run_dir, precision, device, reporter, resuming=resuming, legacy_single=legacy_single)


def _config_record(workspace: Workspace, config: TrainConfig, precision: PrecisionChoice, seeds: Path | None,
                   valid: Path | None, test: Path | None, origin: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": CONFIG_FORMAT,
        "config": config.to_dict(),
        "precision": precision.as_dict(),
        "seeds": str(Path(seeds).resolve()) if seeds else "auto",
        "seeds_origin": origin,
        "valid": str(Path(valid).resolve()) if valid else None,
        "test": str(Path(test).resolve()) if test else None,
        "workspace": str(workspace.path.resolve()),
        "data": workspace.manifest.get("sources"),
        "versions": {"mmalign": mmalign.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "threads": torch.get_num_threads(),
        "distributed": distributed.record(),
    }
