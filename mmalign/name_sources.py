"""Where an entity's name comes from, and the text every name encoder sees.

Per entity, first match wins:

1. an extra names file (``--names-file``, ``entity<TAB>name``, applied to both KGs);
2. the name recorded at ingest (RDF labels, ``names.tsv``), except with ``names="iri"``;
3. with ``names="recorded+iri"`` or ``"iri"``, the decoded local name of the entity's IRI
   (``http://dbpedia.org/resource/Andy_Griffith`` → ``Andy Griffith``).

``iri`` is how names are used in their own language: a DBP15K folder ingested with its
machine-translated ``names_translated.tsv`` is trained on its IRIs' titles
(``http://zh.dbpedia.org/resource/阿卜杜拉·居尔`` → ``阿卜杜拉·居尔``) with no re-ingest, and a
multilingual encoder (``e5``) relates them to the other KG's names.

How many entities of each KG took each source is reported in ``info["sources"]``. The names
training encodes and the names ``mmalign features names`` caches come from the same
:func:`workspace_names`, so a cache made by one is found by the other.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote

from mmalign.errors import MMAlignError
from mmalign.report import SILENT, Reporter
from mmalign.settings import Choice


class NamesMode(Choice):
    """Which names the name modality encodes (``--names``); ``none``: no name modality."""

    NONE = "none"  # no name modality (the paper's setting)
    RECORDED = "recorded"  # names the input gave (labels, names.tsv)
    RECORDED_IRI = "recorded+iri"  # and the IRI's local name where none was given
    # Only the IRI's local name, recorded names ignored: names in their own language (a DBP15K
    # folder ingested with its machine-translated names, trained without them).
    IRI = "iri"

    @classmethod
    def label(cls, key: str) -> str:
        return "names mode"


SOURCES = ("names_file", "recorded", "iri", "none")

# Apostrophes join their neighbours instead of splitting words: "Can't" and "cant" (DBP15K's
# translated names drop punctuation) must give the same n-grams.
_APOSTROPHES = {ord(c): None for c in "'\u2019\u02bc\u2018`\u00b4"}
_IRI_START = re.compile(r"^(?:https?://[^/#]+[/#]|urn:)", re.IGNORECASE)


def clean_name(name: str) -> str:
    """NFKC, invisible characters dropped, whitespace collapsed: the text a model should see.

    Control and format characters (zero-width spaces occur in DBP15K names) carry no meaning
    but would change every n-gram and token that touches them.
    """
    text = unicodedata.normalize("NFKC", name)
    return " ".join("".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")).split())


def normalize_name(name: str) -> str:
    """The comparison form used by the ``char`` encoder: case, accents and punctuation folded.

    Names of one entity differ across KGs mostly by case, diacritics (``Gül``/``gul``) and
    punctuation (``Denton, Texas``/``denton texas``); folding them makes equal names give equal
    n-grams. Letters of other scripts are kept as they are.
    """
    text = unicodedata.normalize("NFKD", clean_name(name).casefold()).translate(_APOSTROPHES)
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Mn":
            continue
        kept.append(" " if category[0] in "PSZ" else ch)
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())


def iri_local_name(key: str) -> str | None:
    """The name an IRI spells in its last segment, or None when the key is no IRI.

    ``http://dbpedia.org/resource/Andy_Griffith`` → ``Andy Griffith``: the part after the last
    ``/`` or ``#`` (``:`` for ``urn:``), percent-decoded, ``_`` read as a space. Linked-data
    ``…/resource/`` IRIs (DBpedia) keep everything after ``/resource/``, since their titles may
    hold a ``/`` (``HIV/AIDS``, ``Face/Off``). Only
    ``http(s)://`` and ``urn:`` keys count as IRIs: other keys (Freebase MIDs such as
    ``/m/01m4kpp``, TSV tokens) are identifiers whose text is not a name. Opaque local names
    (Wikidata's ``Q42``) are taken as they are.
    """
    start = _IRI_START.match(key)
    if start is None:
        return None
    path = key[start.end() :].rstrip("/#")  # after the authority (or ``urn:``)
    head, resource, title = path.partition("resource/")
    if resource and (not head or head.endswith("/")) and "#" not in title:
        local = title
    else:
        separators = ":" if key[:4].lower() == "urn:" else "/#"
        local = path[max(path.rfind(sep) for sep in separators) + 1 :]
    return clean_name(unquote(local).replace("_", " ")) or None


def read_names_file(path: str | Path, reporter: Reporter = SILENT) -> dict[str, str]:
    """Read an ``entity<TAB>name`` file (UTF-8, no header) into a dict.

    Why a separate file: benchmark folders (DBP15K) ship translated names beside the graph, not
    inside it. Blank lines are skipped; a line without a tab is an error with its number; when
    an entity is named twice the first name is kept and the repeats are counted in a warning.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as error:
        raise MMAlignError(f"cannot read the names file: {error.strerror}", path=path) from None
    names: dict[str, str] = {}
    repeats = 0
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise MMAlignError("not UTF-8 text", path=path, line=number) from None
        if not line.strip():
            continue
        key, tab, name = line.partition("\t")
        if not tab or not key:
            raise MMAlignError("expected `entity<TAB>name`", path=path, line=number)
        if key in names:
            repeats += 1
        else:
            names[key] = name
    if repeats:
        reporter.warn(f"{path}: {repeats} entities named more than once; the first name of each is used")
    return names


def resolve_names(
    entities: Sequence[str],
    recorded: Mapping[int, str],
    mode: str,
    extra: Mapping[str, str] | None = None,
) -> tuple[list[str | None], dict[str, int]]:
    """Each entity's name (cleaned) or None, and how many entities took each source.

    ``entities`` are one KG's keys in local id order, ``recorded`` its ingest names by id. A name
    that normalises to nothing (only punctuation) counts as no name, so every encoder sees the
    same set of named entities.
    """
    mode = NamesMode.parse(mode, "names").value
    counts = dict.fromkeys(SOURCES, 0)
    names: list[str | None] = []
    for local_id, key in enumerate(entities):
        chosen, source = None, "none"
        if mode != "none":
            candidates = (
                ("names_file", extra.get(key) if extra else None),
                ("recorded", recorded.get(local_id) if mode != "iri" else None),
                ("iri", iri_local_name(key) if mode != "recorded" else None),
            )
            for source_name, candidate in candidates:
                if candidate is not None and normalize_name(candidate):
                    chosen, source = clean_name(candidate), source_name
                    break
        counts[source] += 1
        names.append(chosen)
    return names, counts


def workspace_names(
    workspace: Any, mode: str, names_file: str | Path | None = None, reporter: Reporter = SILENT
) -> tuple[list[str | None], dict[str, Any]]:
    """Every entity's name (KG1 then KG2, None where it has none) and facts for the summary.

    ``workspace`` is a :class:`~mmalign.workspace.Workspace` (or anything with ``kg1``/``kg2``
    holding ``entities`` and ``names``). The facts: ``mode``, ``sources`` per KG and, with a
    names file, its path, entry count and how many of its entities are in neither KG (warned).
    """
    extra = None
    info: dict[str, Any] = {"mode": mode}
    if names_file:
        extra = read_names_file(names_file, reporter)
        known = set(workspace.kg1.entities) | set(workspace.kg2.entities)
        unknown = sum(1 for key in extra if key not in known)
        info["names_file"] = {"path": str(names_file), "entries": len(extra), "unknown": unknown}
        if unknown:
            reporter.warn(f"{names_file}: {unknown} of {len(extra)} entities are in neither KG")
    names1, counts1 = resolve_names(workspace.kg1.entities, workspace.kg1.names, mode, extra)
    names2, counts2 = resolve_names(workspace.kg2.entities, workspace.kg2.names, mode, extra)
    info["sources"] = {"kg1": counts1, "kg2": counts2}
    return names1 + names2, info
