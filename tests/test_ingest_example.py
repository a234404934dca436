"""The committed example pair: ingests cleanly, its pairs exist, its generator reproduces it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from mmalign.ingest import ingest
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_ingests_without_warnings_and_pairs_exist(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    ingest([EXAMPLES / "kg1", EXAMPLES / "kg2"], tmp_path / "work", reporter=reporter)
    assert reporter.warnings == []
    ws = Workspace.open(tmp_path / "work")
    counts = ws.manifest["counts"]
    for kg in ("kg1", "kg2"):
        assert 300 <= counts[kg]["entities"] <= 600 and counts[kg]["relation_triples"] > 1000
        assert counts[kg]["attribute_triples"] > 0 and counts[kg]["names"] > 0 and 1 <= counts[kg]["images"] <= 10
    assert set(ws.kg1.relations).isdisjoint(ws.kg2.relations)
    index1, index2 = ws.kg1.entity_index(), ws.kg2.entity_index()
    seeds, test = (
        [line.split("\t") for line in (EXAMPLES / name).read_text().splitlines()] for name in ("seeds.tsv", "test.tsv")
    )
    assert all(a in index1 and b in index2 for a, b in seeds + test)
    assert abs(len(seeds) / (len(seeds) + len(test)) - 0.3) < 0.01


def test_generator_reproduces_the_committed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLES / "make_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_example", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    module.main(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if p.is_file() and p.suffix not in (".py", ".md", ".pyc")
    )
    assert generated == committed
    for path in generated:
        if path.suffix != ".png":  # PNG bytes may differ between zlib versions; names suffice
            assert (tmp_path / path).read_bytes() == (EXAMPLES / path).read_bytes(), path
    assert sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file()) < 1_000_000
