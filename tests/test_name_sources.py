"""Name sources: normalisation, IRI local names, names files, the source order."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign import name_sources as ns
from mmalign.report import RecordingReporter


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("Abdullah Gül", "abdullah gul"),
        ("Denton,_Texas".replace("_", " "), "denton texas"),
        ("Can't\u200b  Stop", "cant stop"),
        ("ＡＢＣ Straße", "abc strasse"),
        ("阿卜杜拉·居尔", "阿卜杜拉 居尔"),
        ("!!!", ""),
    ],
)
def test_normalize_folds_case_accents_punctuation(raw: str, folded: str) -> None:
    assert ns.normalize_name(raw) == folded


def test_clean_name_keeps_case_and_drops_invisible_characters() -> None:
    assert ns.clean_name(" Abdullah\u200b\tGül \n") == "Abdullah Gül"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("http://dbpedia.org/resource/Andy_Griffith", "Andy Griffith"),
        ("http://zh.dbpedia.org/resource/%E9%98%BF%E5%8D%9C", "阿卜"),
        ("http://dbpedia.org/resource/HIV/AIDS", "HIV/AIDS"),
        ("http://example.org/data/resource/Face/Off", "Face/Off"),
        ("http://example.org/myresource/A/B_c", "B c"),
        ("https://example.org/onto#Foo_Bar", "Foo Bar"),
        ("https://example.org/things/Thing/", "Thing"),
        ("urn:example:Some_Thing", "Some Thing"),
        ("http://example.org/", None),
        ("/m/01m4kpp", None),  # Freebase MID: an identifier, not a name
        ("Andy Griffith", None),  # a TSV token is not an IRI
    ],
)
def test_iri_local_name(key: str, name: str | None) -> None:
    assert ns.iri_local_name(key) == name


def test_sources_in_order_and_counted() -> None:
    entities = ["http://x.org/A_a", "http://x.org/B_b", "http://x.org/C_c", "/m/d", "http://x.org/E"]
    recorded = {0: "recorded a", 1: "recorded b", 4: "..."}  # "..." folds to nothing: not a name
    extra = {"http://x.org/A_a": "file a"}
    names, counts = ns.resolve_names(entities, recorded, "recorded+iri", extra)
    assert names == ["file a", "recorded b", "C c", None, "E"]
    assert counts == {"names_file": 1, "recorded": 1, "iri": 2, "none": 1}
    names, counts = ns.resolve_names(entities, recorded, "recorded")
    assert names == ["recorded a", "recorded b", None, None, None]
    assert counts["none"] == 3
    assert ns.resolve_names(entities, recorded, "none")[0] == [None] * 5
    with pytest.raises(MMAlignError, match=r"unknown names mode 'IRI' \(choose none, recorded, recorded\+iri, iri\)"):
        ns.resolve_names(entities, recorded, "IRI")


def test_iri_mode_ignores_recorded_names() -> None:
    """Names in their own language: the IRI's title even where ingest recorded a (translated) name."""
    entities = ["http://zh.dbpedia.org/resource/阿卜杜拉·居尔", "http://x.org/B_b", "/m/c"]
    recorded = {0: "Abdullah Gul", 1: "recorded b", 2: "recorded c"}
    names, counts = ns.resolve_names(entities, recorded, "iri", {"http://x.org/B_b": "file b"})
    assert names == ["阿卜杜拉·居尔", "file b", None]  # a names file still comes first; a MID has no title
    assert counts == {"names_file": 1, "recorded": 0, "iri": 1, "none": 1}


def test_read_names_file(tmp_path: Path) -> None:
    path = tmp_path / "names.tsv"
    path.write_text("a\tAlpha\n\nb\tBeta\tGamma\na\tAgain\r\n", encoding="utf-8")
    reporter = RecordingReporter()
    assert ns.read_names_file(path, reporter) == {"a": "Alpha", "b": "Beta\tGamma"}
    assert "1 entities named more than once" in reporter.warnings[0]
    path.write_text("a\tAlpha\nno tab here\n", encoding="utf-8")
    with pytest.raises(MMAlignError) as error:
        ns.read_names_file(path)
    assert (error.value.line, error.value.path) == (2, path)
    with pytest.raises(MMAlignError, match="cannot read"):
        ns.read_names_file(tmp_path / "missing.tsv")
