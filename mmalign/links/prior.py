"""Which decided pairs are likely to join two entities that have counterparts at all, from their degrees and the seeds.

The validation pairs cannot say this: every validation entity has a counterpart, and the
simulated unmatched ones (:mod:`mmalign.links.linker`) are the same entities, so both worlds
share one degree distribution. The seeds can, if they are a sample of the matched entities
that does not depend on degree (PU learning's "selected completely at random", Elkan & Noto,
KDD 2008): then the share of seeds among the KG1 entities of a degree class is proportional
to the share of that class with a counterpart. On DBP15K zh_en both shares rise steeply with
degree: the degree-1 KG1 entities are rarely seeds and rarely have a gold link, those of degree
4 and more mostly do (docs/benchmarks.md, "Links: the degree prior").

The *shape* kept here is that share relative to the best-connected tenth of the entities, who
are taken to be as likely as any to have a counterpart (capped at 1), for each KG. A decided
pair is right only if both its entities have counterparts (each other), so its shape is the
smaller of its two entities' (the joint chance of two events that coincide for a right pair is
at most the smaller one; Fréchet's bound, taken as equal). The KG2 side catches what the KG1
side lets through: a well-connected KG1 entity whose candidate is a KG2 entity the seeds shun.
Its scale, the share with a counterpart where the shape is 1, is not identified by the seeds;
the calibration fits it on the link features (:func:`mmalign.links.calibration.estimate_scale`).
A uniform shape (too few seeds, or ``--prior flat``) leaves the calibration as it was without
degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmalign.settings import Choice

MIN_SEEDS = 100
"""Fewer seed entities than this give a uniform shape: too few to tell degree classes apart."""
REFERENCE_SHARE = 0.1
"""The best-connected classes holding this share of the entities set the reference (shape 1).

A tenth: enough entities that a few hubs cannot set it alone, few enough that it stays above
the low degrees where the unmatched gather even when most entities have one or two triples.
"""


class Prior(Choice):
    """``--prior``: how the share of entities with a counterpart varies with their degree."""

    DEGREE = "degree"  # the seeds' share per degree class, as this module says
    FLAT = "flat"  # the same for every entity (seeds that are not a random sample of the matches)


@dataclass(frozen=True)
class DegreeShape:
    """Per degree class (``edges``: each class's lowest degree, ascending), the relative share with a counterpart.

    A degree below the first class's (no entity of the workspace has one) takes the first class's.
    """

    edges: np.ndarray
    shape: np.ndarray
    seeds: int
    """Seed entities it was read from (0: uniform by construction)."""

    @classmethod
    def uniform(cls) -> "DegreeShape":
        return cls(np.zeros(1, dtype=np.int64), np.ones(1), 0)

    def of(self, degrees: np.ndarray) -> np.ndarray:
        """The shape at each of ``degrees``."""
        return self.shape[np.maximum(np.searchsorted(self.edges, degrees, side="right") - 1, 0)]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "shape": self.shape.tolist(), "seeds": self.seeds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DegreeShape":
        return cls(np.asarray(data["edges"], dtype=np.int64), np.asarray(data["shape"], dtype=np.float64), int(data["seeds"]))


@dataclass(frozen=True)
class PairShape:
    """The shapes of both KGs; a decided pair's is the smaller of its two entities'."""

    kg1: DegreeShape
    kg2: DegreeShape

    @classmethod
    def uniform(cls) -> "PairShape":
        return cls(DegreeShape.uniform(), DegreeShape.uniform())

    @classmethod
    def fit(cls, degree1: np.ndarray, degree2: np.ndarray, seeds: np.ndarray) -> "PairShape":
        """From both KGs' degrees and the seed pairs (local ids)."""
        return cls(fit_shape(degree1, seeds[:, 0]), fit_shape(degree2, seeds[:, 1]))

    def of(self, degree1: np.ndarray, degree2: np.ndarray) -> np.ndarray:
        """The shape of the pairs whose entities have these degrees."""
        return np.minimum(self.kg1.of(degree1), self.kg2.of(degree2))

    def to_dict(self) -> dict[str, Any]:
        return {"kg1": self.kg1.to_dict(), "kg2": self.kg2.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairShape":
        return cls(DegreeShape.from_dict(data["kg1"]), DegreeShape.from_dict(data["kg2"]))


def degrees(triples: np.ndarray, entities: int) -> np.ndarray:
    """Relation triples each entity takes part in, as head or tail."""
    return np.bincount(triples[:, [0, 2]].ravel(), minlength=entities)


def degree_classes(max_degree: int) -> np.ndarray:
    """Lowest degree of each class: 0, 1, 2, 3, then doubling (4-7, 8-15, ...), up to ``max_degree``."""
    edges = [0, 1, 2, 3]
    while edges[-1] * 2 <= max(max_degree, 3):
        edges.append(4 if edges[-1] == 3 else edges[-1] * 2)
    return np.asarray(edges, dtype=np.int64)


def fit_shape(degree: np.ndarray, seeds: np.ndarray) -> DegreeShape:
    """The shape from every KG1 entity's degree and the KG1 ids of the seed pairs.

    Seed share per degree class, made non-decreasing in degree (pool-adjacent-violators, weighted
    by the classes' sizes: a better-connected entity is no less likely to be in both KGs, and
    small classes of hubs are pooled rather than trusted alone), divided by its mean over the
    best-connected tenth of the entities (:data:`REFERENCE_SHARE`), capped at 1.
    """
    seeds = np.unique(seeds)
    if len(seeds) < MIN_SEEDS:
        return DegreeShape.uniform()
    edges = degree_classes(int(degree.max(initial=0)))
    classes = np.searchsorted(edges, degree, side="right") - 1
    sizes = np.bincount(classes, minlength=len(edges)).astype(np.float64)
    seeded = np.bincount(classes[seeds], minlength=len(edges)).astype(np.float64)
    present = sizes > 0  # classes no entity falls in are left out
    edges, sizes, seeded = edges[present], sizes[present], seeded[present]
    share = _non_decreasing(seeded / sizes, sizes)
    # The best connected: classes from the top down until they hold a tenth of the entities.
    top = np.cumsum(sizes[::-1])[::-1] - sizes < sizes.sum() * REFERENCE_SHARE
    reference = float((share * sizes)[top].sum() / sizes[top].sum())
    if reference <= 0:
        return DegreeShape.uniform()
    return DegreeShape(edges, np.minimum(share / reference, 1.0), len(seeds))


def _non_decreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    means, totals, counts = [], [], []
    for value, weight in zip(values.tolist(), weights.tolist()):
        means.append(value)
        totals.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            weight = totals[-2] + totals[-1]
            means[-2] = (means[-2] * totals[-2] + means[-1] * totals[-1]) / weight
            totals[-2] = weight
            counts[-2] += counts[-1]
            del means[-1], totals[-1], counts[-1]
    return np.repeat(means, counts)
