"""Seed pairs bootstrapped from names, for training without a seed file (``--seeds auto``).

Users rarely have seed pairs; they often have names. Two entities whose names are each
other's nearest neighbour under CSLS, in both directions, with a clear margin over the
runner-up on both sides, are very likely the same thing. Those pairs seed training as a seed
file would: precision before recall, since iterative pseudo-labelling finds the rest. Only the
names are read, never a links file: a benchmark folder's gold stays for evaluation.

How sure the pairs are is estimated without labels. A wrong pair comes from an entity whose
counterpart cannot be found by name (missing, unnamed, or named beyond recognition), so the
search is run again with the KG2 entities of the pairs found taken out: the share ``q(t)`` of
their KG1 entities that still pass at margin ``t`` is how often an entity with no findable
counterpart passes. Of the ``N − P(t)`` named KG1 entities left without a pair about
``q(t) · (N − P(t))`` would pass wrongly, so the precision of the ``P(t)`` pairs found is about
``1 − q(t) (N − P(t)) / P(t)``. The margin taken is the smallest from which on the estimate
stays at or above ``seed_precision``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.features.config import FeatureConfig
from mmalign.name_encoders import name_encoders
from mmalign.name_sources import workspace_names
from mmalign.features.names import encode_names
from mmalign.report import SILENT, Reporter
from mmalign.search.blocks import csls_radii
from mmalign.search.mutual import candidate_keys, top_k_of_blocks
from mmalign.settings import Section
from mmalign.sparse import csr_rows
from mmalign.workspace import FEATURES, Workspace

CANDIDATES = 16
"""Nearest names kept per entity (by cosine) among which the CSLS best and runner-up are taken."""
BLOCK = 1024
"""Query rows scored at once: a dense block of the char encoder is BLOCK × its buckets floats."""


@dataclass(frozen=True)
class BootstrapConfig(Section):
    """Seed pairs from names: ``mmalign train`` without ``--seeds``, or with ``--seeds-extend``."""

    # The estimated precision the margin is chosen for; the pairs' errors are training noise,
    # their number is what iterative training starts from.
    seed_precision: float = 0.95
    # With a seed file: add the bootstrapped pairs whose entities no seed or validation pair holds.
    seeds_extend: bool = False
    # With no seed file and several members, each member trains on its own share of the
    # bootstrapped pairs and meets the rest as candidates for pseudo pairs, so a wrong pair is
    # learnt by one member only (docs/benchmarks.md).
    cross_fit: bool = True

    def check(self) -> None:
        if not 0 < self.seed_precision < 1:
            raise MMAlignError(f"seed_precision must be between 0 and 1, got {self.seed_precision}")


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrapped pairs (KG1 local id, KG2 local id) and what the run records about them."""

    pairs: np.ndarray
    info: dict[str, Any]


@dataclass(frozen=True)
class _Found:
    """Mutual CSLS-nearest pairs (rows of the left and right name matrices) and their margins."""

    left: np.ndarray
    right: np.ndarray
    margin: np.ndarray


def bootstrap_seeds(workspace: Workspace, features: FeatureConfig, config: BootstrapConfig, csls_k: int,
                    reporter: Reporter = SILENT) -> Bootstrap:
    """Seed pairs from the names the run's ``features`` settings give (the same encoders the model uses)."""
    started = time.perf_counter()
    mode = features.names.value
    encoders = name_encoders(mode, features.name_encoder)
    if not encoders:
        raise MMAlignError("training without --seeds bootstraps seed pairs from names, but names are off "
                           "(--names none); give --seeds FILE or a --names mode")
    names, _ = workspace_names(workspace, mode, features.names_file, reporter)
    n1 = len(workspace.kg1.entities)
    named = np.fromiter((name is not None for name in names), dtype=bool, count=len(names))
    left_ids, right_ids = np.flatnonzero(named[:n1]), np.flatnonzero(named[n1:])
    if min(len(left_ids), len(right_ids)) < 2:
        raise MMAlignError(f"too few named entities to bootstrap seed pairs from (KG1 {len(left_ids)}, KG2 {len(right_ids)}); "
                           "give --seeds FILE")
    matrices = [encode_names(names, encoder, dim=features.name_dim, cache_dir=workspace.path / FEATURES,
                             reporter=reporter)[0] for encoder in encoders]
    left = [csr_rows(m, torch.from_numpy(left_ids)) for m in matrices]
    right = [csr_rows(m, torch.from_numpy(right_ids + n1)) for m in matrices]
    found = _mutual_with_margin(left, right, csls_k)
    # The same search without the KG2 entities found: what their KG1 entities pass with now is wrong.
    rest = np.setdiff1d(np.arange(len(right_ids)), found.right)
    if len(rest) < 2:
        raise MMAlignError("every named KG2 entity pairs up by name, so the bootstrap cannot estimate its precision; "
                           "give --seeds FILE")
    decoy = _mutual_with_margin(left, [csr_rows(m, torch.from_numpy(rest)) for m in right], csls_k)
    decoy_margins = decoy.margin[np.isin(decoy.left, found.left)]
    margin, precision = choose_margin(found.margin, decoy_margins, len(left_ids), config.seed_precision)
    keep = found.margin >= margin
    pairs = np.stack([left_ids[found.left[keep]], right_ids[found.right[keep]]], axis=1).astype(np.int64)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    info = {
        "source": "names",
        "encoders": [encoder.spec for encoder in encoders],
        "pairs": int(len(pairs)),
        "margin": round(float(margin), 6),
        "estimated_precision": round(float(precision), 4),
        "target_precision": config.seed_precision,
        "mutual_pairs": int(len(found.left)),
        "named": {"kg1": int(len(left_ids)), "kg2": int(len(right_ids))},
        "seconds": round(time.perf_counter() - started, 2),
    }
    reporter.info(f"bootstrapped {len(pairs):,} seed pairs from names ({' + '.join(info['encoders'])}): mutual CSLS-nearest "
                  f"with a margin ≥ {margin:.3f}, estimated precision {precision:.3f} "
                  f"(of {len(found.left):,} mutual pairs; {info['seconds']:.0f} s)")
    return Bootstrap(pairs, info)


def choose_margin(margins: np.ndarray, decoy_margins: np.ndarray, n_queries: int, target: float) -> tuple[float, float]:
    """The smallest margin from which on the estimated precision stays ≥ ``target``, and that estimate.

    ``margins``: the mutual pairs' margins; ``decoy_margins``: those of the pairs the same
    KG1 entities form once their partners are gone (see the module's docstring).
    """
    candidates = np.unique(margins[margins > 0])
    if len(candidates) == 0:
        raise MMAlignError("no two names are each other's clear nearest neighbour; give --seeds FILE")
    passing = len(margins) - np.searchsorted(np.sort(margins), candidates, side="left")
    wrong_share = (len(decoy_margins) - np.searchsorted(np.sort(decoy_margins), candidates, side="left")) / len(margins)
    precision = 1 - wrong_share * (n_queries - passing) / passing
    below = np.flatnonzero(precision < target)
    pick = below[-1] + 1 if len(below) else 0
    if pick == len(candidates):
        raise MMAlignError(f"no margin gives bootstrapped seed pairs an estimated precision of {target}; "
                           "lower seed_precision or give --seeds FILE")
    return float(candidates[pick]), float(precision[pick])


def _mutual_with_margin(left: list[torch.Tensor], right: list[torch.Tensor], csls_k: int) -> _Found:
    """Pairs of rows that are each other's CSLS best, with the smaller of their two margins.

    A row's margin is its best CSLS key minus its runner-up's, both taken among its
    :data:`CANDIDATES` nearest by cosine; the score is the mean of the encoders' cosines.
    """
    n_left, n_right = left[0].shape[0], right[0].shape[0]
    row_values, row_index, col_values, col_index = top_k_of_blocks(_mean_cosines(left, right), n_left, n_right, CANDIDATES)
    r_left = r_right = None
    if csls_k:
        r_left, r_right = csls_radii(row_values, csls_k), csls_radii(col_values, csls_k)
    best_right, row_margin = _best_and_margin(row_values, row_index, r_right)
    best_left, col_margin = _best_and_margin(col_values, col_index, r_left)
    mutual = torch.nonzero(best_left[best_right] == torch.arange(n_left)).flatten()
    partners = best_right[mutual]
    margin = torch.minimum(row_margin[mutual], col_margin[partners])
    return _Found(mutual.numpy(), partners.numpy(), margin.numpy())


def _best_and_margin(values: torch.Tensor, index: torch.Tensor, radii: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's best candidate by CSLS key ``2 s − r(j)`` (or s) and its lead over the runner-up (0 when alone)."""
    keys = candidate_keys(values, index, radii)
    top = keys.topk(min(2, keys.shape[1]), dim=1)
    margin = top.values[:, 0] - top.values[:, 1] if keys.shape[1] > 1 else torch.zeros(len(keys))
    return index.gather(1, top.indices[:, :1]).flatten(), margin


def _mean_cosines(left: list[torch.Tensor], right: list[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
    """Blocks of the mean over encoders of left × right cosines (unit rows; char rows are sparse)."""
    n_left = left[0].shape[0]
    for start in range(0, n_left, BLOCK):
        rows = torch.arange(start, min(start + BLOCK, n_left))
        total = None
        for queries, candidates in zip(left, right):
            block = csr_rows(queries, rows)
            if block.layout == torch.sparse_csr:
                scores = (candidates @ block.to_dense().T).T
            else:
                scores = block @ candidates.T
            total = scores if total is None else total.add_(scores)
        assert total is not None
        yield start, total.div_(len(left))
