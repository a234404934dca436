"""Plain records produced by the readers, and the policy for malformed lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.errors import MMAlignError


@dataclass
class KGRecords:
    """Everything read about one KG, as strings; entity keys are IRIs or TSV tokens.

    ``entities`` lists entities declared up front (a benchmark's entity file), in order;
    every other entity is added, in order of first appearance, by the triples, attributes,
    names and images that mention it.
    """

    entities: list[str] = field(default_factory=list)
    triples: list[tuple[str, str, str]] = field(default_factory=list)
    attributes: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(entity, attribute, value, datatype); datatype is an IRI, ``@lang`` or empty."""
    names: list[tuple[str, str, str]] = field(default_factory=list)
    """(entity, name, language tag or empty)."""
    images: list[tuple[str, str]] = field(default_factory=list)
    """(entity, absolute image path) given explicitly (images.tsv)."""
    image_files: list[tuple[str, str]] = field(default_factory=list)
    """(local name, absolute image path) found in an ``images/`` folder, matched later."""


class BadLines:
    """What happens to a malformed line: an error (default) or, with ``skip``, a counted warning.

    Readers call it for every problem they find; with ``skip=False`` the first call raises
    the one-line :class:`MMAlignError` the CLI prints, so nothing is written.
    """

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip
        self.counts: dict[Path, int] = {}
        self._first: dict[Path, str] = {}

    def __call__(self, problem: str, path: Path, line: int | None = None) -> None:
        if not self.skip:
            raise MMAlignError(problem, path=path, line=line)
        self.counts[path] = self.counts.get(path, 0) + 1
        if path not in self._first:
            self._first[path] = f"line {line}: {problem}" if line is not None else problem

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summaries(self) -> list[str]:
        """One warning per file: how many lines were skipped and the first problem."""
        return [
            f"{path}: skipped {count:,} bad line{'s' if count > 1 else ''} (first: {self._first[path]})"
            for path, count in self.counts.items()
        ]
