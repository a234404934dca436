"""RDF files in every syntax, parsed by pyoxigraph and streamed into a :class:`KGBuilder`.

pyoxigraph (Rust) reads N-Triples, N-Quads, Turtle, TriG, N3, RDF/XML and JSON-LD as a
stream, from plain or compressed files (``.gz .bz2 .xz``); nothing holds the whole file or a
Python object per triple. A triple whose object is an IRI or blank node is a relation
triple; one whose object is a literal is an attribute (lexical value plus datatype IRI,
``@lang`` for language-tagged text, empty for plain and ``xsd:string`` literals). Literals
of the label predicates (``rdfs:label``, ``skos:prefLabel``, ``foaf:name``,
``schema:name``) are names as well. Graph names of quads are ignored. Blank nodes become
entities ``_:FILE#LABEL``, scoped to their file; in syntaxes other than N-Triples/N-Quads
the parser invents labels, so there they are renumbered ``b1, b2, ...`` in parse order.
Triples keep the order of the file, so entity ids are the same on every run.

IRIs are parsed leniently: DBpedia dumps hold IRIs with ``"``, backticks and the like
(written as ``\\u0022`` escapes), which RFC 3987 forbids. Such IRIs are kept as written and
counted in one warning per file. IRIs with whitespace or control characters, and relative
IRIs in N-Triples/N-Quads, are bad lines.

Errors name the line (and column where the parser gives one). N-Triples and N-Quads are
parsed in blocks of lines; a block holding a problem is re-read line by line, so with
``--skip-bad-lines`` exactly the bad lines are skipped. In the other syntaxes a syntax
error skips what pyoxigraph's error recovery skips (usually the statement).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import numpy as np
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, RdfFormat, parse

from mmalign.io.records import BadLines, KGBuilder, Mark, intern
from mmalign.io.text import InputStream, open_input, strip_compression
from mmalign.report import SILENT, Reporter

RDF_FORMATS = {
    ".nt": RdfFormat.N_TRIPLES,
    ".nq": RdfFormat.N_QUADS,
    ".ttl": RdfFormat.TURTLE,
    ".n3": RdfFormat.N3,
    ".rdf": RdfFormat.RDF_XML,
    ".xml": RdfFormat.RDF_XML,
    ".owl": RdfFormat.RDF_XML,
    ".trig": RdfFormat.TRIG,
    ".jsonld": RdfFormat.JSON_LD,
}
"""File extension (after removing a compression suffix) -> pyoxigraph format."""

LINE_FORMATS = (RdfFormat.N_TRIPLES, RdfFormat.N_QUADS)
"""Syntaxes with one statement per line: parsed in blocks, re-read by line around an error."""

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

BLOCK_BYTES = 1 << 23
"""N-Triples/N-Quads are handed to the parser in blocks of whole lines of about this size."""
PROGRESS_BYTES = 1 << 25
"""Files at least this large (on disk) get a progress bar."""

_BAD_IRI_CHAR = re.compile(r"[\x00-\x20\x7f]")
_ODD_IRI_CHARS = re.compile(r"[<>\"{}|^`\\]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_PARSER_PREFIX = re.compile(r"^Parser error (?:at|between) [^:]*: ")


def rdf_format(path: Path) -> RdfFormat | None:
    """pyoxigraph's format for an RDF file, None when the extension is not an RDF syntax."""
    return RDF_FORMATS.get(Path(strip_compression(path)).suffix.lower())


def read_rdf(path: Path, builder: KGBuilder, bad: BadLines, reporter: Reporter = SILENT) -> None:
    """Add the triples of one RDF file to ``builder``."""
    reader = _FileReader(path, rdf_format(path) or RdfFormat.TURTLE, builder, bad)
    with open_input(path) as source, _progress(reporter, source, builder) as tick:
        if reader.format in LINE_FORMATS:
            reader.read_lines(source.stream, tick)
        else:
            reader.read_stream(source.stream, tick)
    warning = reader.odd_iris_warning()
    if warning:
        reporter.warn(warning)


class _Bad(ValueError):
    """A term that cannot be kept (turned into a BadLines call with its line number)."""


class _FileReader:
    """The state of reading one file: blank-node labels, odd IRIs, where the file started."""

    def __init__(self, path: Path, format: RdfFormat, builder: KGBuilder, bad: BadLines) -> None:
        self.path = path
        self.format = format
        self.builder = builder
        self.bad = bad
        self.scope = f"_:{path.name}#"
        self.labels: dict[str, str] | None = None if format in LINE_FORMATS else {}
        self.start = builder.mark()
        self.literal_tags: dict[tuple[str, str | None] | NamedNode, int] = {}
        """A literal's (language, direction) or datatype node -> tag id in the builder."""

    # ---- terms ----------------------------------------------------------------------------

    def blank(self, node: object) -> str:
        """The entity key of a blank node (anything else that is not an IRI is refused)."""
        if type(node) is not BlankNode:
            raise _Bad(f"unsupported term {node} (RDF 1.2 triple terms are not kept)")
        if self.labels is None:
            return self.scope + node.value
        label = self.labels.get(node.value)
        if label is None:
            label = self.labels[node.value] = f"{self.scope}b{len(self.labels) + 1}"
        return label

    def check(self, node: object, key: str) -> None:
        """Refuse an IRI that cannot be an entity key; note the merely odd ones."""
        if type(node) is not NamedNode:
            return
        bad_char = _BAD_IRI_CHAR.search(key)
        if bad_char is not None:
            raise _Bad(f"bad IRI <{key}>: {'space' if bad_char.group() == ' ' else 'control character'} not allowed")
        if not _SCHEME.match(key):
            raise _Bad(f"bad IRI <{key}>: not absolute (no scheme such as http:)")
        if _ODD_IRI_CHARS.search(key):
            self.builder.odd_iris[key] = None

    def add(self, quads: Iterable[Quad]) -> None:
        """Add parsed quads to the builder; the hot loop of ingest.

        Raises ``_Bad`` for a quad that cannot be kept, before anything of it is added.
        """
        b = self.builder
        entities, relations, attributes, values = b.entities, b.relations, b.attributes, b.values
        entity, relation, attribute, value = entities.get, relations.get, attributes.get, values.get
        literal_tag = self.literal_tags.get
        add_triple, add_attribute, add_name = b.triples.extend, b.attribute_rows.extend, b.name_rows.extend
        blank, check = self.blank, self.check
        for quad in quads:
            s, p, o = quad.subject, quad.predicate, quad.object
            s_key = s.value if type(s) is NamedNode else blank(s)
            p_key = p.value
            if type(o) is Literal:
                s_id, a_id = entity(s_key), attribute(p_key)
                if s_id is None or a_id is None:
                    check(s, s_key)
                    check(p, p_key)
                    s_id, a_id = intern(entities, s_key), intern(attributes, p_key)
                text = o.value
                v_id = value(text)
                if v_id is None:
                    v_id = values[text] = len(values)
                language = o.language
                kind = (language, o.direction) if language else o.datatype
                t_id = literal_tag(kind)
                if t_id is None:
                    t_id = self.tag_id(kind)
                add_attribute((s_id, a_id, v_id, t_id))
                if p_key in NAME_PREDICATES:
                    add_name((s_id, v_id, intern(b.tags, language or "")))
            else:
                o_key = o.value if type(o) is NamedNode else blank(o)
                s_id, r_id, o_id = entity(s_key), relation(p_key), entity(o_key)
                if s_id is None or r_id is None or o_id is None:
                    check(s, s_key)
                    check(p, p_key)
                    check(o, o_key)
                    s_id, r_id, o_id = intern(entities, s_key), intern(relations, p_key), intern(entities, o_key)
                add_triple((s_id, r_id, o_id))

    def tag_id(self, kind: tuple[str, str | None] | NamedNode) -> int:
        """The builder's tag id for a literal's (language, direction) or datatype, remembered per file."""
        if isinstance(kind, tuple):
            language, direction = kind
            tag = f"@{language}--{direction}" if direction else f"@{language}"
        else:
            tag = "" if kind.value == XSD_STRING else kind.value
        self.literal_tags[kind] = found = intern(self.builder.tags, tag)
        return found

    def rollback(self, mark: Mark) -> None:
        """Undo the builder back to ``mark``; cached tag ids may point past it, so they go too."""
        self.builder.rollback(mark)
        self.literal_tags.clear()

    # ---- N-Triples / N-Quads: blocks of lines ------------------------------------------------

    def read_lines(self, stream: IO[bytes], tick: Callable[[], None]) -> None:
        first_line = 1
        for block in _blocks(stream):
            mark = self.builder.mark()
            try:
                self.add(parse(input=block, format=self.format, lenient=True))
            except (SyntaxError, _Bad):
                self.rollback(mark)
                self.read_one_by_one(block, first_line)
            first_line += block.count(b"\n")
            tick()

    def read_one_by_one(self, block: bytes, first_line: int) -> None:
        """Re-read a block holding a problem line by line: each bad line is reported and skipped."""
        for number, line in enumerate(block.split(b"\n"), first_line):
            if not line.strip():
                continue
            mark = self.builder.mark()
            try:
                self.add(parse(input=line + b"\n", format=self.format, lenient=True))
            except SyntaxError as error:
                self.rollback(mark)
                self.bad(_syntax_message(self.format, error), self.path, number, error.offset if error.lineno == 1 else None)
            except _Bad as problem:
                self.rollback(mark)
                self.bad(str(problem), self.path, number)

    # ---- every other syntax: one stream --------------------------------------------------------

    def read_stream(self, stream: IO[bytes], tick: Callable[[], None]) -> None:
        feed = _Feed(stream, tick, by_line=self.format == RdfFormat.RDF_XML)
        quads = parse(input=feed, format=self.format, base_iri=self.path.resolve().as_uri(), lenient=True)
        while True:
            try:
                self.add(quads)
                return
            except SyntaxError as error:  # pyoxigraph resumes after the error on the next call
                line, column = error.lineno, error.offset
                if line is None and feed.by_line:  # RDF/XML errors carry no position: the line being read
                    line, column = feed.lines, None
                self.bad(_syntax_message(self.format, error), self.path, line, column)
            except _Bad as problem:  # no position from the parser; look for the first one only
                first_iri_problem = str(problem).startswith("bad IRI") and not self.bad.counts.get(self.path)
                line, column = self._locate_bad_iri() if first_iri_problem else (None, None)
                self.bad(str(problem), self.path, line, column)

    def _locate_bad_iri(self) -> tuple[int | None, int | None]:
        """Where the first IRI that strict parsing refuses is (only looked up for an error)."""
        with open_input(self.path) as source:
            feed = _Feed(source.stream, lambda: None, by_line=self.format == RdfFormat.RDF_XML)
            quads = parse(input=feed, format=self.format, base_iri=self.path.resolve().as_uri())
            while True:
                try:
                    for _ in quads:
                        pass
                    return None, None
                except SyntaxError as error:
                    message = error.msg or ""
                    if "IRI" in message and not _ODD_IRI_CHARS.search(message.rpartition("IRI")[2]):
                        return (error.lineno, error.offset) if error.lineno is not None else (feed.lines, None)

    # ---- the file's summary ---------------------------------------------------------------------

    def odd_iris_warning(self) -> str | None:
        """One warning for the odd IRIs (see ``check``) this file uses, with their number of uses."""
        b, start = self.builder, self.start
        if not b.odd_iris:
            return None
        triples = np.frombuffer(b.triples, dtype=np.int32)[start.triples :].reshape(-1, 3)
        attrs = np.frombuffer(b.attribute_rows, dtype=np.int32)[start.attribute_rows :].reshape(-1, 4)
        used: list[str] = []
        uses = 0
        for vocabulary, columns in (
            (b.entities, (triples[:, 0], triples[:, 2], attrs[:, 0])),
            (b.relations, (triples[:, 1],)),
            (b.attributes, (attrs[:, 1],)),
        ):
            keys = [key for key in b.odd_iris if key in vocabulary]
            ids = np.array([vocabulary[key] for key in keys], dtype=np.int32)
            found = np.zeros(len(ids), dtype=bool)
            for column in columns:
                hits = np.isin(column, ids)
                uses += int(hits.sum())
                found |= np.isin(ids, column[hits])
            used.extend(key for key, hit in zip(keys, found) if hit)
        if not uses:
            return None
        chars = " ".join(sorted({c for iri in used for c in _ODD_IRI_CHARS.findall(iri)}))
        return (
            f"{self.path}: {uses:,} uses of {len(used):,} IRIs holding characters IRIs may not contain"
            f" ({chars}), kept as written (e.g. <{used[0]}>)"
        )


def _syntax_message(format: RdfFormat, error: SyntaxError) -> str:
    """pyoxigraph's message without its position prefix (the position is given separately)."""
    message = " ".join((error.msg or str(error)).split())
    return f"{format.name} syntax error: {_PARSER_PREFIX.sub('', message)}"


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in blocks of whole lines (the last one may lack its newline)."""
    rest = b""
    while True:
        data = stream.read(BLOCK_BYTES)
        if not data:
            break
        data = rest + data if rest else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]
    if rest:
        yield rest


class _Feed:
    """The file object pyoxigraph reads: reports progress and, for RDF/XML, counts lines.

    pyoxigraph's RDF/XML errors carry no position; handing it one line per ``read`` call
    makes the number of lines read so far the line of the error.
    """

    def __init__(self, stream: IO[bytes], tick: Callable[[], None], by_line: bool) -> None:
        self.stream = stream
        self.tick = tick
        self.by_line = by_line
        self.lines = 0
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads % 256 == 0:
            self.tick()
        if self.by_line:
            data = self.stream.readline()
            self.lines += bool(data)
            return data
        return self.stream.read(size if size and size > 0 else 1 << 16)


@contextmanager
def _progress(reporter: Reporter, source: InputStream, builder: KGBuilder) -> Iterator[Callable[[], None]]:
    """A ``tick()`` that moves a progress bar (MB of the file, triples/s) for large files."""
    if source.size < PROGRESS_BYTES:
        yield lambda: None
        return
    mb = 2**20
    with reporter.progress(f"reading {source.path.name} (MB)", total=round(source.size / mb)) as task:
        start, first, shown = time.perf_counter(), builder.statements, 0.0

        def tick(end: bool = False) -> None:
            nonlocal shown
            done = builder.statements - first
            rate = done / max(time.perf_counter() - start, 1e-9)
            position = (source.size if end else source.position()) / mb
            task.advance(position - shown, triples=f"{done:,}", **{"triples/s": f"{rate:,.0f}"})
            shown = position

        yield tick
        tick(end=True)
