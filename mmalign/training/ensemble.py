"""A run's models: ``members`` seeded models trained one after another, embeddings concatenated.

One model is an ensemble of one, so every run has one folder layout and one summary schema.
Members share the inputs and the splits and differ in their seed (``seed``, ``seed + 1``,
...), so in their initialisation and sampling; each trains in ``members/<k>/`` with its own
checkpoints, metrics and selection on validation. Concatenating unit-length embeddings
averages the members' cosines.

With ``warm_start`` (off by default) a member after the first starts with the previous
member's final pseudo pairs instead of waiting for its own: a fresh model trained from its
first epoch on the seeds and thousands of mostly right pairs ends above the model that found
them, in fewer epochs, but it then makes the same mistakes, and the ensemble gains nothing
over it (docs/benchmarks.md, "Warm-started members (2026-12-04)").
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from mmalign.allocator import release_freed_memory
from mmalign.atomic import atomic_write_json
from mmalign.hardware import PrecisionChoice
from mmalign.model.loginmea import LoginMEA
from mmalign.report import Reporter
from mmalign.run import append_jsonl, atomic_save_tensors, load_embeddings, read_json
from mmalign.training import distributed
from mmalign.training.checkpoint import has_checkpoint, load_checkpoint, saved_pseudo_pairs
from mmalign.training.config import TrainConfig
from mmalign.training.inputs import Inputs
from mmalign.training.loop import BEST, METRICS, Trainer
from mmalign.training.partitions import Partition, build_partition
from mmalign.training.selection import Reading
from mmalign.training.splits import Splits, test_pair_metrics
from mmalign.training.unpaired import read_validation

SUMMARY, EMBEDDINGS = "summary.json", "embeddings.safetensors"
SUMMARY_FORMAT = 2
"""Version of ``summary.json``: 2 is one schema for every run (a list of members)."""


@dataclass
class MemberResult:
    """One trained model of a run, as its ``members/<k>/summary.json`` records it."""

    folder: Path
    seed: int
    selected_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, float] | None
    seconds: float
    seconds_per_epoch: float
    pseudo_pairs: int
    direct_weight: dict[str, float] | None
    reading: str = "csls"  # how its validation ranked (summaries written before the setting: CSLS)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "folder"}

    @classmethod
    def saved(cls, folder: Path) -> "MemberResult":
        return cls(folder=folder, **{k: v for k, v in read_json(folder / SUMMARY).items() if k in _MEMBER_FIELDS})


_MEMBER_FIELDS = {f.name for f in dataclasses.fields(MemberResult)} - {"folder"}


@dataclass
class TrainResult:
    """A finished run: the whole's metrics and every member's."""

    run_dir: Path
    members: list[MemberResult]
    valid: dict[str, float]
    test: dict[str, float] | None
    modalities: dict[str, Any] = field(default_factory=dict)
    output: str = "concatenation"  # the run's embeddings: the members' concatenation, or "members/<k>"

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self.members)

    @property
    def epochs_run(self) -> int:
        return sum(m.epochs_run for m in self.members)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs_run, 1)


def member_folder(run_dir: Path, k: int, legacy_single: bool) -> Path:
    """``members/<k>/``; a one-model run written before ensembles trained in the run folder itself."""
    return run_dir if legacy_single else run_dir / "members" / str(k)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_members(inputs: Inputs, splits: Splits, config: TrainConfig, run_dir: Path, precision: PrecisionChoice,
                  device: torch.device, reporter: Reporter, *, resuming: bool, legacy_single: bool = False) -> TrainResult:
    """Train (or finish training) every member, then combine them into the run's embeddings and summary."""
    members: list[MemberResult] = []
    main = distributed.is_main()  # under torchrun, rank 0 decides and writes; see mmalign.training.distributed
    partition = None
    if config.schedule.partitions > 1:  # the same parts for every member: they depend on the seeds alone
        partition = build_partition(inputs, splits.train, splits.valid, config.schedule.partitions, config.seed, reporter)
    for k in range(config.members):
        folder = member_folder(run_dir, k, legacy_single)
        label = folder.name if legacy_single else f"members/{k}"
        finished = main and resuming and (folder / SUMMARY).is_file() and not legacy_single
        if distributed.broadcast_object(finished):
            members.append(distributed.broadcast_object(MemberResult.saved(folder) if main else None))
            continue
        if main:
            folder.mkdir(parents=True, exist_ok=True)
        member = dataclasses.replace(config, seed=config.seed + k)
        if config.members > 1:
            reporter.info(f"{label}: model {k + 1} of {config.members} (seed {member.seed})")
        seed_everything(member.seed)
        model = LoginMEA(member.model, [f.dim for f in inputs.features], inputs.n_entities, inputs.n_relations,
                         inputs.direct, precision.dtype).to(device)
        own = member_splits(splits, config, k)
        if len(own.train) < len(splits.train):
            reporter.info(f"{label} trains on its share of the bootstrapped seed pairs: {len(own.train):,} of {len(splits.train):,} (cross_fit)")
        hand_over = config.warm_start and config.pseudo.iterative and k + 1 < config.members
        trainer = Trainer(model, inputs, own, member, folder, precision, device, reporter, partition, hand_over)
        if distributed.broadcast_object(resuming and main and has_checkpoint(folder)):
            load_checkpoint(trainer)  # every rank reads it: the run folder must be where every rank sees it
            reporter.info(f"resuming {label} at epoch {trainer.epoch}")
        else:
            if resuming:
                reporter.info(f"{label} has no checkpoint yet: starting it from epoch 0")
            if k and config.warm_start and config.pseudo.iterative:
                trainer.pseudo.pairs = distributed.broadcast_object(saved_pseudo_pairs(members[-1].folder) if main else None)
                reporter.info(f"{label} starts with the {len(trainer.pseudo.pairs):,} pseudo pairs members/{k - 1} ended with")
        distributed.broadcast_parameters(model)  # one model on every rank, whatever each built or read
        epochs_run, seconds = trainer.fit()
        members.append(distributed.broadcast_object(_finish_member(trainer, member.seed, epochs_run, seconds) if main else None))
        del trainer, model
        # The finished member's final evaluation left free pages in the heap; handed back before
        # the next member trains, so the two do not stack.
        release_freed_memory()
    return distributed.broadcast_object(_combine(inputs, splits, config, run_dir, members, precision, partition) if main else None)


def member_splits(splits: Splits, config: TrainConfig, k: int) -> Splits:
    """The splits member ``k`` trains on: all of them, or its share of bootstrapped seeds (``cross_fit``)."""
    if config.members > 1 and config.bootstrap.cross_fit and splits.names_validation:
        return splits.member_share(k, config.members, config.seed)
    return splits


def _finish_member(trainer: Trainer, seed: int, epochs_run: int, seconds: float) -> MemberResult:
    """Load the member's best validation weights; its embeddings, test metrics and summary."""
    folder = trainer.folder
    release_freed_memory()
    if (folder / BEST).is_file():
        trainer.model.load_state_dict(load_file(str(folder / BEST)))
    embeddings = trainer.output_embeddings()
    n1, csls = trainer.inputs.n1, trainer.config.selection.csls
    # The selected evaluation's own metrics: the same embeddings, ranked as selection ranked them.
    valid = trainer.selector.best_metrics or trainer.measure(embeddings)
    test = test_pair_metrics(embeddings, trainer.splits.test, csls, trainer.config.ranking) if trainer.splits.test is not None else None
    best_epoch = trainer.selector.best_epoch
    if test is not None:
        append_jsonl(folder / METRICS, {"epoch": best_epoch, "split": "test", **test})
    atomic_save_tensors(folder / EMBEDDINGS, {"kg1": embeddings[:n1], "kg2": embeddings[n1:]})
    weight = trainer.selector.output_weight
    result = MemberResult(
        folder=folder, seed=seed, selected_epoch=best_epoch, epochs_run=trainer.epoch, valid=valid, test=test,
        seconds=round(seconds, 2), seconds_per_epoch=round(seconds / max(epochs_run, 1), 4), pseudo_pairs=int(len(trainer.pseudo.pairs)),
        direct_weight=None if weight is None else {"trained": trainer.config.model.direct_weight, "selected": weight},
        reading=trainer.reading.value,
    )
    atomic_write_json(folder / SUMMARY, result.record())
    return result


def _combine(inputs: Inputs, splits: Splits, config: TrainConfig, run_dir: Path, members: list[MemberResult],
             precision: PrecisionChoice, partition: Partition | None = None) -> TrainResult:
    """The run's embeddings, metrics and summary: the members' concatenation, or the last member.

    The concatenation averages the members' cosines; it is kept unless the last member alone
    ranks the validation pairs better (H@1, then MRR). With ``warm_start`` the last member
    learnt from the others' pseudo pairs and their errors agree, so the concatenation may only
    dilute it. Validation pairs bootstrapped from names cannot judge that (see
    :class:`~mmalign.training.selection.Selector`): then the concatenation is kept. One
    member's embeddings are the run's as they are.
    """
    target, csls = run_dir / EMBEDDINGS, config.selection.csls
    last = members[-1]
    output = f"members/{len(members) - 1}"
    if len(members) == 1:
        valid, test = last.valid, last.test
    else:
        embeddings = _concatenation(members, inputs.n1)
        # Ranked as the members were selected, so the two compare.
        valid = read_validation(Reading(last.reading), embeddings, splits, inputs.n1, config.ranking, csls,
                                precision.dtype)
        if not splits.names_validation and [last.valid["hits@1"], last.valid["mrr"]] > [valid["hits@1"], valid["mrr"]]:
            valid, test = last.valid, last.test
        else:
            output = "concatenation"
            test = test_pair_metrics(embeddings, splits.test, csls, config.ranking) if splits.test is not None else None
            atomic_save_tensors(target, {"kg1": embeddings[: inputs.n1], "kg2": embeddings[inputs.n1 :]})
        del embeddings
    if output != "concatenation" and last.folder != run_dir:
        _link(last.folder / EMBEDDINGS, target)
    modalities, skipped = inputs.summary(config.features.modalities)
    result = TrainResult(run_dir, members, valid, test, modalities, output)
    atomic_write_json(run_dir / SUMMARY, {
        "format": SUMMARY_FORMAT,
        "members": [m.record() for m in members],
        "output": output,
        "valid": valid,
        "test": test,
        "modalities": modalities,
        "skipped_modalities": skipped,
        "precision": precision.as_dict(),
        "distributed": distributed.record(),
        "partition": partition.record() if partition is not None else None,
        "seeds": splits.origin,
        "seconds": round(result.seconds, 2),
        "seconds_per_epoch": round(result.seconds_per_epoch, 4),
    })
    return result


def _concatenation(members: list[MemberResult], n1: int) -> torch.Tensor:
    """The members' unit embeddings side by side, normalised again (global ids).

    Copied one member at a time into one N × ΣD matrix normalised in place: loading them all
    and concatenating held three copies at once.
    """
    embeddings = None
    for k, member in enumerate(members):
        kg1, kg2 = load_embeddings(member.folder)
        if embeddings is None:
            width = kg1.shape[1]
            embeddings = torch.empty(n1 + len(kg2), width * len(members))
        embeddings[:n1, k * width : (k + 1) * width] = kg1
        embeddings[n1:, k * width : (k + 1) * width] = kg2
        del kg1, kg2
    assert embeddings is not None
    return embeddings.div_(torch.linalg.vector_norm(embeddings, dim=1, keepdim=True).clamp_min_(1e-12))


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links are not possible)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        atomic_save_tensors(target, dict(zip(("kg1", "kg2"), load_embeddings(source.parent))))
