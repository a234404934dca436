"""The workspace: round trip, escaping, atomic replacement, manifest updates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mmalign.errors import MMAlignError
from mmalign.workspace import KGData, Workspace, escape, read_manifest, recover_leftovers, unescape


def small_kg(tag: str = "x") -> KGData:
    return KGData(
        entities=[f"{tag}:a", f"{tag}:b", f"{tag}:c"],
        relations=["r"],
        attributes=["note", "age"],
        triples=np.array([[0, 0, 1], [1, 0, 1]], dtype=np.int32),
        attr_triples=np.array([[0, 0], [2, 1]], dtype=np.int32),
        attr_values=["tab\there\nnew line \\ slash", "42"],
        attr_datatypes=["@en", "http://www.w3.org/2001/XMLSchema#integer"],
        names={0: "Ann\tA.", 2: "Cee"},
        images={1: ["/img/b 1.png", "/img/b2.png"]},
    )


@pytest.mark.parametrize("text", ["", "plain", "a\tb", "a\\tb", "x\r\ny\\", "\\\\n"])
def test_escape_round_trip(text: str) -> None:
    assert "\t" not in escape(text) and "\n" not in escape(text)
    assert unescape(escape(text)) == text


def test_create_and_open_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "work"
    Workspace.create(path, small_kg("x"), small_kg("y"), [("x:a", "y:a")], {"options": {"o": 1}})
    workspace = Workspace.open(path)
    kg = workspace.kg1
    expected = small_kg("x")
    assert kg.entities == expected.entities and kg.relations == ["r"] and kg.attributes == ["note", "age"]
    assert kg.triples.dtype == np.int32 and np.array_equal(kg.triples, expected.triples)
    assert np.array_equal(kg.attr_triples, expected.attr_triples)
    assert kg.attr_values == expected.attr_values and kg.attr_datatypes == expected.attr_datatypes
    assert kg.names == expected.names and kg.images == expected.images
    assert kg.entity_index() == {"x:a": 0, "x:b": 1, "x:c": 2}
    assert workspace.kg2.entities[0] == "y:a"
    assert workspace.links == [("x:a", "y:a")]
    counts = workspace.manifest["counts"]
    assert counts["kg1"]["entities"] == 3 and counts["kg1"]["self_loops"] == 1 and counts["links"] == 1
    assert counts["kg1"]["images"] == 2 and counts["kg1"]["entities_with_images"] == 1
    assert (path / "kg1" / "entities.txt").read_text() == "x:a\nx:b\nx:c\n"


def test_open_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="no workspace here"):
        Workspace.open(tmp_path / "nothing")


def test_record_feature_rewrites_manifest(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "w", small_kg(), small_kg(), [], {})
    assert workspace.features_dir == tmp_path / "w" / "features" and workspace.features_dir.is_dir()
    workspace.record_feature("images", {"model": "m", "dim": 4})
    Workspace.open(tmp_path / "w").record_feature("names", {"encoder": "e"})
    manifest = read_manifest(tmp_path / "w")
    assert manifest is not None and manifest["features"] == {"images": {"model": "m", "dim": 4}, "names": {"encoder": "e"}}
    assert not [p for p in (tmp_path / "w").iterdir() if p.name.startswith(".")]


def test_replaces_an_old_workspace_whole(tmp_path: Path) -> None:
    path = tmp_path / "w"
    Workspace.create(path, small_kg("old"), small_kg(), [("old:a", "x:a")], {})
    (path / "features").mkdir()
    Workspace.create(path, small_kg("new"), small_kg(), [], {})
    assert Workspace.open(path).kg1.entities[0] == "new:a"
    assert not (path / "links.tsv").exists() and not (path / "features").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_interrupted_write_keeps_old_workspace_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w"
    Workspace.create(path, small_kg("old"), small_kg(), [], {})
    before = (path / "manifest.json").read_text()

    def crash(self: KGData, folder: Path) -> None:
        folder.mkdir()
        (folder / "entities.txt").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(KGData, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        Workspace.create(path, small_kg("new"), small_kg(), [], {})
    assert (path / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    monkeypatch.undo()
    assert Workspace.open(path).kg1.entities[0] == "old:a"


def test_refuses_to_replace_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(MMAlignError, match="not an mmalign workspace"):
        Workspace.create(tmp_path / "mine", small_kg(), small_kg(), [], {})
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_leftovers_of_a_killed_ingest(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    (tmp_path / f"w.tmp-{dead}").mkdir()
    old = tmp_path / f"w.old-{dead}"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"format": 1}))
    (tmp_path / f"w.tmp-{os.getpid()}").mkdir()  # a live process's temp folder stays
    recover_leftovers(tmp_path / "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w", f"w.tmp-{os.getpid()}"]
    assert read_manifest(tmp_path / "w") == {"format": 1}
