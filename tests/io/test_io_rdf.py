"""RDF reading through pyoxigraph: every syntax, compressed files, errors with their line."""

from __future__ import annotations

import bz2
import gzip
import lzma
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from mmalign.errors import MMAlignError
from mmalign.io import rdf
from mmalign.io.rdf import read_rdf
from mmalign.io.records import BadLines, KGBuilder
from mmalign.report import RecordingReporter, Task

EX = "http://ex.org/"
XSD = "http://www.w3.org/2001/XMLSchema#"
LABEL = "http://www.w3.org/2000/01/rdf-schema#label"

NT = f"""# a comment
<{EX}a> <{EX}knows> <{EX}b> .
<{EX}a> <{EX}age> "42"^^<{XSD}integer> .

<{EX}a> <{LABEL}> "Ann"@en .
<{EX}b> <{LABEL}> "B \\"quoted\\"\\tx\\u00e9"^^<{XSD}string> .
<{EX}Abraham_\\u0022Bram\\u0022_Stoker> <{EX}knows> _:n1 . # trailing comment
_:n1 <{EX}knows> <{EX}a>.
"""

EXPECTED_TRIPLES = [
    (f"{EX}a", f"{EX}knows", f"{EX}b"),
    (f'{EX}Abraham_"Bram"_Stoker', f"{EX}knows", "_:kg.nt#n1"),
    ("_:kg.nt#n1", f"{EX}knows", f"{EX}a"),
]


def read(path: Path, skip: bool = False) -> tuple[KGBuilder, BadLines]:
    builder, bad = KGBuilder(), BadLines(skip)
    read_rdf(path, builder, bad)
    return builder, bad


def test_ntriples_terms_literals_escapes_and_blank_nodes(tmp_path: Path) -> None:
    path = tmp_path / "kg.nt"
    path.write_text(NT, encoding="utf-8")
    builder, _ = read(path)
    assert builder.relation_triples() == EXPECTED_TRIPLES
    assert builder.attribute_triples() == [
        (f"{EX}a", f"{EX}age", "42", f"{XSD}integer"),
        (f"{EX}a", LABEL, "Ann", "@en"),
        (f"{EX}b", LABEL, 'B "quoted"\txé', ""),
    ]
    assert builder.names() == [(f"{EX}a", "Ann", "en"), (f"{EX}b", 'B "quoted"\txé', "")]


def test_gzipped_ntriples_and_nquads(tmp_path: Path) -> None:
    gz = tmp_path / "kg.nt.gz"
    gz.write_bytes(gzip.compress(NT.encode()))
    scoped = [tuple(t.replace("_:kg.nt#", "_:kg.nt.gz#") for t in triple) for triple in EXPECTED_TRIPLES]
    assert read(gz)[0].relation_triples() == scoped
    nq = tmp_path / "kg.nq"
    nq.write_text(f"<{EX}a> <{EX}knows> <{EX}b> <{EX}graph1> .\n<{EX}b> <{EX}knows> <{EX}c> .\n")
    assert read(nq)[0].relation_triples() == [(f"{EX}a", f"{EX}knows", f"{EX}b"), (f"{EX}b", f"{EX}knows", f"{EX}c")]


def test_compressed_inputs(tmp_path: Path) -> None:
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        path = tmp_path / f"kg.nt{suffix}"
        path.write_bytes(compress(NT.encode()))
        builder, _ = read(path)
        assert builder.relation_triples()[0] == EXPECTED_TRIPLES[0] and len(builder.relation_triples()) == 3
        assert builder.names()[0] == (f"{EX}a", "Ann", "en")
    broken = tmp_path / "broken.nt.gz"
    broken.write_bytes(gzip.compress(NT.encode())[:-20])
    with pytest.raises(MMAlignError, match="cannot read"):
        read(broken)


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "kg.nt"
    path.write_bytes(("\ufeff" + NT).replace("\n", "\r\n").encode())
    assert read(path)[0].relation_triples() == EXPECTED_TRIPLES


@pytest.mark.parametrize(
    ("line", "problem", "column"),
    [
        (f"<{EX}a b> <{EX}p> <{EX}c> .", "bad IRI <http://ex.org/a b>: space not allowed", None),
        (f"<a> <{EX}p> <{EX}c> .", "bad IRI <a>: not absolute", None),
        (f"<{EX}a> <{EX}p> <{EX}c>", "N-Triples syntax error: Quads must be followed by a dot", None),
        (f'<{EX}a> <{EX}p> "unterminated .', "N-Triples syntax error: Unexpected end of file", 37),
        (f'<{EX}a> <{EX}p> "bad \\q escape" .', "N-Triples syntax error: Unexpected escape character '\\q'", 42),
        (f"<{EX}a\\u0020b> <{EX}p> <{EX}c> .", "space not allowed", None),
        (f"<{EX}a> <{EX}p> <<( <{EX}a> <{EX}p> <{EX}b> )>> .", "RDF 1.2 triple terms are not kept", None),
        ("<http://ex.org/a> <http://ex.org/p> \"\xff\" .", "Invalid UTF-8", 38),
    ],
)
def test_ntriples_bad_line_names_file_line_and_column(
    tmp_path: Path, line: str, problem: str, column: int | None
) -> None:
    path = tmp_path / "bad.nt"
    path.write_bytes(f"<{EX}a> <{EX}p> <{EX}b> .\n{line}\n<{EX}b> <{EX}p> <{EX}c> .\n".encode("latin-1"))
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert (error.value.path, error.value.line, error.value.column) == (path, 2, column)
    assert problem in error.value.message and "\n" not in str(error.value)
    builder, bad = read(path, skip=True)
    assert builder.relation_triples() == [(f"{EX}a", f"{EX}p", f"{EX}b"), (f"{EX}b", f"{EX}p", f"{EX}c")]
    assert bad.total == 1
    where = "line 2" if column is None else f"line 2:{column}"
    assert bad.summaries() == [f"{path}: skipped 1 bad line (first: {where}: {error.value.message})"]


def test_bad_lines_far_apart_are_each_skipped_and_the_rest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rdf, "BLOCK_BYTES", 64)  # many blocks: a bad one is re-read line by line
    lines = [f"<{EX}e{i}> <{EX}p> <{EX}e{i + 1}> ." for i in range(40)]
    lines[3] = f"<{EX}e3> <{EX}p> <{EX}bad iri> ."
    lines[30] = "not a statement"
    path = tmp_path / "kg.nt"
    path.write_text("\n".join(lines) + "\n")
    builder, bad = read(path, skip=True)
    assert bad.total == 2 and len(builder.relation_triples()) == 38
    assert f"{EX}bad iri" not in builder.entities and f"{EX}e39" in builder.entities
    assert list(builder.entities)[:5] == [f"{EX}e{i}" for i in range(5)]
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert error.value.line == 4


def test_iris_with_quotes_are_kept_and_counted_in_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "kg.nt"
    quoted, braced = f"{EX}Abraham_\\u0022Bram\\u0022_Stoker", f"{EX}c{{x}}"
    path.write_text(
        f"<{quoted}> <{EX}p> <{braced}> .\n<{quoted}> <{EX}p> <{EX}b> .\n<{quoted}> <{EX}age> \"1\" .\n"
    )
    builder, reporter = KGBuilder(), RecordingReporter()
    read_rdf(path, builder, BadLines(), reporter)
    assert len(builder.relation_triples()) == 2
    assert reporter.warnings == [
        f"{path}: 4 uses of 2 IRIs holding characters IRIs may not contain (\" {{ }}), kept as written"
        f' (e.g. <{EX}Abraham_"Bram"_Stoker>)'
    ]


TURTLE = f"""@prefix ex: <{EX}> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <{XSD}> .
ex:a ex:knows ex:b ; ex:age "42"^^xsd:integer ; rdfs:label "Ann"@en .
ex:b ex:knows [ ex:knows ex:a ] .
"""

RDF_XML = f"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="{EX}">
  <rdf:Description rdf:about="{EX}a">
    <ex:knows rdf:resource="{EX}b"/>
    <ex:age rdf:datatype="{XSD}integer">42</ex:age>
  </rdf:Description>
</rdf:RDF>
"""

JSONLD = f"""{{"@id": "{EX}a", "{EX}knows": {{"@id": "{EX}b"}},
 "{EX}age": {{"@value": "42", "@type": "{XSD}integer"}}}}
"""

TRIG = f"""@prefix ex: <{EX}> .
ex:g {{ ex:a ex:knows ex:b . ex:a ex:age 42 . }}
"""


N3 = f"""@prefix ex: <{EX}> .
ex:a ex:knows ex:b ; ex:age 42 .
"""

NQUADS = f"""<{EX}a> <{EX}knows> <{EX}b> <{EX}g> .
<{EX}a> <{EX}age> "42"^^<{XSD}integer> .
"""


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("kg.ttl", TURTLE),
        ("kg.rdf", RDF_XML),
        ("kg.owl.bz2", RDF_XML),
        ("kg.jsonld", JSONLD),
        ("kg.trig", TRIG),
        ("kg.n3", N3),
        ("kg.nq.xz", NQUADS),
        ("kg.ttl.gz", TURTLE),
    ],
)
def test_every_syntax(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}.get(path.suffix, bytes)
    path.write_bytes(compress(text.encode()))
    builder, _ = read(path)
    assert (f"{EX}a", f"{EX}knows", f"{EX}b") in builder.relation_triples()
    assert (f"{EX}a", f"{EX}age", "42", f"{XSD}integer") in builder.attribute_triples()


def test_pyoxigraph_reads_every_syntax_rdflib_is_gone() -> None:
    import pyoxigraph

    assert all(isinstance(fmt, pyoxigraph.RdfFormat) for fmt in rdf.RDF_FORMATS.values())
    assert "rdflib" not in sys.modules


def test_turtle_blank_nodes_are_renumbered_per_file(tmp_path: Path) -> None:
    path = tmp_path / "kg.ttl"
    path.write_text(TURTLE)
    builder, _ = read(path)
    assert (f"{EX}b", f"{EX}knows", "_:kg.ttl#b1") in builder.relation_triples()
    assert ("_:kg.ttl#b1", f"{EX}knows", f"{EX}a") in builder.relation_triples()
    assert builder.names() == [(f"{EX}a", "Ann", "en")]


BAD_RDF_XML = f"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="{EX}">
  <rdf:Description rdf:about="{EX}a">
    <ex:knows rdf:resource="{EX}b"/>
  </rdf:Description>
  <rdf:Description rdf:about="{EX}b">
    <ex:name>Bee</ex:nom>
  </rdf:Description>
</rdf:RDF>
"""


@pytest.mark.parametrize(
    ("name", "text", "where", "problem"),
    [
        ("bad.ttl", f'@prefix ex: <{EX}> .\nex:a ex:p ex:b ;\n ex:q "x .\n', ":3:7:", "Turtle syntax error: Unexpected end of file"),
        ("bad.ttl", f"@prefix ex: <{EX}> .\nex:a ex:p ex:b .\nex:a ex:p .\n", ":3:11:", "Turtle syntax error:"),
        ("bad.nt", f"<{EX}a> <{EX}p> <{EX}b> .\n<{EX}a> <{EX}p> .\n", ":2:37:", "N-Triples syntax error: The object of a triple must be"),
        ("bad.rdf", BAD_RDF_XML, ":7:", "RDF/XML syntax error: ill-formed document: expected `</ex:name>`"),
        (
            "bad.rdf",
            '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n<a>\n</rdf:RDF>\n',
            ":3:",
            "RDF/XML syntax error: XML namespaces are required",
        ),
        ("bad.jsonld", '{"@id": "http://a",\n "http://p": \n', ":3:1:", "JSON-LD syntax error: Unexpected end of file"),
    ],
)
def test_malformed_files_give_one_line_with_file_and_line(
    tmp_path: Path, name: str, text: str, where: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert str(error.value).startswith(f"{path}{where} {problem}")
    assert "\n" not in str(error.value)


def test_turtle_iri_with_space_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "kg.ttl"
    path.write_text(f"<{EX}a> <{EX}p> <{EX}c> .\n\n<{EX}a b> <{EX}p> <{EX}c> .\n<{EX}c> <{EX}p> <{EX}a> .\n")
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert (error.value.line, error.value.column) == (3, 1) and "bad IRI <http://ex.org/a b>" in error.value.message
    builder, bad = read(path, skip=True)
    assert builder.relation_triples() == [(f"{EX}a", f"{EX}p", f"{EX}c"), (f"{EX}c", f"{EX}p", f"{EX}a")]
    assert bad.total == 1


class _ProgressReporter(RecordingReporter):
    def __init__(self) -> None:
        super().__init__()
        self.bars: list[tuple[str, float | None]] = []
        self.fields: list[dict[str, object]] = []

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        self.bars.append((description, total))
        reporter = self

        class _Task:
            def advance(self, amount: float = 1.0, **fields: object) -> None:
                reporter.fields.append(fields)

            def update(self, **fields: object) -> None:
                reporter.fields.append(fields)

        yield _Task()


@pytest.mark.parametrize("name", ["kg.nt", "kg.ttl"])
def test_large_files_get_a_progress_bar_with_triples_per_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(rdf, "PROGRESS_BYTES", 0)
    path = tmp_path / name
    path.write_text(NT)
    builder, reporter = KGBuilder(), _ProgressReporter()
    read_rdf(path, builder, BadLines(), reporter)
    assert reporter.bars == [(f"reading {name} (MB)", 0)]
    assert reporter.fields[-1]["triples"] == "6" and "triples/s" in reporter.fields[-1]
    small = KGBuilder(), _ProgressReporter()
    monkeypatch.setattr(rdf, "PROGRESS_BYTES", 1 << 20)
    read_rdf(path, small[0], BadLines(), small[1])
    assert small[1].bars == []
