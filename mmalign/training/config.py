"""The one training configuration: every setting of a run, its default, and its check.

``TrainConfig`` nests the sections that live beside their code: ``model``
(:mod:`mmalign.model.config`), ``features`` (:mod:`mmalign.features.config`), ``pseudo``
(:mod:`mmalign.training.pseudo`), ``selection`` (:mod:`mmalign.training.selection`),
``ranking`` (:mod:`mmalign.evaluation`), ``bootstrap`` (:mod:`mmalign.training.bootstrap`), and the
two kept here, ``schedule`` and ``compute``. It is built, and checked, from code, a JSON file
(``--config``), ``--set key=value`` and flags; a run's ``config.json`` reloads into the same
object (:meth:`TrainConfig.load`), including run folders written before this configuration
existed, as they trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mmalign.errors import MMAlignError
from mmalign.evaluation import RankingConfig
from mmalign.features.config import FeatureConfig, RelationValues
from mmalign.hardware import Precision
from mmalign.model.config import JointLayer0, ModelConfig
from mmalign.model.loss import Loss
from mmalign.settings import Choice, Section, at_least, leaf_paths, merge, nest
from mmalign.training.bootstrap import BootstrapConfig
from mmalign.training.pseudo import PseudoConfig
from mmalign.training.selection import SelectionConfig


class Variant(Choice):
    """Where the paper and the authors' code differ (loginmea-spec §2): ``code`` or ``paper``."""

    CODE = "code"
    PAPER = "paper"


VARIANTS = {
    # Filled in where the configuration leaves them unset (None).
    Variant.CODE: {"structure_branch": True, "joint_layer0": JointLayer0.EARLY_CONCAT, "relation_values": RelationValues.COUNT},
    Variant.PAPER: {"structure_branch": False, "joint_layer0": JointLayer0.FUSED, "relation_values": RelationValues.BINARY},
}


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """What an epoch trains on, and how long."""

    epochs: int = 500  # the budget; early stopping (selection) usually ends sooner
    lr: float = 5e-3  # the paper's; the code's 5e-4 needs its 1000 epochs
    weight_decay: float = 0.01
    loss: Loss = Loss.NHS
    tau: float = 0.1  # InfoNCE's temperature (nhs sets its own per anchor)
    batch_size: int = 3500  # pairs per loss chunk: each pair's in-batch negatives
    chunks_per_step: int = 0  # loss chunks per optimiser step; 0: one step per epoch over all of them
    # Pairs in an epoch's loss: every seed (a fresh sample of this many when there are more),
    # then a fresh sample of the pseudo pairs up to this many in all, but never fewer pseudo
    # pairs than seeds (so iterative training goes on when the seeds alone fill the cap); 0: all.
    # 7,000 against 14,000: about the same test H@1 on zh_en for one model at two loss chunks a
    # late epoch instead of four (docs/benchmarks.md, "On the AMD EPYC, AVX2 only (2026-12-04)").
    max_pairs: int = 7000
    # Pseudo pairs in an epoch's loss: at most this many per seed pair (0: all). A ratio, not a
    # count, so it scales with the seeds.
    pseudo_per_seed: float = 0.0
    dropout: float = 0.0  # on the embeddings entering the loss (RREA's output dropout)
    # Parts of the graph (METIS, seed pairs kept together) whose subgraphs the steps run on in
    # turn, and within which pseudo pairs are searched (:mod:`mmalign.training.partitions`);
    # 1: the whole graph. Bounds a step's memory and the search's time on large graphs.
    partitions: int = 1

    def check(self) -> None:
        at_least("epochs", self.epochs, 1)
        at_least("batch_size", self.batch_size, 1)
        at_least("partitions", self.partitions, 1)
        for key in ("chunks_per_step", "max_pairs", "pseudo_per_seed", "lr", "weight_decay", "dropout"):
            at_least(key, getattr(self, key), 0)
        if self.dropout >= 1:
            raise MMAlignError(f"--dropout must be below 1, got {self.dropout}")


@dataclass(frozen=True)
class ComputeConfig(Section):
    """Where and how precisely the run computes; neither changes what it means."""

    device: str = "cpu"  # cpu or cuda:N (``--gpu N``)
    precision: Precision = Precision.AUTO
    # Top-k searches (predict, link) whose both sides hold at least this many entities try
    # approximate nearest neighbours (:mod:`mmalign.search.ann`: clusters probed in the leading
    # directions until recall@10 >= 0.98 on a sample, used only where that is cheaper than
    # exact search); smaller ones stay exact; 0: always exact. DBP15K (20k per side) stays
    # exact (docs/benchmarks.md).
    ann_from: int = 75000
    # The pseudo-pair search's own threshold (unpaired entities on both sides), from which it
    # runs narrowed (:mod:`mmalign.search.narrow`, where that reaches its sampled recall): faster
    # than exact at 77,500 a side, no faster at DBP15K size (docs/benchmarks.md, "A narrowed
    # pseudo-pair search").
    # 0: always exact.
    pseudo_ann_from: int = 75000

    def check(self) -> None:
        at_least("ann_from", self.ann_from, 0)
        at_least("pseudo_ann_from", self.pseudo_ann_from, 0)
        if self.device != "cpu" and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise MMAlignError(f"unknown device {self.device!r} (cpu or cuda:N)")


@dataclass(frozen=True)
class TrainConfig(Section):
    """Every setting of a training run (the Splink-style one object that describes the model)."""

    seed: int = 2023
    # Independently seeded models whose embeddings are concatenated (an ensemble); one model is
    # an ensemble of one. Two members: higher DBP15K test H@1 than one model on zh_en and ja_en,
    # at twice the training time (docs/benchmarks.md, "The benchmark over time" and "Ensemble of
    # two models (2026-11-25)").
    members: int = 2
    # Each member after the first starts with the previous member's final pseudo pairs: fewer
    # epochs, but the members then agree and their concatenation gains nothing over the last
    # one (lower test H@1 than a pair of independent members on zh_en, ja_en and DB15K;
    # docs/benchmarks.md, "Warm-started members (2026-12-04)"), so it stays off.
    warm_start: bool = False
    variant: Variant = Variant.CODE
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def check(self) -> None:
        at_least("members", self.members, 1)

    @classmethod
    def build(cls, settings: Mapping[str, Any] | None = None, where: str = "") -> "TrainConfig":
        """From ``{name or dotted path: value}`` (``dim`` or ``model.dim``), the rest defaults."""
        return cls.from_dict(nest(settings or {}, SETTING_PATHS, where))

    def override(self, settings: Mapping[str, Any], where: str = "") -> "TrainConfig":
        """This configuration with ``settings`` (names or dotted paths) on top, checked again."""
        return TrainConfig.from_dict(merge(self.to_dict(), nest(settings, SETTING_PATHS, where)))

    def resolved(self) -> "TrainConfig":
        """Unset variant-dependent settings filled in from ``variant``."""
        preset = VARIANTS[self.variant]
        model = dataclasses.replace(self.model, **{k: preset[k] for k in ("structure_branch", "joint_layer0") if getattr(self.model, k) is None})
        features = self.features
        if features.relation_values is None:
            features = dataclasses.replace(features, relation_values=preset["relation_values"])
        return dataclasses.replace(self, model=model, features=features)

    @classmethod
    def load(cls, saved: Mapping[str, Any]) -> "TrainConfig":
        """The configuration a run's ``config.json`` holds, as that run trained.

        Runs written before this configuration existed keep a flat ``options`` dict with
        older names; settings added since then take the value that run had, where that
        differs from today's default (:data:`BEFORE_SETTING`, then :func:`_as_it_trained` for
        those added since the nested configuration, which both kinds of file lack).
        """
        if "config" in saved:
            return cls.from_dict(_as_it_trained(saved["config"]))
        old = dict(saved["options"])
        flat = {**BEFORE_SETTING, **{LEGACY_NAMES.get(k, k): v for k, v in old.items()}}
        flat.setdefault("direct_dim", old.get("dim", ModelConfig.direct_dim))  # was tied to dim
        return cls.from_dict(_as_it_trained(nest(flat, SETTING_PATHS, " in an older run's config.json")))


def _as_it_trained(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration (nested) with the settings added since filled in as that run trained.

    ``from_dict`` fills a missing setting with today's default; these changed what a run
    does, so a run saved before them (nested or flat) resumes without them: members trained
    on every bootstrapped pair, the pseudo-pair search went approximate from ``ann_from``,
    test pairs were ranked by CSLS (so ``mmalign evaluate`` repeats the run's numbers),
    runs with bootstrapped validation pairs trained ``min_epochs``, pseudo pairs joined at
    each window's end only, and validation ranked by CSLS, selecting the best of all epochs.
    """
    data = {key: dict(value) if isinstance(value, Mapping) else value for key, value in saved.items()}
    data.setdefault("bootstrap", {}).setdefault("cross_fit", False)
    data.setdefault("ranking", {}).setdefault("method", "csls")
    data.setdefault("pseudo", {}).setdefault("slide", False)
    selection = data.setdefault("selection", {})
    selection.setdefault("bootstrapped_epochs", selection.get("min_epochs", SelectionConfig.bootstrapped_epochs))
    selection.setdefault("reading", "csls")
    selection.setdefault("select_from_min_epochs", False)
    compute = data.setdefault("compute", {})
    compute.setdefault("pseudo_ann_from", compute.get("ann_from", ComputeConfig.ann_from))
    return data


SETTING_PATHS = leaf_paths(TrainConfig)
"""Every setting's dotted path by its own name: ``{"dim": "model.dim", ...}``."""

LEGACY_NAMES = {"il_start": "start", "il_check": "check_every", "il_window": "window", "pseudo_pool": "pool",
                "pseudo_refresh": "refresh", "pseudo_score": "score"}
"""Setting names of run folders written before the nested configuration, where they differ."""

BEFORE_SETTING = {"refresh": False, "relation_direction": "merged", "members": 1, "precision": "bf16",
                  "warm_start": False, "max_pairs": 0, "min_delta": 0.0, "slide": False}
"""What runs saved before a setting existed did, where that differs from today's default."""


def settings_file(path: Path) -> dict[str, Any]:
    """The settings a ``--config`` JSON file holds, as ``{dotted path: value}``.

    The file may be nested like ``config.json``'s ``config`` (a run's whole ``config.json``
    works too), or flat ``{"dim": 64, "schedule.lr": 0.01}``; older flat option names are
    understood.
    """
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MMAlignError(f"cannot read config: {error}", path=path) from None
    if not isinstance(data, dict):
        raise MMAlignError("a config file holds a JSON object of settings", path=path)
    if "config" in data or "options" in data:
        data = TrainConfig.load(data).to_dict()
    flat = _flatten(data)
    try:
        nest(flat, SETTING_PATHS)
    except MMAlignError as error:
        raise MMAlignError(str(error), path=path) from None
    return flat


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = LEGACY_NAMES.get(key, key) if not prefix else key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def load_run_config(run_dir: Path) -> TrainConfig:
    """The configuration of the run in ``run_dir`` (its ``config.json``)."""
    from mmalign.run import read_json

    return TrainConfig.load(read_json(Path(run_dir) / "config.json"))
