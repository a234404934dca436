"""The on-disk workspace: layout, atomic creation, reading, manifest and summary counts.

A workspace is a folder a user can inspect (see docs/design.md, "Workspace")::

    manifest.json  kg1/ kg2/  links.tsv  features/  runs/

Each ``kgN/`` holds vocabularies as text (``entities.txt``, ``relations.txt``,
``attributes.txt``: line i = id i), the relation triples and attribute triples as int32
``.npy`` arrays, and the free text (attribute values, names, image paths) as escaped TSV.

Creation is atomic: everything is written into a sibling ``<name>.tmp-<pid>`` folder that is
renamed into place only when complete, so readers see the old workspace or the new one and
an interrupted ingest leaves nothing half-written. This module knows nothing of how the data
was parsed; :mod:`mmalign.ingest` decides what to write and when.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mmalign.errors import MMAlignError

FORMAT = 1
"""Workspace layout version; a workspace of another version is rebuilt by ``ingest``."""

MANIFEST = "manifest.json"
LINKS = "links.tsv"
FEATURES = "features"
KG_NAMES = ("kg1", "kg2")

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPE_RE = re.compile(r"[\\\t\n\r]")
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_UNESCAPE_RE = re.compile(r"\\(.)")


def escape(text: str) -> str:
    """Make free text safe for one TSV field (backslash, tab, newline, carriage return)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text)


def unescape(text: str) -> str:
    """Inverse of :func:`escape`."""
    if "\\" not in text:
        return text
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), text)


@dataclass
class KGData:
    """One knowledge graph as stored in the workspace; ids are line numbers of the vocabularies.

    ``triples`` is int32 (T, 3) (head, relation, tail), de-duplicated and sorted;
    ``attr_triples`` is int32 (A, 2) (entity, attribute), row i described by ``attr_values[i]``
    and ``attr_datatypes[i]`` (datatype IRI, ``@lang`` for language-tagged text, or empty).
    """

    entities: list[str]
    relations: list[str]
    attributes: list[str]
    triples: np.ndarray
    attr_triples: np.ndarray
    attr_values: list[str]
    attr_datatypes: list[str]
    names: dict[int, str] = field(default_factory=dict)
    images: dict[int, list[str]] = field(default_factory=dict)
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def entity_index(self) -> dict[str, int]:
        """Entity key -> id (built once, then cached)."""
        if self._index is None:
            self._index = {key: i for i, key in enumerate(self.entities)}
        return self._index

    def counts(self) -> dict[str, int]:
        """The sizes shown in the summary table and kept in the manifest."""
        return {
            "entities": len(self.entities),
            "relations": len(self.relations),
            "relation_triples": int(len(self.triples)),
            "self_loops": int(np.count_nonzero(self.triples[:, 0] == self.triples[:, 2])),
            "attribute_triples": int(len(self.attr_triples)),
            "attributes": len(self.attributes),
            "entities_with_attributes": int(len(np.unique(self.attr_triples[:, 0]))),
            "names": len(self.names),
            "images": sum(len(paths) for paths in self.images.values()),
            "entities_with_images": len(self.images),
        }

    def write(self, folder: Path) -> None:
        """Write the files of one ``kgN/`` folder (the caller makes it atomic)."""
        folder.mkdir(parents=True)
        _write_lines(folder / "entities.txt", self.entities)
        _write_lines(folder / "relations.txt", self.relations)
        _write_lines(folder / "attributes.txt", self.attributes)
        np.save(folder / "triples.npy", np.ascontiguousarray(self.triples, dtype=np.int32))
        np.save(folder / "attribute_triples.npy", np.ascontiguousarray(self.attr_triples, dtype=np.int32))
        _write_lines(
            folder / "attribute_values.tsv",
            (f"{escape(v)}\t{escape(d)}" for v, d in zip(self.attr_values, self.attr_datatypes)),
        )
        _write_lines(folder / "names.tsv", (f"{self.entities[i]}\t{escape(n)}" for i, n in self.names.items()))
        _write_lines(
            folder / "images.tsv",
            (f"{self.entities[i]}\t{escape(p)}" for i, paths in self.images.items() for p in paths),
        )

    @classmethod
    def read(cls, folder: Path) -> KGData:
        """Load one ``kgN/`` folder written by :meth:`write`."""
        entities = _read_lines(folder / "entities.txt")
        index = {key: i for i, key in enumerate(entities)}
        values, datatypes = [], []
        for row in _read_lines(folder / "attribute_values.tsv"):
            value, datatype = row.split("\t")
            values.append(unescape(value))
            datatypes.append(unescape(datatype))
        names = {}
        for row in _read_lines(folder / "names.tsv"):
            key, name = row.split("\t")
            names[index[key]] = unescape(name)
        images: dict[int, list[str]] = {}
        for row in _read_lines(folder / "images.tsv"):
            key, path = row.split("\t")
            images.setdefault(index[key], []).append(unescape(path))
        data = cls(
            entities=entities,
            relations=_read_lines(folder / "relations.txt"),
            attributes=_read_lines(folder / "attributes.txt"),
            triples=np.load(folder / "triples.npy"),
            attr_triples=np.load(folder / "attribute_triples.npy"),
            attr_values=values,
            attr_datatypes=datatypes,
            names=names,
            images=images,
        )
        data._index = index
        return data


class Workspace:
    """An ingested pair of KGs on disk. Open with :meth:`open`, create with :meth:`create`.

    ``kg1``/``kg2`` are loaded on first access, so reading the manifest (``mmalign info``,
    :meth:`record_feature`) stays cheap.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path) -> Workspace:
        """Open an existing workspace; a clear error when ``path`` is not one."""
        path = Path(path)
        manifest = read_manifest(path)
        if manifest is None:
            raise MMAlignError("no workspace here; run `mmalign ingest KG1 KG2 -w FOLDER` first", path=path)
        return cls(path, manifest)

    @cached_property
    def kg1(self) -> KGData:
        return KGData.read(self.path / "kg1")

    @cached_property
    def kg2(self) -> KGData:
        return KGData.read(self.path / "kg2")

    @cached_property
    def links(self) -> list[tuple[str, str]]:
        """Gold pairs (KG1 key, KG2 key) found in a benchmark folder; empty when none."""
        path = self.path / LINKS
        if not path.is_file():
            return []
        return [tuple(row.split("\t", 1)) for row in _read_lines(path)]  # type: ignore[misc]

    @property
    def features_dir(self) -> Path:
        """``features/``, created on demand (feature steps keep their files there)."""
        folder = self.path / FEATURES
        folder.mkdir(exist_ok=True)
        return folder

    def record_feature(self, kind: str, info: dict[str, Any]) -> None:
        """Atomically set ``manifest["features"][kind] = info`` (re-read first: others may write)."""
        from mmalign.atomic import atomic_write_json

        manifest = read_manifest(self.path) or self.manifest
        manifest.setdefault("features", {})[kind] = info
        atomic_write_json(self.path / MANIFEST, manifest)
        self.manifest = manifest

    @classmethod
    def create(
        cls,
        path: str | Path,
        kg1: KGData,
        kg2: KGData,
        links: list[tuple[str, str]],
        manifest: dict[str, Any],
    ) -> Workspace:
        """Write a complete workspace at ``path``, replacing any previous one atomically.

        ``manifest`` gets ``format`` and ``counts`` filled in here. An existing folder that is
        not a workspace (no manifest, not empty) is never replaced (:func:`check_target`).
        """
        path = Path(path)
        check_target(path)
        manifest = {"format": FORMAT, **manifest}
        counts = dict(manifest.get("counts", {}))
        for name, kg in zip(KG_NAMES, (kg1, kg2)):
            counts[name] = {**kg.counts(), **counts.get(name, {})}
        counts["links"] = len(links)
        manifest["counts"] = counts
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{path.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            kg1.write(tmp / "kg1")
            kg2.write(tmp / "kg2")
            if links:
                _write_lines(tmp / LINKS, (f"{a}\t{b}" for a, b in links))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            _swap_into_place(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, manifest)


def check_target(path: Path) -> None:
    """Refuse a workspace path that holds something else: it may be the user's data."""
    if path.exists() and not path.is_dir():
        raise MMAlignError("exists and is not a folder; choose another workspace with -w", path=path)
    if path.is_dir() and read_manifest(path) is None and any(path.iterdir()):
        raise MMAlignError(
            "exists, is not empty and is not an mmalign workspace; choose another folder with -w", path=path
        )


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of the workspace at ``path``, or None when there is none."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise MMAlignError(f"damaged manifest ({error.msg}); re-run `mmalign ingest`", file, error.lineno) from None


def recover_leftovers(path: Path) -> None:
    """Undo what a killed ingest left beside ``path``: its temp folder goes; if it died between
    the two renames of the swap, the previous workspace is put back (it may hold runs)."""
    path = Path(path)
    for sibling in sorted(path.parent.glob(f"{glob.escape(path.name)}.*-*")):
        kind, _, pid = sibling.name[len(path.name) + 1 :].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.rename(sibling, path)
        else:
            shutil.rmtree(sibling, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``; an old ``path`` is moved aside first and deleted after."""
    if not path.exists():
        os.rename(new, path)
        return
    old = path.parent / f"{path.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_lines(path: Path, lines: Any) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []
