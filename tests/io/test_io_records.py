"""The streaming KGBuilder: vocabularies, integer buffers, rollback."""

from __future__ import annotations

from mmalign.io.records import KGBuilder


def test_builder_interns_terms_once_and_reads_back() -> None:
    builder = KGBuilder()
    builder.declare(["x"])
    builder.add_triple("a", "r", "b")
    builder.add_triple("b", "r", "a")
    builder.add_attribute("a", "age", "42", "int")
    builder.add_attribute("c", "age", "42")
    builder.add_name("a", "Ann", "en")
    assert list(builder.entities) == ["x", "a", "b", "c"] and builder.declared == 1
    assert list(builder.values) == ["42", "Ann"]  # a repeated value is stored once
    assert builder.triples.tolist() == [1, 0, 2, 2, 0, 1] and builder.statements == 4
    assert builder.relation_triples() == [("a", "r", "b"), ("b", "r", "a")]
    assert builder.attribute_triples() == [("a", "age", "42", "int"), ("c", "age", "42", "")]
    assert builder.names() == [("a", "Ann", "en")]


def test_rollback_forgets_rows_and_new_vocabulary_entries() -> None:
    builder = KGBuilder()
    builder.add_triple("a", "r", "b")
    mark = builder.mark()
    builder.add_triple("b", "s", "c")
    builder.add_attribute("d", "age", "1", "int")
    builder.add_name("e", "E")
    builder.add_image("f", "/f.png")
    builder.rollback(mark)
    assert builder.mark() == mark
    assert list(builder.entities) == ["a", "b"] and list(builder.relations) == ["r"]
    assert not builder.attributes and not builder.values and list(builder.tags) == [""]
    builder.add_triple("c", "s", "a")
    assert builder.relation_triples() == [("a", "r", "b"), ("c", "s", "a")]
