"""Benchmark folders holding both KGs: DBP15K/EVA style and OpenEA style.

DBP15K/EVA (``ent_ids_1/2``, ``triples_1/2``, optional ``rel_ids_1/2``,
``training_attrs_1/2``, ``ref_ent_ids`` or ``ill_ent_ids``, and a ``names.tsv`` or
``names_translated.tsv`` of ``IRI<TAB>name`` for either KG): the files number entities and
relations, but only the IRIs are kept. A KG's entities are exactly its ``ent_ids`` file, in
file order; relations are named by ``rel_ids`` when present, else ``rel:<id>``.

OpenEA (``rel_triples_1/2``, optional ``attr_triples_1/2``, ``ent_links``): IRIs throughout;
an attribute value holding tabs is re-joined with spaces, as OpenEA's own loader does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.io.records import BadLines, KGBuilder
from mmalign.io.text import iter_lines
from mmalign.io.tsv import read_rows
from mmalign.report import SILENT, Reporter

FORMATS = ("dbp15k", "openea")
_NAME_FILES = ("names.tsv", "names_translated.tsv")


def detect_format(folder: Path) -> str | None:
    """``dbp15k``, ``openea`` or None, from the files the folder holds."""
    if all((folder / f"{stem}_{k}").is_file() for stem in ("ent_ids", "triples") for k in (1, 2)):
        return "dbp15k"
    if all((folder / f"rel_triples_{k}").is_file() for k in (1, 2)):
        return "openea"
    return None


@dataclass
class BenchmarkInput:
    """The files of one benchmark folder, found before anything is parsed (for hashing)."""

    folder: Path
    format: str
    kg_files: tuple[list[Path], list[Path]] = field(default_factory=lambda: ([], []))
    shared_files: list[Path] = field(default_factory=list)

    @classmethod
    def find(cls, folder: Path, format: str) -> BenchmarkInput:
        """Locate the files of ``format``; a missing required file is a clear error."""
        required, optional, shared = _LAYOUTS[format]
        found = cls(folder, format)
        for k in (1, 2):
            for stem in required:
                path = folder / f"{stem}_{k}"
                if not path.is_file():
                    raise MMAlignError(f"not a {format} benchmark folder: {path.name} is missing", path=folder)
                found.kg_files[k - 1].append(path)
            found.kg_files[k - 1].extend(p for p in (folder / f"{s}_{k}" for s in optional) if p.is_file())
        found.shared_files = [p for p in (folder / name for name in shared) if p.is_file()]
        return found

    def folders(self) -> tuple[Path, Path]:
        return self.folder, self.folder

    def sources(self) -> dict[str, list[Path]]:
        return {"kg1": self.kg_files[0], "kg2": self.kg_files[1], "shared": self.shared_files}

    def read(self, bad: BadLines, reporter: Reporter = SILENT) -> tuple[KGBuilder, KGBuilder, list[tuple[str, str]]]:
        """Parse both KGs and the gold pairs."""
        if self.format == "dbp15k":
            return _read_dbp15k(self.folder, bad, reporter)
        return _read_openea(self.folder, bad)


_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "dbp15k": (("ent_ids", "triples"), ("rel_ids", "training_attrs"), ("ref_ent_ids", "ill_ent_ids", *_NAME_FILES)),
    "openea": (("rel_triples",), ("attr_triples",), ("ent_links",)),
}


def _read_ids(path: Path, bad: BadLines) -> dict[str, str]:
    """``id<TAB>key`` lines -> {id: key}, in file order; a repeated id is a bad line."""
    keys: dict[str, str] = {}
    for line, (number, key) in read_rows(path, 2, bad):
        if number in keys:
            bad(f"id {number} given twice", path, line)
            continue
        keys[number] = key
    return keys


def _read_dbp15k(folder: Path, bad: BadLines, reporter: Reporter) -> tuple[KGBuilder, KGBuilder, list[tuple[str, str]]]:
    kgs, id_maps = [], []
    for k in (1, 2):
        entities = _read_ids(folder / f"ent_ids_{k}", bad)
        rel_path = folder / f"rel_ids_{k}"
        relations = _read_ids(rel_path, bad) if rel_path.is_file() else None
        builder = KGBuilder()
        builder.declare(list(entities.values()))
        triples_path = folder / f"triples_{k}"
        for line, (h, r, t) in read_rows(triples_path, 3, bad):
            head, tail = entities.get(h), entities.get(t)
            relation = f"rel:{r}" if relations is None else relations.get(r)
            if head is None or tail is None:
                bad(f"entity id {h if head is None else t} is not in ent_ids_{k}", triples_path, line)
            elif relation is None:
                bad(f"relation id {r} is not in rel_ids_{k}", triples_path, line)
            else:
                builder.add_triple(head, relation, tail)
        _read_attribute_names(folder / f"training_attrs_{k}", set(entities.values()), builder, reporter)
        kgs.append(builder)
        id_maps.append(entities)
    links: list[tuple[str, str]] = []
    for name in ("ref_ent_ids", "ill_ent_ids"):
        path = folder / name
        if path.is_file():
            for line, (a, b) in read_rows(path, 2, bad):
                if a not in id_maps[0] or b not in id_maps[1]:
                    bad(f"pair {a} {b}: ids must be in ent_ids_1 and ent_ids_2", path, line)
                else:
                    links.append((id_maps[0][a], id_maps[1][b]))
            break
    _read_shared_names(folder, kgs, [set(ids.values()) for ids in id_maps], bad, reporter)
    return kgs[0], kgs[1], links


def _read_attribute_names(path: Path, known: set[str], builder: KGBuilder, reporter: Reporter) -> None:
    """``training_attrs_N``: ``IRI<TAB>attr<TAB>attr...``, attribute names without values."""
    if not path.is_file():
        return
    unknown = 0
    for _, text in iter_lines(path):
        if not text.strip():
            continue
        entity, *attributes = text.split("\t")
        if entity not in known:
            unknown += 1
            continue
        for attribute in attributes:
            if attribute:
                builder.add_attribute(entity, attribute, "")
    if unknown:
        reporter.warn(f"{path}: {unknown:,} lines about entities not in the entity list were ignored")


def _read_shared_names(
    folder: Path, kgs: list[KGBuilder], members: list[set[str]], bad: BadLines, reporter: Reporter
) -> None:
    """A names file for both KGs: each name goes to the KG whose entity list has the key."""
    for name in _NAME_FILES:
        path = folder / name
        if not path.is_file():
            continue
        unknown = 0
        for _, (entity, text) in read_rows(path, 2, bad):
            for kg, keys in zip(kgs, members):
                if entity in keys:
                    kg.add_name(entity, text)
                    break
            else:
                unknown += 1
        if unknown:
            reporter.warn(f"{path}: {unknown:,} names of entities in neither KG were ignored")


def _read_openea(folder: Path, bad: BadLines) -> tuple[KGBuilder, KGBuilder, list[tuple[str, str]]]:
    kgs = []
    for k in (1, 2):
        builder = KGBuilder()
        for _, (head, relation, tail) in read_rows(folder / f"rel_triples_{k}", 3, bad):
            builder.add_triple(head, relation, tail)
        attr_path = folder / f"attr_triples_{k}"
        if attr_path.is_file():
            for _, (entity, attribute, value) in read_rows(attr_path, 3, bad, optional_last=True, join_extra=" "):
                builder.add_attribute(entity, attribute, value)
        kgs.append(builder)
    links_path = folder / "ent_links"
    links = [(a, b) for _, (a, b) in read_rows(links_path, 2, bad)] if links_path.is_file() else []
    return kgs[0], kgs[1], links
