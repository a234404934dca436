"""What the readers produce (a :class:`KGBuilder` per KG) and the policy for malformed lines."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import NamedTuple

from mmalign.errors import MMAlignError


def intern(vocabulary: dict[str, int], key: str) -> int:
    """The id of ``key`` in ``vocabulary``, adding it (next id) when new."""
    found = vocabulary.get(key)
    if found is None:
        found = vocabulary[key] = len(vocabulary)
    return found


class Mark(NamedTuple):
    """Sizes of a builder's containers, to roll back to (see :meth:`KGBuilder.rollback`)."""

    entities: int
    relations: int
    attributes: int
    values: int
    tags: int
    triples: int
    attribute_rows: int
    name_rows: int
    images: int


class KGBuilder:
    """One KG as it is read: vocabularies of distinct strings and flat integer buffers.

    Readers stream into it; nothing per triple is kept as a Python object. Strings live once
    per distinct term in the vocabularies (``dict`` key -> id, ids in insertion order);
    triples are ints in ``array('i')`` buffers (4 bytes per id): ``triples`` holds
    (head, relation, tail) term ids, ``attribute_rows`` (entity, attribute, value, tag),
    ``name_rows`` (entity, name as a value id, tag). A tag is a datatype IRI, ``@lang`` or
    empty (``tags`` always maps "" to 0). Attribute values and names share ``values``, so a
    repeated value is stored once.

    ``entities`` ids follow first mention in any role; :func:`mmalign.ingest.build_kg`
    renumbers them into the documented order (declared entities, relation triples,
    attributes, names, images). ``declared`` counts the entities listed up front (a
    benchmark's entity file): they hold ids ``0 .. declared - 1``.
    """

    def __init__(self) -> None:
        self.entities: dict[str, int] = {}
        self.relations: dict[str, int] = {}
        self.attributes: dict[str, int] = {}
        self.values: dict[str, int] = {}
        self.tags: dict[str, int] = {"": 0}
        self.declared = 0
        self.triples = array("i")
        self.attribute_rows = array("i")
        self.name_rows = array("i")
        self.images: list[tuple[int, str]] = []
        """(entity, absolute image path) given explicitly (images.tsv)."""
        self.image_files: list[tuple[str, str]] = []
        """(local name, absolute image path) found in an ``images/`` folder, matched later."""
        self.odd_iris: dict[str, None] = {}
        """IRIs kept although they hold characters RFC 3987 forbids (an ordered set; RDF reader)."""

    # ---- adding -------------------------------------------------------------------------

    def declare(self, keys: list[str]) -> None:
        """Entities listed up front, in order (before anything else is added)."""
        for key in keys:
            intern(self.entities, key)
        self.declared = len(self.entities)

    def add_triple(self, head: str, relation: str, tail: str) -> None:
        entities = self.entities
        self.triples.extend((intern(entities, head), intern(self.relations, relation), intern(entities, tail)))

    def add_attribute(self, entity: str, attribute: str, value: str, tag: str = "") -> None:
        """An attribute triple; ``tag`` is the datatype IRI, ``@lang`` or empty."""
        self.attribute_rows.extend(
            (
                intern(self.entities, entity),
                intern(self.attributes, attribute),
                intern(self.values, value),
                intern(self.tags, tag),
            )
        )

    def add_name(self, entity: str, name: str, language: str = "") -> None:
        self.name_rows.extend((intern(self.entities, entity), intern(self.values, name), intern(self.tags, language)))

    def add_image(self, entity: str, path: str) -> None:
        self.images.append((intern(self.entities, entity), path))

    @property
    def statements(self) -> int:
        """Relation plus attribute triples added so far (for progress reports)."""
        return len(self.triples) // 3 + len(self.attribute_rows) // 4

    # ---- undo (a reader re-reads a chunk that held a bad line) ------------------------------

    def mark(self) -> Mark:
        return Mark(
            len(self.entities), len(self.relations), len(self.attributes), len(self.values), len(self.tags),
            len(self.triples), len(self.attribute_rows), len(self.name_rows), len(self.images),
        )  # fmt: skip

    def rollback(self, mark: Mark) -> None:
        """Forget everything added since ``mark`` (vocabulary entries included)."""
        vocabularies = (self.entities, self.relations, self.attributes, self.values, self.tags)
        for vocabulary, size in zip(vocabularies, mark):
            for key in [key for key, _ in zip(reversed(vocabulary), range(len(vocabulary) - size))]:
                del vocabulary[key]
        del self.triples[mark.triples :]
        del self.attribute_rows[mark.attribute_rows :]
        del self.name_rows[mark.name_rows :]
        del self.images[mark.images :]

    # ---- reading back as strings (tests, debugging; materialises every row) -------------------

    def relation_triples(self) -> list[tuple[str, str, str]]:
        entities, relations = list(self.entities), list(self.relations)
        t = self.triples
        return [(entities[t[i]], relations[t[i + 1]], entities[t[i + 2]]) for i in range(0, len(t), 3)]

    def attribute_triples(self) -> list[tuple[str, str, str, str]]:
        """(entity, attribute, value, tag) rows in the order added."""
        entities, attributes, values, tags = (list(v) for v in (self.entities, self.attributes, self.values, self.tags))
        a = self.attribute_rows
        return [
            (entities[a[i]], attributes[a[i + 1]], values[a[i + 2]], tags[a[i + 3]]) for i in range(0, len(a), 4)
        ]

    def names(self) -> list[tuple[str, str, str]]:
        """(entity, name, language tag or empty) rows in the order added."""
        entities, values, tags = list(self.entities), list(self.values), list(self.tags)
        n = self.name_rows
        return [(entities[n[i]], values[n[i + 1]], tags[n[i + 2]]) for i in range(0, len(n), 3)]


class BadLines:
    """What happens to a malformed line: an error (default) or, with ``skip``, a counted warning.

    Readers call it for every problem they find; with ``skip=False`` the first call raises
    the one-line :class:`MMAlignError` the CLI prints, so nothing is written.
    """

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip
        self.counts: dict[Path, int] = {}
        self._first: dict[Path, str] = {}

    def __call__(self, problem: str, path: Path, line: int | None = None, column: int | None = None) -> None:
        if not self.skip:
            raise MMAlignError(problem, path=path, line=line, column=column)
        self.counts[path] = self.counts.get(path, 0) + 1
        if path not in self._first:
            where = "" if line is None else f"line {line}: " if column is None else f"line {line}:{column}: "
            self._first[path] = f"{where}{problem}"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summaries(self) -> list[str]:
        """One warning per file: how many lines were skipped and the first problem."""
        return [
            f"{path}: skipped {count:,} bad line{'s' if count > 1 else ''} (first: {self._first[path]})"
            for path, count in self.counts.items()
        ]
