"""The counts the issue promises on the real benchmarks in ../shared/data (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.ingest import ingest
from mmalign.io.rdf import read_rdf
from mmalign.io.records import BadLines, KGBuilder
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

pytestmark = pytest.mark.realdata


def test_db15k_fb15k237(shared_data: Path, tmp_path: Path) -> None:
    pair = shared_data / "db15k-fb15k237"
    ingest([pair / "kg1-dbpedia", pair / "kg2-freebase"], tmp_path / "work")
    ws = Workspace.open(tmp_path / "work")
    kg1, kg2 = ws.manifest["counts"]["kg1"], ws.manifest["counts"]["kg2"]
    assert (kg1["entities"], kg2["entities"]) == (12_842, 14_541)
    assert (kg1["relation_triples"], kg2["relation_triples"]) == (89_197, 310_116)
    assert (kg1["attribute_triples"], kg2["attribute_triples"]) == (48_044, 29_247)
    assert (kg1["relations"], kg2["relations"], kg1["attributes"], kg2["attributes"]) == (279, 237, 225, 115)
    assert (kg1["self_loops"], kg2["self_loops"]) == (859, 1_806)
    assert (kg1["names"], kg2["names"]) == (0, 14_496)
    # gold pairs use the decoded IRIs (29 hold `"` or a backtick): every one must be an entity key
    index1, index2 = ws.kg1.entity_index(), ws.kg2.entity_index()
    links = [line.split("\t") for line in (pair / "links.tsv").read_text(encoding="utf-8").splitlines()]
    assert all(a in index1 and b in index2 for a, b in links)
    assert 'http://dbpedia.org/resource/Abraham_"Bram"_Stoker' in index1


def test_dbp15k_zh_en(shared_data: Path, tmp_path: Path) -> None:
    ingest([shared_data / "dbp15k" / "zh_en"], tmp_path / "work")
    ws = Workspace.open(tmp_path / "work")
    counts = ws.manifest["counts"]
    assert (counts["kg1"]["entities"], counts["kg2"]["entities"]) == (19_388, 19_572)
    assert (counts["kg1"]["relation_triples"], counts["kg2"]["relation_triples"]) == (70_414, 95_142)
    assert (counts["kg1"]["relations"], counts["kg2"]["relations"]) == (1_701, 1_323)
    assert counts["links"] == 15_000 and len(ws.links) == 15_000
    assert ws.links[0] == ("http://zh.dbpedia.org/resource/阿卜杜拉·居尔", "http://dbpedia.org/resource/Abdullah_Gül")
    assert ws.kg1.names[0] == "abdullah gul" and counts["kg2"]["names"] == 19_572


def test_db15k_iris_with_quotes_give_one_counted_warning(shared_data: Path) -> None:
    path = shared_data / "db15k-fb15k237" / "kg1-dbpedia" / "triples.nt"
    builder, reporter = KGBuilder(), RecordingReporter()
    read_rdf(path, builder, BadLines(), reporter)
    assert builder.statements == 89_197
    assert len(reporter.warnings) == 1
    assert reporter.warnings[0].startswith(f"{path}: 413 uses of 29 IRIs holding characters IRIs may not contain")
