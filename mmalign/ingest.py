"""KG folders or a benchmark folder -> builders -> workspace, skipped when nothing changed.

Ingest decides which readers to call and whether a rebuild is needed; the workspace module
does the atomic writing. Entity ids follow first appearance: a benchmark's entity list
first, then relation triples (head, tail), attribute subjects, name subjects and
``images.tsv`` subjects; so a KG's entities are everything its relation triples mention plus
any entity that only has attributes, names or images.
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmalign import __version__
from mmalign.atomic import file_sha256
from mmalign.errors import MMAlignError
from mmalign.io.benchmark import FORMATS, BenchmarkInput, detect_format
from mmalign.io.folder import KGFolderInput
from mmalign.io.images import local_name
from mmalign.io.records import BadLines, KGBuilder
from mmalign.report import SILENT, Reporter
from mmalign.workspace import (
    FORMAT,
    KG_NAMES,
    KGData,
    Workspace,
    check_target,
    read_manifest,
    recover_leftovers,
)

FORMAT_CHOICES = ("auto", "kg", *FORMATS)


class Input(Protocol):
    """What ingest needs from an input layout: its files (for hashing) and a way to read them."""

    format: str

    def folders(self) -> tuple[Path, Path]: ...

    def sources(self) -> dict[str, list[Path]]: ...

    def read(self, bad: BadLines, reporter: Reporter = SILENT) -> tuple[KGBuilder, KGBuilder, list[tuple[str, str]]]: ...


@dataclass
class IngestResult:
    """The workspace after ingest, whether it was already up to date, and the time taken."""

    workspace: Workspace
    up_to_date: bool
    seconds: float


def ingest(
    paths: list[Path],
    workdir: Path,
    *,
    format: str = "auto",
    skip_bad_lines: bool = False,
    force: bool = False,
    reporter: Reporter = SILENT,
) -> IngestResult:
    """Ingest two KG folders, or one benchmark folder, into the workspace ``workdir``.

    Re-running with unchanged sources and options writes nothing. A rebuild replaces the
    workspace atomically; it refuses to drop training runs made from the old input unless
    ``force``.
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    layout = find_input([Path(p) for p in paths], format)
    options = {
        "inputs": [str(Path(p).resolve()) for p in paths],
        "format": layout.format,
        "skip_bad_lines": skip_bad_lines,
    }
    recover_leftovers(workdir)
    check_target(workdir)
    old = read_manifest(workdir)
    sources = layout.sources()
    fingerprints = _fingerprint(sources, old if _same_options(old, options) else None)
    if old is not None and _same_options(old, options) and _same_sources(old.get("sources", {}), fingerprints):
        return IngestResult(Workspace(workdir, old), True, time.perf_counter() - start)
    _refuse_to_drop_runs(workdir, force)

    bad = BadLines(skip=skip_bad_lines)
    *builders, links = layout.read(bad, reporter)
    kgs, stats = [], []
    for name, folder in zip(KG_NAMES, layout.folders()):
        kg, kg_stats = build_kg(builders.pop(0))  # popped: each builder is freed once built
        if len(kg.triples) == 0:
            raise MMAlignError(f"{name} is empty: no relation triples (triples whose object is an entity)", folder)
        kgs.append(kg)
        stats.append(kg_stats)
    links = _checked_links(links, kgs, reporter)
    for summary in bad.summaries():
        reporter.warn(summary)
    _warn_stats(stats, reporter)
    seconds = time.perf_counter() - start
    manifest: dict[str, Any] = {
        "mmalign": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": fingerprints,
        "options": options,
        "counts": {"kg1": stats[0], "kg2": stats[1], "skipped_lines": bad.total},
        "seconds": round(seconds, 2),
    }
    workspace = Workspace.create(workdir, kgs[0], kgs[1], links, manifest)
    return IngestResult(workspace, False, time.perf_counter() - start)


def find_input(paths: list[Path], format: str = "auto") -> Input:
    """The input layout: one benchmark folder, or two KG folders (``format`` may force it)."""
    if format not in FORMAT_CHOICES:
        raise MMAlignError(f"unknown format {format!r}; choose one of {', '.join(FORMAT_CHOICES)}")
    for path in paths:
        if not path.exists():
            raise MMAlignError("does not exist", path=path)
        if not path.is_dir():
            raise MMAlignError("is not a folder (give a KG folder or a benchmark folder)", path=path)
    if len(paths) == 2:
        if format not in ("auto", "kg"):
            raise MMAlignError(f"--format {format} takes one benchmark folder, not two KG folders")
        return PairInput(KGFolderInput.find(paths[0]), KGFolderInput.find(paths[1]))
    if len(paths) != 1:
        raise MMAlignError(f"give two KG folders or one benchmark folder, not {len(paths)} paths")
    if format == "kg":
        raise MMAlignError("--format kg needs two KG folders")
    found = detect_format(paths[0]) if format == "auto" else format
    if found is None:
        raise MMAlignError(
            "not a benchmark folder (no ent_ids_1/ent_ids_2/triples_1/triples_2 or rel_triples_1/rel_triples_2);"
            " give two KG folders, or --format",
            path=paths[0],
        )
    return BenchmarkInput.find(paths[0], found)


@dataclass
class PairInput:
    """Two independent KG folders."""

    kg1: KGFolderInput
    kg2: KGFolderInput
    format: str = "kg"

    def folders(self) -> tuple[Path, Path]:
        return self.kg1.folder, self.kg2.folder

    def sources(self) -> dict[str, list[Path]]:
        return {"kg1": self.kg1.files(), "kg2": self.kg2.files()}

    def read(self, bad: BadLines, reporter: Reporter = SILENT) -> tuple[KGBuilder, KGBuilder, list[tuple[str, str]]]:
        return self.kg1.read(bad, reporter), self.kg2.read(bad, reporter), []


def build_kg(builder: KGBuilder) -> tuple[KGData, dict[str, int]]:
    """Turn one KG's vocabularies and id buffers into the workspace arrays.

    Also returns what was dropped or unmatched. Entities are renumbered into the documented
    order of first appearance (declared, relation triples, attributes, names, images).
    """
    raw = _rows(builder.triples, 3)
    attr_rows = _rows(builder.attribute_rows, 4)
    name_rows = _rows(builder.name_rows, 3)
    image_subjects = np.array([entity for entity, _ in builder.images], dtype=np.int32)
    keys = list(builder.entities)
    order = _first_appearance(
        len(keys),
        [np.arange(builder.declared, dtype=np.int32), raw[:, [0, 2]].ravel(), attr_rows[:, 0], name_rows[:, 0], image_subjects],
    )
    remap = np.empty(len(keys), dtype=np.int32)
    remap[order] = np.arange(len(keys), dtype=np.int32)
    entities = [keys[i] for i in order.tolist()]
    del keys

    renumbered = raw.copy()
    renumbered[:, 0], renumbered[:, 2] = remap[raw[:, 0]], remap[raw[:, 2]]
    triples = _unique_rows(renumbered, len(entities), len(builder.relations))
    del renumbered

    values, tags = list(builder.values), list(builder.tags)
    subjects, props, value_ids, tag_ids = remap[attr_rows[:, 0]], attr_rows[:, 1], attr_rows[:, 2], attr_rows[:, 3]
    kept = _first_of_each_row(subjects, props, value_ids, tag_ids)
    kept = kept[np.lexsort((kept, props[kept], subjects[kept]))]  # by entity, attribute, then file order

    names, extra_names = _pick_names(remap[name_rows[:, 0]], name_rows[:, 1], name_rows[:, 2], values, tags)
    images = _collect_images(builder, remap, entities)
    kg = KGData(
        entities=entities,
        relations=list(builder.relations),
        attributes=list(builder.attributes),
        triples=triples,
        attr_triples=np.column_stack([subjects[kept], props[kept]]).astype(np.int32).reshape(-1, 2),
        attr_values=[values[i] for i in value_ids[kept].tolist()],
        attr_datatypes=[tags[i] for i in tag_ids[kept].tolist()],
        names=names,
        images=images,
    )
    matched = {path for paths in images.values() for path in paths}
    stats = {
        "duplicate_triples": len(raw) - len(triples),
        "duplicate_attribute_triples": len(attr_rows) - len(kept),
        "extra_names": extra_names,
        "unmatched_images": len({path for _, path in builder.image_files} - matched),
    }
    return kg, stats


def _rows(buffer: array, width: int) -> np.ndarray:
    """A builder's flat ``array('i')`` as an int32 (N, width) view (no copy)."""
    assert buffer.itemsize == 4
    return np.frombuffer(buffer, dtype=np.int32).reshape(-1, width) if len(buffer) else np.empty((0, width), np.int32)


def _first_appearance(size: int, sequences: list[np.ndarray]) -> np.ndarray:
    """Ids ``0 .. size - 1`` ordered by first occurrence in the concatenated ``sequences``.

    Ids that occur nowhere (none should) follow in id order.
    """
    seen, first = np.unique(np.concatenate(sequences).astype(np.int32, copy=False), return_index=True)
    order = seen[np.argsort(first, kind="stable")]
    if len(order) < size:
        order = np.concatenate([order, np.setdiff1d(np.arange(size, dtype=order.dtype), order)])
    return order


def _first_of_each_row(*columns: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row of the given columns."""
    if len(columns[0]) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])  # stable: equal rows keep file order
    changed = np.zeros(len(order), dtype=bool)
    changed[0] = True
    for column in columns:
        ranked = column[order]
        changed[1:] |= ranked[1:] != ranked[:-1]
    return order[changed]


def _unique_rows(triples: np.ndarray, entities: int, relations: int) -> np.ndarray:
    """De-duplicated triples sorted by (head, relation, tail).

    Packing a row into one int64 makes this a plain integer sort, several times faster than
    ``np.unique(axis=0)``; graphs too large to pack fall back to the latter.
    """
    if len(triples) == 0:
        return triples
    if entities * entities * max(relations, 1) >= 2**62:
        return np.unique(triples, axis=0)
    h, r, t = (triples[:, i].astype(np.int64) for i in range(3))
    keys = (h * relations + r) * entities + t
    del h, r, t
    keys.sort()  # in place; np.unique's hash-based path is several times slower here
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    rows = np.empty((len(keys), 3), dtype=np.int32)
    rows[:, 0], rest = np.divmod(keys, relations * entities)
    rows[:, 1], rows[:, 2] = np.divmod(rest, entities)
    return rows


def _pick_names(
    entity_ids: np.ndarray, value_ids: np.ndarray, tag_ids: np.ndarray, values: list[str], tags: list[str]
) -> tuple[dict[int, str], int]:
    """One name per entity: the first English or untagged one, else the first of any language.

    Returns the names (entities in order of their first name) and how many other distinct
    names were set aside.
    """
    if len(entity_ids) == 0:
        return {}, 0
    rank = np.array([0 if tag.lower() in ("", "en") or tag.lower().startswith("en-") else 1 for tag in tags], np.int8)
    by_entity = np.lexsort((rank[tag_ids], entity_ids))  # stable: the first best name leads each entity's group
    starts = np.flatnonzero(np.r_[True, entity_ids[by_entity][1:] != entity_ids[by_entity][:-1]])
    chosen = by_entity[starts]  # aligned with np.unique(entity_ids)
    named, first = np.unique(entity_ids, return_index=True)
    names = {
        int(named[i]): values[int(value_ids[chosen[i]])] for i in np.argsort(first, kind="stable").tolist()
    }
    distinct = len(np.unique(entity_ids.astype(np.int64) * max(len(values), 1) + value_ids))
    return names, distinct - len(names)


def _collect_images(builder: KGBuilder, remap: np.ndarray, entities: list[str]) -> dict[int, list[str]]:
    """Explicit (entity, path) pairs, then folder images matched to entities by local name."""
    images: dict[int, list[str]] = {}
    for entity, path in builder.images:
        images.setdefault(int(remap[entity]), []).append(path)
    if builder.image_files:
        by_local: dict[str, list[int]] = {}
        for entity_id, key in enumerate(entities):
            by_local.setdefault(local_name(key), []).append(entity_id)
        for name, path in builder.image_files:
            for entity_id in by_local.get(name, ()):
                images.setdefault(entity_id, []).append(path)
    return {entity_id: list(dict.fromkeys(paths)) for entity_id, paths in images.items()}


def _checked_links(
    links: list[tuple[str, str]], kgs: list[KGData], reporter: Reporter
) -> list[tuple[str, str]]:
    """Gold pairs whose entities both exist; duplicates dropped; a warning counts the rest."""
    index1, index2 = kgs[0].entity_index(), kgs[1].entity_index()
    unique = list(dict.fromkeys(links))
    kept = [(a, b) for a, b in unique if a in index1 and b in index2]
    if len(kept) < len(unique):
        reporter.warn(f"{len(unique) - len(kept):,} gold pairs name entities not in the KGs and were dropped")
    return kept


def _warn_stats(stats: list[dict[str, int]], reporter: Reporter) -> None:
    messages = {
        "duplicate_triples": "duplicate relation triples removed",
        "duplicate_attribute_triples": "duplicate attribute triples removed",
        "extra_names": "entities' extra names set aside (one name per entity is kept)",
        "unmatched_images": "image files match no entity and were ignored",
    }
    for name, kg_stats in zip(KG_NAMES, stats):
        for key, message in messages.items():
            if kg_stats[key]:
                reporter.warn(f"{name}: {kg_stats[key]:,} {message}")


def _fingerprint(sources: dict[str, list[Path]], old: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Path, size, mtime and sha256 of every source file.

    A file whose size and mtime equal those recorded in ``old`` keeps its recorded hash, so
    checking an unchanged workspace does not re-read the data.
    """
    known = {
        entry["path"]: entry
        for group in (old or {}).get("sources", {}).values()
        for entry in group
    }
    result: dict[str, list[dict[str, Any]]] = {}
    for group, files in sources.items():
        entries = []
        for file in files:
            stat = file.stat()
            path = str(file.resolve())
            entry = {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            previous = known.get(path)
            if previous and previous.get("size") == entry["size"] and previous.get("mtime_ns") == entry["mtime_ns"]:
                entry["sha256"] = previous["sha256"]
            else:
                entry["sha256"] = file_sha256(file)
            entries.append(entry)
        result[group] = entries
    return result


def _same_options(manifest: dict[str, Any] | None, options: dict[str, Any]) -> bool:
    return manifest is not None and manifest.get("format") == FORMAT and manifest.get("options") == options


def _same_sources(old: dict[str, Any], new: dict[str, list[dict[str, Any]]]) -> bool:
    """Same files with the same content (mtime alone may differ: a touched file is unchanged)."""

    def key(groups: dict[str, Any]) -> dict[str, list[tuple[str, int, str]]]:
        return {g: [(e["path"], e["size"], e["sha256"]) for e in entries] for g, entries in groups.items()}

    return key(old) == key(new)


def _refuse_to_drop_runs(workdir: Path, force: bool) -> None:
    """A rebuild deletes the old workspace; training runs in it are the user's work."""
    runs = workdir / "runs"
    if not force and runs.is_dir() and any(runs.iterdir()):
        raise MMAlignError(
            "the workspace holds training runs made from the previous input, which a re-ingest of"
            " changed input would delete; move them away, use another -w, or pass --force",
            path=runs,
        )

