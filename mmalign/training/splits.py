"""The pairs a run trains, selects and tests on: read, checked disjoint, kept in the run folder.

Pairs are in the model's global id space (KG2 ids offset by the KG1 entity count). The run
folder keeps them as entity-key files (``pairs/train.tsv``, ``valid.tsv``, ``test.tsv``), so
a resumed run, ``predict`` and ``evaluate`` see exactly the pairs the run used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.evaluation import Metrics, evaluate_pairs, gold_targets, non_seed_targets
from mmalign.pairs import read_pairs, read_run_pairs, write_pairs
from mmalign.report import Reporter
from mmalign.run import pairs_file
from mmalign.workspace import Workspace

SPLITS = ("train", "valid", "test")


@dataclass
class Splits:
    """Pairs in the global id space: the training seeds, the validation pairs, the test pairs (or None)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray | None


def make_splits(workspace: Workspace, seeds: Path, *, valid: Path | None, valid_fraction: float, test: Path | None,
                seed: int, skip_unknown: bool, reporter: Reporter) -> Splits:
    """Read the pair files and draw the validation split from the seeds when none is given."""
    offset = len(workspace.kg1.entities)
    seed_pairs = read_pairs(seeds, workspace, skip_unknown=skip_unknown, reporter=reporter)
    if valid is not None:
        valid_pairs = read_pairs(valid, workspace, skip_unknown=skip_unknown, reporter=reporter)
        train_pairs = seed_pairs
    else:
        order = np.random.default_rng(seed).permutation(len(seed_pairs))
        n_valid = max(1, int(round(len(seed_pairs) * valid_fraction)))
        if n_valid >= len(seed_pairs):
            raise MMAlignError(f"too few seed pairs ({len(seed_pairs)}) to hold out a validation split", path=seeds)
        valid_pairs, train_pairs = seed_pairs[order[:n_valid]], seed_pairs[order[n_valid:]]
    test_pairs = read_pairs(test, workspace, skip_unknown=skip_unknown, reporter=reporter) if test else None
    _check_disjoint(train_pairs, valid_pairs, "seeds", "validation", valid or seeds)
    if test_pairs is not None:
        _check_disjoint(np.concatenate([train_pairs, valid_pairs]), test_pairs, "seeds", "test", test)
    shift = np.array([0, offset])
    return Splits(train_pairs + shift, valid_pairs + shift, None if test_pairs is None else test_pairs + shift)


def _check_disjoint(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, path: Path) -> None:
    for side, label in ((0, "KG1"), (1, "KG2")):
        both = np.intersect1d(a[:, side], b[:, side])
        if len(both):
            raise MMAlignError(f"{len(both):,} {label} entit{'y is' if len(both) == 1 else 'ies are'} in both the {name_a} "
                               f"and the {name_b} pairs; they must be disjoint", path=path)


def write_split_files(run_dir: Path, workspace: Workspace, splits: Splits) -> None:
    offset = np.array([0, len(workspace.kg1.entities)])
    for name in SPLITS:
        pairs = getattr(splits, name)
        if pairs is not None:
            write_pairs(pairs_file(run_dir, name), pairs - offset, workspace)


def read_split_files(run_dir: Path, workspace: Workspace) -> Splits:
    offset = np.array([0, len(workspace.kg1.entities)])
    train, valid, test = (read_run_pairs(pairs_file(run_dir, name), workspace) for name in SPLITS)
    if train is None or valid is None:
        raise MMAlignError("the run folder lacks its pairs/train.tsv or pairs/valid.tsv; start a new run", path=run_dir)
    return Splits(train + offset, valid + offset, None if test is None else test + offset)


def validation_metrics(embeddings: torch.Tensor, splits: Splits, n1: int, csls_k: int) -> Metrics:
    """The validation pairs ranked against every KG2 entity outside the training seeds (global ids)."""
    candidates = non_seed_targets(np.arange(n1, len(embeddings)), splits.train)
    return evaluate_pairs(embeddings, embeddings, splits.valid, candidates, csls_k=csls_k)


def test_pair_metrics(embeddings: torch.Tensor, pairs: np.ndarray, csls_k: int) -> Metrics:
    """Test pairs ranked against their distinct targets: the papers' protocol (global ids)."""
    return evaluate_pairs(embeddings, embeddings, pairs, gold_targets(pairs), csls_k=csls_k)
