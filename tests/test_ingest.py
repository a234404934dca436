"""Ingest: KG folders and benchmark folders into a workspace, idempotence, rebuilds, errors."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from mmalign.errors import MMAlignError
from mmalign.ingest import _unique_rows, build_kg, ingest
from mmalign.io.records import KGBuilder
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

EX = "http://ex.org/"
XSD = "http://www.w3.org/2001/XMLSchema#"

TURTLE = f"""@prefix ex: <{EX}> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <{XSD}> .
ex:Alice ex:knows ex:Bob ; ex:born "1990"^^xsd:gYear ; rdfs:label "Alice"@en, "Alicia"@es .
ex:Bob ex:knows ex:Carol ; ex:knows ex:Bob ; rdfs:label "Roberto"@es .
ex:Carol ex:likes ex:Alice .
ex:Dave ex:born "1970"^^xsd:gYear .
"""


def make_kgs(root: Path) -> tuple[Path, Path]:
    """KG1 in Turtle with an images/ folder; KG2 in TSV with a header and images.tsv."""
    kg1, kg2 = root / "kg1", root / "kg2"
    (kg1 / "images" / "Bob").mkdir(parents=True)
    (kg1 / "data.ttl").write_text(TURTLE)
    (kg1 / "README.txt").write_text("not data")
    for name in ("Alice.png", "Bob/1.png", "Bob/2.jpg", "Nobody.png"):
        (kg1 / "images" / name).write_bytes(b"png")
    (kg2 / "pics").mkdir(parents=True)
    (kg2 / "triples.tsv").write_text("head\trelation\ttail\nal\tfriend\tbo\nbo\tfriend\tca\nal\tfriend\tbo\n")
    (kg2 / "attributes.tsv").write_text("al\tyear\t1990\nzed\tyear\t1980\n")
    (kg2 / "names.tsv").write_text("entity\tname\nal\tAlice\nbo\tBob\n")
    (kg2 / "images.tsv").write_text("ca\tpics/c.png\n")
    (kg2 / "pics" / "c.png").write_bytes(b"png")
    return kg1, kg2


def test_kg_folders(tmp_path: Path) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)
    reporter = RecordingReporter()
    result = ingest([kg1_dir, kg2_dir], tmp_path / "work", reporter=reporter)
    assert not result.up_to_date
    ws = Workspace.open(tmp_path / "work")
    kg1, kg2 = ws.kg1, ws.kg2
    # relation-triple entities first (in order), then attribute-only entities
    assert kg1.entities == [f"{EX}Alice", f"{EX}Bob", f"{EX}Carol", f"{EX}Dave"]
    assert kg1.relations == [f"{EX}knows", f"{EX}likes"]
    assert kg1.triples.tolist() == [[0, 0, 1], [1, 0, 1], [1, 0, 2], [2, 1, 0]]
    assert kg1.attributes == [f"{EX}born", "http://www.w3.org/2000/01/rdf-schema#label"]
    assert (kg1.attr_values[0], kg1.attr_datatypes[0]) == ("1990", f"{XSD}gYear")
    assert {v: d for v, d in zip(kg1.attr_values, kg1.attr_datatypes)}["Alicia"] == "@es"
    assert kg1.names == {0: "Alice", 1: "Roberto"}
    images = {kg1.entities[i]: [Path(p).name for p in paths] for i, paths in kg1.images.items()}
    assert images == {f"{EX}Alice": ["Alice.png"], f"{EX}Bob": ["1.png", "2.jpg"]}
    assert all(Path(p).is_absolute() for paths in kg1.images.values() for p in paths)

    assert kg2.entities == ["al", "bo", "ca", "zed"]
    assert kg2.triples.tolist() == [[0, 0, 1], [1, 0, 2]]
    assert kg2.names == {0: "Alice", 1: "Bob"}
    assert kg2.images == {2: [str((kg2_dir / "pics" / "c.png").resolve())]}
    assert ws.links == []

    counts = ws.manifest["counts"]
    assert counts["kg1"]["unmatched_images"] == 1 and counts["kg1"]["extra_names"] == 1
    assert counts["kg2"]["duplicate_triples"] == 1 and counts["kg1"]["self_loops"] == 1
    assert counts["kg1"]["images"] == 3 and counts["kg2"]["entities"] == 4
    assert any("1 duplicate relation triples" in w for w in reporter.warnings)
    assert any("README.txt" in i for i in reporter.infos)
    assert {"path", "size", "mtime_ns", "sha256"} <= set(ws.manifest["sources"]["kg1"][0])


def test_reingest_unchanged_is_a_no_op_and_changed_rebuilds(tmp_path: Path) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)
    work = tmp_path / "work"
    ingest([kg1_dir, kg2_dir], work)
    manifest = work / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    (work / "features").mkdir()
    os.utime(kg2_dir / "names.tsv")  # touched, same content: still up to date
    result = ingest([kg1_dir, kg2_dir], work)
    assert result.up_to_date and manifest.stat().st_mtime_ns == stamp and (work / "features").is_dir()

    assert not ingest([kg1_dir, kg2_dir], work, skip_bad_lines=True).up_to_date  # options count too

    with open(kg2_dir / "triples.tsv", "a") as handle:
        handle.write("ca\tfriend\tdee\n")
    result = ingest([kg1_dir, kg2_dir], work, skip_bad_lines=True)
    assert not result.up_to_date and "dee" in Workspace.open(work).kg2.entities
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kg1", "kg2", "work"]


def test_rebuild_refuses_to_drop_runs_unless_forced(tmp_path: Path) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)
    work = tmp_path / "work"
    ingest([kg1_dir, kg2_dir], work)
    (work / "runs" / "20240101-000000").mkdir(parents=True)
    assert ingest([kg1_dir, kg2_dir], work).up_to_date  # unchanged input: runs stay valid
    (kg2_dir / "names.tsv").write_text("al\tAl\n")
    with pytest.raises(MMAlignError) as error:
        ingest([kg1_dir, kg2_dir], work)
    assert error.value.path == work / "runs" and "--force" in error.value.message
    assert (work / "runs" / "20240101-000000").is_dir()
    ingest([kg1_dir, kg2_dir], work, force=True)
    assert not (work / "runs").exists() and Workspace.open(work).kg2.names == {0: "Al"}


def test_bad_line_writes_no_workspace_unless_skipped(tmp_path: Path) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)
    (kg2_dir / "triples.tsv").write_text("al\tfriend\tbo\nbo\tfriend\n")
    with pytest.raises(MMAlignError) as error:
        ingest([kg1_dir, kg2_dir], tmp_path / "work")
    assert str(error.value) == f"{kg2_dir / 'triples.tsv'}:2: expected 3 tab-separated columns, found 2"
    assert not (tmp_path / "work").exists()
    reporter = RecordingReporter()
    ingest([kg1_dir, kg2_dir], tmp_path / "work", skip_bad_lines=True, reporter=reporter)
    assert Workspace.open(tmp_path / "work").manifest["counts"]["skipped_lines"] == 1
    assert any("skipped 1 bad line" in w for w in reporter.warnings)


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (lambda kg: None, "does not exist"),
        (lambda kg: kg.mkdir(), "no triple source"),
        (lambda kg: (kg.mkdir(), (kg / "triples.tsv").write_text("head\trelation\ttail\n")), "is empty"),
        (lambda kg: (kg.mkdir(), (kg / "names.tsv").write_text("a\tA\n")), "no triple source"),
        (lambda kg: kg.write_text("x"), "is not a folder"),
    ],
)
def test_unusable_kg_folder(tmp_path: Path, setup: object, problem: str) -> None:
    kg1_dir, _ = make_kgs(tmp_path)
    other = tmp_path / "other"
    setup(other)  # type: ignore[operator]
    with pytest.raises(MMAlignError, match=problem):
        ingest([kg1_dir, other], tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_benchmark_folder_writes_links_by_iri(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "ent_ids_1").write_text(f"0\t{EX}a\n1\t{EX}b\n")
    (folder / "ent_ids_2").write_text(f"5\t{EX}x\n6\t{EX}y\n7\t{EX}z\n")
    (folder / "triples_1").write_text("0\t3\t1\n0\t3\t1\n")
    (folder / "triples_2").write_text("5\t4\t6\n")
    (folder / "ref_ent_ids").write_text("0\t5\n1\t6\n")
    ingest([folder], tmp_path / "work")
    ws = Workspace.open(tmp_path / "work")
    assert ws.kg2.entities == [f"{EX}x", f"{EX}y", f"{EX}z"]
    assert ws.kg1.relations == ["rel:3"] and np.array_equal(ws.kg1.triples, [[0, 0, 1]])
    assert ws.links == [(f"{EX}a", f"{EX}x"), (f"{EX}b", f"{EX}y")]
    assert (tmp_path / "work" / "links.tsv").read_text() == f"{EX}a\t{EX}x\n{EX}b\t{EX}y\n"
    assert ws.manifest["counts"]["links"] == 2 and ws.manifest["counts"]["kg1"]["duplicate_triples"] == 1
    assert ws.manifest["options"]["format"] == "dbp15k"


@pytest.mark.parametrize(
    ("paths", "format", "problem"),
    [
        (["kg1"], "auto", "not a benchmark folder"),
        (["kg1", "kg2"], "openea", "takes one benchmark folder"),
        (["kg1"], "kg", "needs two KG folders"),
        (["kg1", "kg2", "kg1"], "auto", "not 3 paths"),
        (["kg1"], "csv", "unknown format"),
    ],
)
def test_wrong_layout(tmp_path: Path, paths: list[str], format: str, problem: str) -> None:
    make_kgs(tmp_path)
    with pytest.raises(MMAlignError, match=problem):
        ingest([tmp_path / p for p in paths], tmp_path / "work", format=format)


def test_interrupted_first_ingest_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest([kg1_dir, kg2_dir], tmp_path / "work")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kg1", "kg2"]


@pytest.mark.parametrize(("suffix", "compress"), [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)])
def test_compressed_tsv(tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]) -> None:
    kg1_dir, kg2_dir = make_kgs(tmp_path)
    triples = kg2_dir / "triples.tsv"
    (kg2_dir / f"triples.tsv{suffix}").write_bytes(compress(triples.read_bytes()))
    with pytest.raises(MMAlignError, match=f"both triples.tsv and triples.tsv{suffix}"):
        ingest([kg1_dir, kg2_dir], tmp_path / "work")
    triples.unlink()
    ingest([kg1_dir, kg2_dir], tmp_path / "work")
    assert Workspace.open(tmp_path / "work").kg2.triples.tolist() == [[0, 0, 1], [1, 0, 2]]


def test_unique_rows_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    triples = np.column_stack([rng.integers(0, 30, 500), rng.integers(0, 4, 500), rng.integers(0, 30, 500)])
    rows = _unique_rows(triples.astype(np.int32), 30, 4)
    assert rows.dtype == np.int32 and np.array_equal(rows, np.unique(triples, axis=0))


def test_build_kg_matches_the_plain_python_definition() -> None:
    """Renumbering, de-duplication and name picking, against a direct reading of the rules."""
    rng = np.random.default_rng(1)
    builder, rows = KGBuilder(), []
    keys = [f"e{i}" for i in range(40)]
    for _ in range(400):
        kind, e, f = rng.integers(0, 3), keys[rng.integers(0, 40)], keys[rng.integers(0, 40)]
        if kind == 0:
            rows.append(("t", e, f"r{rng.integers(0, 3)}", f))
            builder.add_triple(*rows[-1][1:])
        elif kind == 1:
            rows.append(("a", e, f"a{rng.integers(0, 3)}", str(rng.integers(0, 3)), ["", "@en", "x"][rng.integers(0, 3)]))
            builder.add_attribute(*rows[-1][1:])
        else:
            rows.append(("n", e, f"name{rng.integers(0, 3)}", ["", "en", "fr", "en-GB"][rng.integers(0, 4)]))
            builder.add_name(*rows[-1][1:])
    kg, stats = build_kg(builder)

    index: dict[str, int] = {}
    for row in [r for r in rows if r[0] == "t"]:
        index.setdefault(row[1], len(index)), index.setdefault(row[3], len(index))
    attrs = list(dict.fromkeys(r[1:] for r in rows if r[0] == "a"))
    for entity, *_ in attrs:
        index.setdefault(entity, len(index))
    best: dict[int, tuple[int, str]] = {}
    for _, entity, name, lang in (r for r in rows if r[0] == "n"):
        i, rank = index.setdefault(entity, len(index)), 0 if lang in ("", "en") or lang.startswith("en-") else 1
        if i not in best or rank < best[i][0]:
            best[i] = (rank, name)
    relations: dict[str, int] = {}
    triples = sorted(
        {(index[h], relations.setdefault(r, len(relations)), index[t]) for _, h, r, t in (r for r in rows if r[0] == "t")}
    )
    assert kg.entities == list(index) and kg.relations == list(relations)
    assert kg.triples.tolist() == [list(t) for t in triples]
    ordered = sorted(range(len(attrs)), key=lambda i: (index[attrs[i][0]], kg.attributes.index(attrs[i][1]), i))
    assert kg.attr_values == [attrs[i][2] for i in ordered] and kg.attr_datatypes == [attrs[i][3] for i in ordered]
    assert kg.attr_triples.tolist() == [[index[attrs[i][0]], kg.attributes.index(attrs[i][1])] for i in ordered]
    assert list(kg.names.items()) == [(i, name) for i, (_, name) in best.items()]
    assert stats["duplicate_attribute_triples"] == sum(r[0] == "a" for r in rows) - len(attrs)
