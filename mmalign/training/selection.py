"""Model selection on the validation pairs, and early stopping; never on test.

Every ``eval_every`` epochs the validation H@1 (MRR breaks ties) is measured, ranking each
validation entity against every KG2 entity outside the training seeds: a candidate set as
hard as the real task (a few hundred validation targets alone saturate long before test
accuracy does). It ranks by Sinkhorn, as the output does, where the pseudo-pair search's pass
gives the lists (:mod:`mmalign.training.unpaired`), by CSLS otherwise (``reading``). The best
epoch from ``min_epochs`` on is kept; training stops when validation has not gained for
``patience`` evaluations after ``min_epochs``, or, when the validation pairs were
bootstrapped from names, after ``bootstrapped_epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from mmalign.errors import MMAlignError
from mmalign.evaluation import Metrics
from mmalign.settings import Choice, Section, at_least

DIRECT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Output weights of the direct (names) block tried at each validation; see :meth:`Selector.validate`."""


class Reading(Choice):
    """How validation ranks (``selection.reading``)."""

    # Sinkhorn where one exact pass over the unpaired entities serves the pseudo-pair search
    # too: one part, fewer unpaired entities a side than compute.pseudo_ann_from, no direct
    # (names) block, whose eight trial weights would each need a pass of their own. CSLS elsewhere.
    AUTO = "auto"
    # Sinkhorn over both sides' lists among the unpaired entities, as the output ranks. On
    # DBP15K and DB15K its H@1 stops gaining when the test pairs' does; CSLS's keeps creeping
    # for tens of epochs more (docs/benchmarks.md, "When training stops").
    SINKHORN = "sinkhorn"
    CSLS = "csls"  # each validation pair against every unpaired KG2 entity: cheap at any size

    @classmethod
    def label(cls, key: str) -> str:
        return "validation reading"


@dataclass(frozen=True)
class SelectionConfig(Section):
    """How the model is selected and when training stops."""

    valid_fraction: float = 0.1  # of the seeds held out for selection when no --valid file is given
    # At most this many of them: a validation ranks each pair against every KG2 entity, so
    # its cost grows with pairs × entities, while 5,000 pairs measure H@1 within ±0.007 (one
    # standard error) however big the graphs (docs/benchmarks.md, partitioned training).
    valid_max: int = 5000
    eval_every: int = 10
    reading: Reading = Reading.AUTO
    # Stop after ``patience`` evaluations without a gain of ``min_delta`` in validation H@1 over
    # the H@1 of the last gain (the selected model is still the best one, however small its
    # lead), but never before ``min_epochs``; a gain of 0.01 is 4.5 of DBP15K's 450 pairs.
    patience: int = 2
    min_delta: float = 0.01
    # Iterative training needs time: pseudo pairs are renewed at 30, 40, 50, ... and a model
    # gains from them well past the epoch its validation H@1 (a few hundred pairs) looks flat.
    min_epochs: int = 80
    # The selected model is the best from ``min_epochs`` on (the best before, where a run ends
    # sooner): on DBP15K the Sinkhorn reading peaks by epoch 50 while test H@1 still gains to
    # 80 (docs/benchmarks.md, "When training stops"). Off: the best of all epochs.
    select_from_min_epochs: bool = True
    # Epochs of a run whose validation pairs were bootstrapped from names (no seed file): their
    # H@1 peaks within a few epochs while the model still gains on the pairs names miss, so
    # validation cannot say when to stop; such a run trains this long (within ``epochs``),
    # past the plateau of its test H@1 over all gold pairs (docs/benchmarks.md).
    bootstrapped_epochs: int = 150
    csls: int = 3  # CSLS neighbourhood of validation, test and the pseudo-pair search

    def check(self) -> None:
        if not 0 < self.valid_fraction < 1:
            raise MMAlignError(f"--valid-fraction must be between 0 and 1, got {self.valid_fraction}")
        at_least("valid_max", self.valid_max, 1)
        at_least("eval_every", self.eval_every, 1)
        at_least("patience", self.patience, 1)
        at_least("min_delta", self.min_delta, 0)
        at_least("min_epochs", self.min_epochs, 0)
        at_least("bootstrapped_epochs", self.bootstrapped_epochs, 1)
        at_least("csls", self.csls, 0)



@dataclass
class Selector:
    """The best validation score so far, its epoch and direct weight, and the count of evaluations since."""

    config: SelectionConfig
    # The validation pairs were bootstrapped from names (no seed file): a sample chosen for
    # agreeing names, which the name block alone recovers. Their H@1 peaks within a few epochs
    # and then drifts down while the structure learns the pairs names miss, and favours the
    # heaviest name weight: it cannot judge the model. Then the trained direct weight is kept
    # and the latest evaluation is selected (training ends at min_epochs, as validation stops
    # gaining). On zh_en and DB15K the last epoch tested better over all gold pairs than the
    # best validation epochs, the first few (docs/benchmarks.md, "Training without seed pairs").
    names_validation: bool = False
    best_score: list[float] = field(default_factory=lambda: [-1.0, -1.0])
    best_epoch: int = -1
    bad_evals: int = 0
    mark: float = -1.0  # validation H@1 at the last gain of min_delta
    output_weight: float | None = None  # direct-block weight selected with the best model
    best_metrics: Metrics | None = None  # the selected evaluation's metrics

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Whether validation runs after ``epoch`` (1-based); the budget's last epoch always does."""
        return epoch % self.config.eval_every == 0 or epoch == last_epoch

    def validate(self, embeddings: torch.Tensor, measure: Callable[[torch.Tensor], Metrics],
                 reweight: Callable[[torch.Tensor, float], torch.Tensor] | None) -> tuple[Metrics, float | None]:
        """Validation metrics at the best output weight of the direct (names) block, and that weight.

        How much the names should count against the trained model differs by dataset (how good
        and how translated the names are), and the weight that trains well need not rank best:
        on zh_en, W = 0.5 at evaluation beat the trained W = 1 on validation and on test alike.
        Trying a few weights on validation costs a few small rankings and no forward pass;
        ``reweight`` None (no direct block) measures the embeddings as they are.
        """
        if reweight is None or self.names_validation:
            return measure(embeddings), None
        best: tuple[list[float], Metrics, float] | None = None
        for weight in DIRECT_WEIGHTS:
            metrics = measure(reweight(embeddings, weight))
            key = [metrics["hits@1"], metrics["mrr"]]
            if best is None or key > best[0]:
                best = (key, metrics, weight)
        assert best is not None
        return best[1], best[2]

    def observe(self, epoch: int, metrics: Metrics, weight: float | None) -> bool:
        """Record an evaluation; True when it is the one selected now (the best so far, H@1 first,
        MRR breaking ties, where with ``select_from_min_epochs`` any evaluation from ``min_epochs``
        on beats any before it; with ``names_validation`` always: the latest).

        Patience restarts on a gain of ``min_delta`` over the H@1 of its last restart (any
        better score when 0): on a few hundred validation pairs, gains of one pair every few
        evaluations are mostly noise, yet kept a run going for a hundred epochs.
        """
        score = [metrics["hits@1"], metrics["mrr"]]
        delta = self.config.min_delta
        gained = score > self.best_score if delta == 0 else metrics["hits@1"] >= self.mark + delta
        self.bad_evals = 0 if gained else self.bad_evals + 1
        if gained:
            self.mark = metrics["hits@1"]
        if self.names_validation:
            self.best_score = max(self.best_score, score)  # still the best seen, as patience reads it
            self.best_epoch, self.output_weight, self.best_metrics = epoch, weight, dict(metrics)
            return True
        floor = self.config.min_epochs if self.config.select_from_min_epochs else 0
        if (epoch >= floor, score) > (self.best_epoch >= floor, self.best_score):
            self.best_score, self.best_epoch, self.output_weight = score, epoch, weight
            self.best_metrics = dict(metrics)
            return True
        return False

    def stop_reason(self, epoch: int) -> str | None:
        """Why training stops after validating at ``epoch``, or None when it goes on."""
        c = self.config
        if self.names_validation:
            return f"{c.bootstrapped_epochs} epochs, the length of a run with bootstrapped validation pairs" if epoch >= c.bootstrapped_epochs else None
        if self.bad_evals >= c.patience and epoch >= c.min_epochs:
            gain = "was not better (H@1, then MRR)" if c.min_delta == 0 else f"gained less than {c.min_delta}"
            return f"validation H@1 {gain} for {c.patience} evaluations"
        return None

    def state(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "bad_evals": self.bad_evals,
                "output_weight": self.output_weight, "mark": self.mark, "best_metrics": self.best_metrics}

    def load_state(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch, self.bad_evals = state["best_score"], state["best_epoch"], state["bad_evals"]
        self.output_weight = state.get("output_weight")
        self.mark = state.get("mark", self.best_score[0])
        self.best_metrics = state.get("best_metrics")  # absent in checkpoints written before it
