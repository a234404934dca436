"""The pairs a run trains, selects and tests on: read, checked disjoint, kept in the run folder.

Pairs are in the model's global id space (KG2 ids offset by the KG1 entity count). The run
folder keeps them as entity-key files (``pairs/train.tsv``, ``valid.tsv``, ``test.tsv``), so
a resumed run, ``predict`` and ``evaluate`` see exactly the pairs the run used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.evaluation import Metrics, RankingConfig, evaluate_pairs, gold_targets, non_seed_targets
from mmalign.pairs import read_pairs, read_run_pairs, write_pairs
from mmalign.report import Reporter
from mmalign.run import pairs_file
from mmalign.training.bootstrap import Bootstrap
from mmalign.workspace import Workspace

SPLITS = ("train", "valid", "test")
BOOTSTRAPPED = "bootstrapped"
"""The run's pair file of the pairs bootstrapped from names (:mod:`mmalign.training.bootstrap`)."""


@dataclass
class Splits:
    """Pairs in the global id space: the training seeds, the validation pairs, the test pairs (or None).

    ``origin`` says where the training and validation pairs came from (``{"source": "file"}``,
    or the bootstrap's record, :mod:`mmalign.training.bootstrap`); the run's summary keeps it.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray | None
    origin: dict[str, Any] = field(default_factory=lambda: {"source": "file"})
    bootstrapped: np.ndarray | None = None
    """The training and validation pairs that came from names (``pairs/bootstrapped.tsv``):
    evidence, not given truth, so ``predict`` and ``link`` still decide their entities."""

    @property
    def names_validation(self) -> bool:
        """Whether the validation pairs were bootstrapped from names (no seed file): a sample
        chosen for agreeing names, which cannot judge the model (see ``Selector``)."""
        return self.origin.get("source") == "names"

    def member_share(self, k: int, members: int, seed: int) -> "Splits":
        """Member ``k``'s splits when ``members`` models cross-fit bootstrapped seeds: every
        ``members``-th of the training pairs, in an order drawn from ``seed``.

        A model memorises its seed pairs, wrong ones included; the pairs it did not train on
        it judges afresh and, where right, finds again as pseudo pairs. Each member thus
        corrects the others' share of the bootstrap's errors (docs/benchmarks.md).
        """
        order = np.random.default_rng(seed).permutation(len(self.train))
        share = np.sort(order[k::members])
        return dataclasses.replace(self, train=self.train[share])


def make_splits(workspace: Workspace, seeds: Path | None, *, valid: Path | None, valid_fraction: float, valid_max: int, test: Path | None,
                seed: int, skip_unknown: bool, reporter: Reporter, bootstrap: Bootstrap | None = None) -> Splits:
    """Read the pair files and draw the validation split from the seeds when none is given.

    The drawn split is ``valid_fraction`` of the seeds, at most ``valid_max`` pairs (the rest
    train); a ``valid`` file is used whole.

    Without ``seeds`` the bootstrapped pairs are the seeds; with both, the bootstrapped pairs
    whose entities no seed or validation pair holds join the training pairs. Bootstrapped
    pairs may share entities with the test pairs: they were found without labels.
    """
    offset = len(workspace.kg1.entities)
    source = seeds if seeds is not None else workspace.path
    if seeds is not None:
        seed_pairs = read_pairs(seeds, workspace, skip_unknown=skip_unknown, reporter=reporter)
    elif bootstrap is not None:
        seed_pairs = bootstrap.pairs
    else:
        raise MMAlignError("training needs seed pairs: --seeds FILE, or names to bootstrap them from")
    if valid is not None:
        valid_pairs = read_pairs(valid, workspace, skip_unknown=skip_unknown, reporter=reporter)
        train_pairs = seed_pairs
        if seeds is None:  # bootstrapped pairs give way to the validation file's entities
            train_pairs = _touching_none(seed_pairs, valid_pairs)
    else:
        n_valid = max(1, min(valid_max, int(round(len(seed_pairs) * valid_fraction))))
        valid_pairs, train_pairs = _draw_validation(seed_pairs, n_valid, seed, source, reporter)
    test_pairs = read_pairs(test, workspace, skip_unknown=skip_unknown, reporter=reporter) if test else None
    # Strict, unlike the test pairs: validation ranks among the KG2 entities outside the
    # training seeds, so a validation pair whose KG2 entity trains could never rank first.
    _check_disjoint(train_pairs, valid_pairs, "seeds", "validation", valid or source)
    if test_pairs is not None and seeds is not None:
        _check_test(np.concatenate([train_pairs, valid_pairs]), test_pairs, test, reporter)
    origin: dict[str, Any] = {"source": "file"}
    from_names = None  # the training and validation pairs bootstrapped from names
    if bootstrap is not None:
        origin = dict(bootstrap.info)
        from_names = np.concatenate([train_pairs, valid_pairs])
        if seeds is not None:
            held = from_names
            from_names = extra = _touching_none(bootstrap.pairs, held)
            train_pairs = np.concatenate([train_pairs, extra])
            origin.update(source="file+names", added=int(len(extra)))
            reporter.info(f"--seeds-extend: {len(extra):,} bootstrapped pairs added to the {len(held):,} seed and validation pairs")
        if test_pairs is not None:
            shared = int(np.isin(test_pairs[:, 0], np.concatenate([train_pairs, valid_pairs])[:, 0]).sum())
            origin["test_entities_bootstrapped"] = shared
            if shared:
                reporter.info(f"{shared:,} test pairs' KG1 entities are among the bootstrapped pairs (found without labels)")
    shift = np.array([0, offset])
    return Splits(train_pairs + shift, valid_pairs + shift, None if test_pairs is None else test_pairs + shift, origin,
                  None if from_names is None else from_names + shift)


def _draw_validation(pairs: np.ndarray, n_valid: int, seed: int, source: Path, reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) pairs: a random ``n_valid`` of ``pairs``, linked pairs kept together.

    Real seed files link one entity to two of the other KG now and then (DB15K's seed50 has a
    DBpedia entity with two Freebase ids); validation and training must not share an entity,
    so pairs that share one, directly or through others, fall on the same side. Groups are
    drawn in a random order until ``n_valid`` pairs are held out (a little more when the last
    group is big); without shared entities this is a random ``n_valid`` of the pairs.
    """
    if n_valid >= len(pairs):
        raise MMAlignError(f"too few seed pairs ({len(pairs)}) to hold out a validation split", path=source)
    groups = _linked_groups(pairs)
    sizes = np.bincount(groups)
    place = np.empty(len(sizes), dtype=np.int64)
    place[np.random.default_rng(seed).permutation(len(sizes))] = np.arange(len(sizes))
    order = np.argsort(place[groups], kind="stable")
    cut = n_valid
    while cut < len(order) and groups[order[cut]] == groups[order[cut - 1]]:
        cut += 1
    if cut >= len(pairs):
        raise MMAlignError("the seed pairs are too linked (pairs sharing entities) to hold out a validation split", path=source)
    linked = int(sizes[sizes > 1].sum())
    if linked:
        reporter.info(f"{linked:,} seed pairs share an entity with another seed pair; "
                      "each such group stays on one side of the validation split")
    return pairs[order[:cut]], pairs[order[cut:]]


def _linked_groups(pairs: np.ndarray) -> np.ndarray:
    """Each pair's group, numbered by the group's first pair: pairs sharing a KG1 or a KG2
    entity, directly or through other pairs, are one group. Without shared entities pair i is
    group i."""
    parent = np.arange(len(pairs))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    for side in (0, 1):
        _, first, inverse, counts = np.unique(pairs[:, side], return_index=True, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        for row in np.flatnonzero(counts[inverse] > 1):
            a, b = root(int(row)), root(int(first[inverse[row]]))
            parent[max(a, b)] = min(a, b)  # a group's root is its first pair
    while not np.array_equal(parent[parent], parent):  # every pair straight to its root
        parent = parent[parent]
    return np.unique(parent, return_inverse=True)[1].reshape(-1)


def _touching_none(pairs: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The rows of ``pairs`` whose KG1 and KG2 entities no row of ``held`` names."""
    return pairs[~np.isin(pairs[:, 0], held[:, 0]) & ~np.isin(pairs[:, 1], held[:, 1])]


def _check_disjoint(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, path: Path) -> None:
    for side, label in ((0, "KG1"), (1, "KG2")):
        both = np.intersect1d(a[:, side], b[:, side])
        if len(both):
            raise MMAlignError(f"{len(both):,} {label} entit{'y is' if len(both) == 1 else 'ies are'} in both the {name_a} "
                               f"and the {name_b} pairs; they must be disjoint", path=path)


def _check_test(seeds: np.ndarray, test: np.ndarray, path: Path, reporter: Reporter) -> None:
    """No pair may be both a seed and a test pair; one that shares an entity is said, and tested.

    A test pair whose KG1 entity a seed pair links to another KG2 entity (or the other way
    round) is a second link of that entity, as real gold files hold now and then (DB15K's
    seed50/test50 split has three): the model never trained on that link, so it is a fair test.
    """
    width = int(max(seeds[:, 1].max(initial=0), test[:, 1].max(initial=0))) + 1
    same = np.intersect1d(_pair_keys(seeds, width), _pair_keys(test, width))
    if len(same):
        raise MMAlignError(f"{len(same):,} pair{'s are' if len(same) > 1 else ' is'} both seed and test pairs; "
                           "test on pairs the model did not train on", path=path)
    shared = int((np.isin(test[:, 0], seeds[:, 0]) | np.isin(test[:, 1], seeds[:, 1])).sum())
    if shared:
        reporter.info(f"{shared:,} test pair{'s share' if shared > 1 else ' shares'} an entity with a seed pair "
                      "(an entity linked twice); tested as given")


def write_split_files(run_dir: Path, workspace: Workspace, splits: Splits) -> None:
    offset = np.array([0, len(workspace.kg1.entities)])
    for name in (*SPLITS, BOOTSTRAPPED):
        pairs = getattr(splits, name)
        if pairs is not None:
            write_pairs(pairs_file(run_dir, name), pairs - offset, workspace)


def read_split_files(run_dir: Path, workspace: Workspace, origin: dict[str, Any] | None = None) -> Splits:
    offset = np.array([0, len(workspace.kg1.entities)])
    train, valid, test, bootstrapped = (read_run_pairs(pairs_file(run_dir, name), workspace) for name in (*SPLITS, BOOTSTRAPPED))
    if train is None or valid is None:
        raise MMAlignError("the run folder lacks its pairs/train.tsv or pairs/valid.tsv; start a new run", path=run_dir)
    return Splits(train + offset, valid + offset, None if test is None else test + offset, origin or {"source": "file"},
                  None if bootstrapped is None else bootstrapped + offset)


def given_seeds(run_dir: Path, workspace: Workspace) -> np.ndarray:
    """(S, 2) local ids of the seed pairs a run was given: train plus valid, less those bootstrapped from names.

    Their entities are settled; ``predict`` and ``link`` decide every other entity.
    """
    found = [read_run_pairs(pairs_file(run_dir, name), workspace) for name in (*SPLITS[:2], BOOTSTRAPPED)]
    pairs = np.concatenate([np.zeros((0, 2), dtype=np.int64)] + [p for p in found[:2] if p is not None])
    if found[2] is None or not len(pairs):
        return pairs
    width = len(workspace.kg2.entities)
    return pairs[~np.isin(_pair_keys(pairs, width), _pair_keys(found[2], width))]


def _pair_keys(pairs: np.ndarray, width: int) -> np.ndarray:
    """One integer per (KG1, KG2) pair of local ids, for set operations on pairs; ``width``
    exceeds every KG2 id."""
    return pairs[:, 0] * width + pairs[:, 1]


def validation_metrics(embeddings: torch.Tensor, splits: Splits, n1: int, csls_k: int) -> Metrics:
    """The validation pairs ranked against every KG2 entity outside the training seeds (global ids).

    Ranked against the KG2 rows as a view, so that the candidates are most of them and
    :func:`~mmalign.evaluation.rank_pairs` leaves the seeds out in place instead of copying the rest.
    """
    candidates = non_seed_targets(np.arange(n1, len(embeddings)), splits.train) - n1
    return evaluate_pairs(embeddings, embeddings[n1:], splits.valid - np.array([0, n1]), candidates, csls_k=csls_k)


def test_pair_metrics(embeddings: torch.Tensor, pairs: np.ndarray, csls_k: int, ranking: RankingConfig) -> Metrics:
    """Test pairs ranked against their distinct targets: the papers' protocol (global ids)."""
    return evaluate_pairs(embeddings, embeddings, pairs, gold_targets(pairs), csls_k=csls_k, ranking=ranking)
