"""RDF reading: the N-Triples line parser and every syntax through rdflib."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.io.rdf import read_rdf
from mmalign.io.records import BadLines, KGRecords

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


def read(path: Path, skip: bool = False) -> tuple[KGRecords, BadLines]:
    records, bad = KGRecords(), BadLines(skip)
    read_rdf(path, records, bad)
    return records, bad


def test_ntriples_terms_literals_escapes_and_blank_nodes(tmp_path: Path) -> None:
    path = tmp_path / "kg.nt"
    path.write_text(NT, encoding="utf-8")
    records, _ = read(path)
    assert records.triples == EXPECTED_TRIPLES
    assert records.attributes == [
        (f"{EX}a", f"{EX}age", "42", f"{XSD}integer"),
        (f"{EX}a", LABEL, "Ann", "@en"),
        (f"{EX}b", LABEL, 'B "quoted"\txé', ""),
    ]
    assert records.names == [(f"{EX}a", "Ann", "en"), (f"{EX}b", 'B "quoted"\txé', "")]


def test_gzipped_ntriples_and_nquads(tmp_path: Path) -> None:
    gz = tmp_path / "kg.nt.gz"
    gz.write_bytes(gzip.compress(NT.encode()))
    scoped = [tuple(t.replace("_:kg.nt#", "_:kg.nt.gz#") for t in triple) for triple in EXPECTED_TRIPLES]
    assert read(gz)[0].triples == scoped
    nq = tmp_path / "kg.nq"
    nq.write_text(f"<{EX}a> <{EX}knows> <{EX}b> <{EX}graph1> .\n<{EX}b> <{EX}knows> <{EX}c> .\n")
    assert read(nq)[0].triples == [(f"{EX}a", f"{EX}knows", f"{EX}b"), (f"{EX}b", f"{EX}knows", f"{EX}c")]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"<{EX}a b> <{EX}p> <{EX}c> .", "bad IRI"),
        (f"<{EX}a> <{EX}p> <{EX}c{{x}}> .", "bad IRI"),
        (f"<a> <{EX}p> <{EX}c> .", "not absolute"),
        (f"<{EX}a> <{EX}p> <{EX}c>", "not an N-Triples statement"),
        (f'<{EX}a> <{EX}p> "unterminated .', "not an N-Triples statement"),
        (f'<{EX}a> <{EX}p> "bad \\q escape" .', "bad escape"),
        (f"<{EX}a\\u0020b> <{EX}p> <{EX}c> .", "space or control"),
    ],
)
def test_ntriples_bad_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.nt"
    path.write_text(f"<{EX}a> <{EX}p> <{EX}b> .\n{line}\n<{EX}b> <{EX}p> <{EX}c> .\n")
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert error.value.path == path and error.value.line == 2
    assert problem in error.value.message
    records, bad = read(path, skip=True)
    assert len(records.triples) == 2 and bad.total == 1
    assert bad.summaries() == [f"{path}: skipped 1 bad line (first: line 2: {error.value.message})"]


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


@pytest.mark.parametrize(
    ("name", "text"),
    [("kg.ttl", TURTLE), ("kg.rdf", RDF_XML), ("kg.jsonld", JSONLD), ("kg.trig", TRIG), ("kg.ttl.gz", TURTLE)],
)
def test_rdflib_syntaxes(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    records, _ = read(path)
    assert (f"{EX}a", f"{EX}knows", f"{EX}b") in records.triples
    assert (f"{EX}a", f"{EX}age", "42", f"{XSD}integer") in records.attributes


def test_turtle_blank_nodes_are_renumbered_per_file(tmp_path: Path) -> None:
    path = tmp_path / "kg.ttl"
    path.write_text(TURTLE)
    records, _ = read(path)
    assert (f"{EX}b", f"{EX}knows", "_:kg.ttl#b1") in records.triples
    assert ("_:kg.ttl#b1", f"{EX}knows", f"{EX}a") in records.triples
    assert records.names == [(f"{EX}a", "Ann", "en")]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("bad.ttl", f'@prefix ex: <{EX}> .\nex:a ex:p ex:b ;\n ex:q "x .\n', 3),
        ("bad.rdf", '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n<a>\n</rdf:RDF>\n', 4),
        ("bad.jsonld", '{"@id": "http://a",\n "http://p": \n', 3),
    ],
)
def test_unparsable_rdf_names_the_line(tmp_path: Path, name: str, text: str, line: int) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MMAlignError) as error:
        read(path)
    assert error.value.path == path and error.value.line == line
    assert error.value.message.startswith("cannot parse as")
    assert "\n" not in str(error.value)


def test_rdflib_iri_with_space_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "kg.ttl"
    path.write_text(f"<{EX}a b> <{EX}p> <{EX}c> .\n<{EX}a> <{EX}p> <{EX}c> .\n")
    with pytest.raises(MMAlignError, match="bad IRI"):
        read(path)
    records, bad = read(path, skip=True)
    assert records.triples == [(f"{EX}a", f"{EX}p", f"{EX}c")] and bad.total == 1
