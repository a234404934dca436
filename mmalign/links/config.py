"""``LinkConfig``: the settings of ``mmalign link``, checked before any search runs.

A section of its own (not part of :class:`~mmalign.training.config.TrainConfig`): linking
reads a finished run and never changes how it was trained. Defaults live here only; the
CLI's help texts read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyoxigraph

from mmalign.errors import MMAlignError
from mmalign.links.prior import Prior
from mmalign.settings import Choice, Section, at_least

ACCEPT_PRECISION = 0.95
"""The validation precision the default accept threshold is chosen for."""


class LinkFormat(Choice):
    """What ``mmalign link`` writes: TSV (every band), N-Triples or the OAEI Alignment format."""

    TSV = "tsv"
    NT = "nt"
    ALIGNMENT = "alignment"

    @classmethod
    def label(cls, key: str) -> str:
        return "link format"


class Band(Choice):
    """Where a link's confidence puts it: accepted, worth a review, or rejected (no match)."""

    ACCEPT = "accept"
    REVIEW = "review"
    REJECT = "reject"


BANDS = tuple(Band)
"""The bands in order; files and arrays store a band as its index here."""


@dataclass(frozen=True)
class LinkConfig(Section):
    """Thresholds, matching and output of ``mmalign link``.

    ``accept`` None takes the threshold chosen on the run's validation pairs for a precision
    of :data:`ACCEPT_PRECISION` (kept in ``links/calibration.json``). ``review`` 0.5: a link
    more likely right than wrong is worth a look; with calibrated confidences, F1 peaks near
    half the best F1 reachable, so accept + review is close to the F1-best cut.
    """

    accept: float | None = None
    review: float = 0.5
    many: bool = False  # several KG1 entities may link to one KG2 entity (default: one-to-one)
    top_k: int = 10  # candidates per entity the one-to-one matching may fall back on
    format: LinkFormat = LinkFormat.TSV
    include_rejected: bool = False  # --all: rejected entities too (TSV only)
    base_iri: str | None = None  # prefix for keys that are not absolute IRIs (nt, alignment)
    # How the prior share with a counterpart varies between KG1 entities (:mod:`mmalign.links.prior`):
    # by degree as the seeds say (they must be a random sample of the matches), or flat.
    prior: Prior = Prior.DEGREE

    def check(self) -> None:
        for key in ("accept", "review"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise MMAlignError(f"--{key} must be a probability in [0, 1], got {value}")
        if self.accept is not None and self.review > self.accept:
            raise MMAlignError(f"--review ({self.review}) must not exceed --accept ({self.accept})")
        at_least("top_k", self.top_k, 1)
        if self.include_rejected and self.format is not LinkFormat.TSV:
            raise MMAlignError(f"--all lists rejected entities in the TSV format only, not {self.format.value}")
        if self.base_iri is not None:
            try:
                pyoxigraph.NamedNode(self.base_iri)
            except ValueError as error:
                raise MMAlignError(f"--base-iri {self.base_iri!r} is not an absolute IRI ({error})") from None
