"""Benchmark folders: DBP15K/EVA and OpenEA layouts, kept by IRI, never by integer id."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.io.benchmark import BenchmarkInput, detect_format
from mmalign.io.records import BadLines
from mmalign.report import RecordingReporter

R = "http://r/"
E = "http://e/"


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def dbp15k(folder: Path, **extra: str) -> Path:
    return write(
        folder,
        {
            "ent_ids_1": f"0\t{E}zh/a\n1\t{E}zh/b\n2\t{E}zh/lonely\n",
            "ent_ids_2": f"10\t{E}en/a\n11\t{E}en/b\n",
            "triples_1": "0\t5\t1\n1\t5\t0\n",
            "triples_2": "10\t7\t11\n",
            "ref_ent_ids": "0\t10\n1\t11\n",
            **extra,
        },
    )


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(dbp15k(tmp_path / "d")) == "dbp15k"
    assert detect_format(write(tmp_path / "o", {"rel_triples_1": "", "rel_triples_2": ""})) == "openea"
    assert detect_format(write(tmp_path / "n", {"triples.tsv": ""})) is None


def test_dbp15k_keeps_iris_and_all_listed_entities(tmp_path: Path) -> None:
    kg1, kg2, links = BenchmarkInput.find(dbp15k(tmp_path / "d"), "dbp15k").read(BadLines())
    assert list(kg1.entities) == [f"{E}zh/a", f"{E}zh/b", f"{E}zh/lonely"]
    assert kg1.relation_triples() == [(f"{E}zh/a", "rel:5", f"{E}zh/b"), (f"{E}zh/b", "rel:5", f"{E}zh/a")]
    assert kg2.relation_triples() == [(f"{E}en/a", "rel:7", f"{E}en/b")]
    assert links == [(f"{E}zh/a", f"{E}en/a"), (f"{E}zh/b", f"{E}en/b")]


def test_dbp15k_relation_names_attributes_and_names(tmp_path: Path) -> None:
    folder = dbp15k(
        tmp_path / "d",
        rel_ids_1=f"5\t{R}zh/knows\n",
        rel_ids_2=f"7\t{R}en/knows\n",
        training_attrs_1=f"{E}zh/a\t{R}age\t{R}height\n{E}zh/unknown\t{R}age\n",
    )
    (folder / "names_translated.tsv").write_text(f"{E}zh/a\tay\n{E}en/b\tbee\n{E}nowhere\tx\n")
    reporter = RecordingReporter()
    found = BenchmarkInput.find(folder, "dbp15k")
    assert folder / "names_translated.tsv" in found.sources()["shared"]
    kg1, kg2, _ = found.read(BadLines(), reporter)
    assert kg1.relation_triples()[0] == (f"{E}zh/a", f"{R}zh/knows", f"{E}zh/b")
    assert kg1.attribute_triples() == [(f"{E}zh/a", f"{R}age", "", ""), (f"{E}zh/a", f"{R}height", "", "")]
    assert kg1.names() == [(f"{E}zh/a", "ay", "")] and kg2.names() == [(f"{E}en/b", "bee", "")]
    assert len(reporter.warnings) == 2


def test_eva_ill_ent_ids(tmp_path: Path) -> None:
    folder = dbp15k(tmp_path / "d")
    (folder / "ref_ent_ids").rename(folder / "ill_ent_ids")
    assert BenchmarkInput.find(folder, "dbp15k").read(BadLines())[2] == [(f"{E}zh/a", f"{E}en/a"), (f"{E}zh/b", f"{E}en/b")]


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("triples_1", "0\t5\t9\n", ":1: entity id 9 is not in ent_ids_1"),
        ("rel_ids_1", "6\tx\n", "triples_1:1: relation id 5 is not in rel_ids_1"),
        ("ref_ent_ids", "0\t10\n2\t99\n", ":2: pair 2 99"),
        ("ent_ids_1", "0\ta\n0\tb\n", ":2: id 0 given twice"),
    ],
)
def test_dbp15k_bad_ids(tmp_path: Path, name: str, text: str, problem: str) -> None:
    folder = dbp15k(tmp_path / "d")
    (folder / name).write_text(text)
    with pytest.raises(MMAlignError, match=problem):
        BenchmarkInput.find(folder, "dbp15k").read(BadLines())


def test_forced_format_with_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="triples_1 is missing"):
        BenchmarkInput.find(write(tmp_path / "d", {"ent_ids_1": "", "ent_ids_2": ""}), "dbp15k")


def test_openea(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "o",
        {
            "rel_triples_1": f"{E}a\t{R}p\t{E}b\n",
            "rel_triples_2": f"{E}x\t{R}q\t{E}y\n",
            "attr_triples_1": f"{E}a\t{R}note\ttwo\twords\n",
            "ent_links": f"{E}a\t{E}x\n",
        },
    )
    kg1, kg2, links = BenchmarkInput.find(folder, "openea").read(BadLines())
    assert kg1.relation_triples() == [(f"{E}a", f"{R}p", f"{E}b")] and kg2.relation_triples() == [(f"{E}x", f"{R}q", f"{E}y")]
    assert kg1.attribute_triples() == [(f"{E}a", f"{R}note", "two words", "")]
    assert links == [(f"{E}a", f"{E}x")]
