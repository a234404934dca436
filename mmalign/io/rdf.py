"""RDF files: N-Triples and N-Quads parsed line by line here, every other syntax by rdflib.

A triple whose object is an IRI or blank node is a relation triple; one whose object is a
literal is an attribute (lexical value plus datatype IRI, ``@lang`` for language-tagged
text, empty for plain and ``xsd:string`` literals). Literals of the label predicates
(``rdfs:label``, ``skos:prefLabel``, ``foaf:name``, ``schema:name``) are names as well.
Graph names of quads are ignored. Blank nodes become entities ``_:FILE#LABEL``, scoped to
their file; rdflib invents random labels, so for syntaxes other than N-Triples/N-Quads they
are renumbered ``b1, b2, ...`` in parse order. Triples keep the order of the file in every
syntax, so entity ids are the same on every run.

The hand-written N-Triples parser is ~10x faster than rdflib's and names the exact line of
a problem. It checks IRIs as written: spaces, control characters, ``<>"{}|^`` and a
backtick are bad, but ``\\u0022``-style escapes are decoded and accepted (real DBpedia
dumps use them for IRIs holding quotes). IRIs that rdflib already decoded cannot be told
apart from escaped ones, so there only whitespace, controls and ``<>{}|^\\`` are refused.
"""

from __future__ import annotations

import io
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from xml.sax import SAXParseException

from mmalign.io.records import BadLines, KGRecords
from mmalign.io.text import read_bytes, read_lines, strip_gz

RDF_FORMATS = {
    ".nt": "nt",
    ".nq": "nquads",
    ".ttl": "turtle",
    ".n3": "n3",
    ".rdf": "xml",
    ".xml": "xml",
    ".owl": "xml",
    ".trig": "trig",
    ".jsonld": "json-ld",
}
"""File extension (after removing ``.gz``) -> rdflib format name."""

NAME_PREDICATES = frozenset(
    {
        "http://www.w3.org/2000/01/rdf-schema#label",
        "http://www.w3.org/2004/02/skos/core#prefLabel",
        "http://xmlns.com/foaf/0.1/name",
        "http://schema.org/name",
        "https://schema.org/name",
    }
)
XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def rdf_format(path: Path) -> str | None:
    """rdflib's format name for an RDF file, None when the extension is not an RDF syntax."""
    return RDF_FORMATS.get(Path(strip_gz(path)).suffix.lower())


def read_rdf(path: Path, records: KGRecords, bad: BadLines) -> None:
    """Add the triples of one RDF file to ``records``."""
    fmt = rdf_format(path)
    if fmt in ("nt", "nquads"):
        _read_ntriples(path, records, bad, quads=fmt == "nquads")
    else:
        _read_with_rdflib(path, fmt or "turtle", records, bad)


def _add(records: KGRecords, subject: str, predicate: str, obj: str, literal: bool, datatype: str) -> None:
    if not literal:
        records.triples.append((subject, predicate, obj))
        return
    if datatype == XSD_STRING:
        datatype = ""
    records.attributes.append((subject, predicate, obj, datatype))
    if predicate in NAME_PREDICATES:
        records.names.append((subject, obj, datatype[1:] if datatype.startswith("@") else ""))


# ---- N-Triples / N-Quads -------------------------------------------------------------

_LABEL = r"_:((?:[^\s<>\".]|\.(?=[^\s<>\".]))+)"
_LITERAL = r"\"((?:[^\"\\]|\\.)*)\"(?:\^\^<([^>]*)>|@([A-Za-z]+(?:-[A-Za-z0-9]+)*))?"
_STATEMENT = (
    rf"[ \t]*(?:<([^>]*)>|{_LABEL})[ \t]*<([^>]*)>[ \t]*(?:<([^>]*)>|{_LABEL}|{_LITERAL})[ \t]*"
    r"{graph}\.[ \t]*(?:#.*)?"
)
_NT = re.compile(_STATEMENT.format(graph=""))
_NQ = re.compile(_STATEMENT.format(graph=rf"(?:(?:<[^>]*>|{_LABEL})[ \t]*)?"))

_BAD_IRI_CHAR = re.compile(r"[\x00-\x20<>\"{}|^`]|\\(?!u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_UCHAR = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([tbnrf\"'\\])|(.?))")
_ECHARS = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_CONTROL = re.compile(r"[\x00-\x20]")


class _Bad(ValueError):
    """A problem on the current line (turned into a BadLines call with its line number)."""


def _read_ntriples(path: Path, records: KGRecords, bad: BadLines, quads: bool) -> None:
    statement = _NQ if quads else _NT
    expected = "<subject> <predicate> <object> [<graph>] ." if quads else "<subject> <predicate> <object> ."
    scope = f"_:{path.name}#"
    checked: dict[str, str] = {}  # IRIs repeat a lot: check and decode each one once

    def iri(raw: str) -> str:
        value = checked.get(raw)
        if value is None:
            value = checked[raw] = _iri(raw)
        return value

    for number, line in enumerate(read_lines(path), 1):
        match = statement.fullmatch(line)
        if match is None:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                bad(f"not an N-{'Quads' if quads else 'Triples'} statement (expected {expected})", path, number)
            continue
        s_iri, s_label, p_iri, o_iri, o_label, lexical, datatype, lang = match.groups()[:8]
        try:
            subject = iri(s_iri) if s_iri is not None else scope + s_label
            predicate = iri(p_iri)
            if lexical is None:
                _add(records, subject, predicate, iri(o_iri) if o_iri is not None else scope + o_label, False, "")
            else:
                kind = f"@{lang}" if lang else (iri(datatype) if datatype else "")
                _add(records, subject, predicate, _unescape_literal(lexical), True, kind)
        except _Bad as problem:
            bad(str(problem), path, number)


def _iri(raw: str) -> str:
    """Check an IRI as written and decode its ``\\uXXXX`` escapes."""
    bad_char = _BAD_IRI_CHAR.search(raw)
    if bad_char is not None:
        raise _Bad(f"bad IRI <{raw}>: character {bad_char.group()[:1]!r} is not allowed")
    if not _SCHEME.match(raw):
        raise _Bad(f"bad IRI <{raw}>: not absolute (no scheme such as http:)")
    if "\\" not in raw:
        return raw
    decoded = _combine_surrogates(_UCHAR.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), raw))
    if _CONTROL.search(decoded):
        raise _Bad(f"bad IRI <{raw}>: escapes decode to a space or control character")
    return decoded


def _unescape_literal(raw: str) -> str:
    if "\\" not in raw:
        return raw

    def one(match: re.Match[str]) -> str:
        code, long_code, char, other = match.groups()
        if code or long_code:
            return chr(int(code or long_code, 16))
        if char:
            return _ECHARS[char]
        raise _Bad(f"bad escape \\{other} in a literal")

    return _combine_surrogates(_ESCAPE.sub(one, raw))


def _combine_surrogates(text: str) -> str:
    """Join UTF-16 surrogate pairs written as two ``\\uXXXX`` escapes; lone ones are bad."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise _Bad("bad \\u escape: lone UTF-16 surrogate") from None


# ---- other syntaxes through rdflib -------------------------------------------------

_RDFLIB_BAD_IRI = re.compile(r"[\x00-\x20<>{}|^\\]")


def _read_with_rdflib(path: Path, fmt: str, records: KGRecords, bad: BadLines) -> None:
    import rdflib  # imported here: N-Triples-only inputs never pay for it

    store = _store_in_parse_order()
    dataset = rdflib.Dataset(store=store)
    data = read_bytes(path)
    try:
        with _quiet_rdflib():
            dataset.parse(source=io.BytesIO(data), format=fmt, publicID=path.resolve().as_uri())
    except Exception as error:  # rdflib raises many unrelated types; all mean "cannot parse"
        message, line = _parse_error(error)
        bad(f"cannot parse as {fmt}: {message}", path, line)
        return
    labels: dict[object, str] = {}
    scope = f"_:{path.name}#"

    def term(node: object) -> str:
        if isinstance(node, rdflib.BNode):
            return labels.setdefault(node, f"{scope}b{len(labels) + 1}")
        text = str(node)
        bad_char = _RDFLIB_BAD_IRI.search(text)
        if bad_char is not None:
            raise _Bad(f"bad IRI <{text}>: character {bad_char.group()!r} is not allowed")
        return text

    for s, p, o in store.added:
        try:
            if isinstance(o, rdflib.Literal):
                kind = f"@{o.language}" if o.language else str(o.datatype or "")
                _add(records, term(s), term(p), str(o), True, kind)
            else:
                _add(records, term(s), term(p), term(o), False, "")
        except _Bad as problem:
            bad(str(problem), path)


def _store_in_parse_order() -> Any:
    """An rdflib memory store that also lists triples as parsed (duplicates included).

    rdflib's own iteration order follows string hashes, which change between processes;
    entity ids must not, and blank nodes get their numbers in this order.
    """
    from rdflib.plugins.stores.memory import Memory

    class OrderedMemory(Memory):
        def __init__(self) -> None:
            super().__init__()
            self.added: list[tuple[Any, Any, Any]] = []

        def add(self, triple: Any, context: Any, quoted: bool = False) -> None:
            if not quoted:
                self.added.append(triple)
            super().add(triple, context, quoted)

    return OrderedMemory()


def _parse_error(error: Exception) -> tuple[str, int | None]:
    """A one-line message and the 1-based line number, from whichever parser failed."""
    if isinstance(error, SAXParseException):
        return error.getMessage(), error.getLineNumber()
    if isinstance(error, json.JSONDecodeError):
        return error.msg, error.lineno
    why = getattr(error, "_why", None)  # rdflib's notation3 BadSyntax (Turtle, TriG, N3)
    lines = getattr(error, "lines", None)
    if why is not None and isinstance(lines, int):
        return str(why), lines + 1
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, None


@contextmanager
def _quiet_rdflib() -> Iterator[None]:
    """rdflib logs a warning per odd IRI it accepts; our own checks report what matters."""
    logger = logging.getLogger("rdflib")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
