"""sbert encoders: offline loading errors, and the cache key every workspace cache is read by."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.extract import sbert


def test_sbert_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match=r"not installed.*mmalign\[text\]"):
        sbert.load_sentence_encoder("no-such-model-package-xyz")
    with pytest.raises(MMAlignError, match="no such model folder"):
        sbert.load_sentence_encoder(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MMAlignError, match="cannot load"):
        sbert.load_sentence_encoder(str(tmp_path / "empty"))


def test_cache_key_is_pinned(tmp_path: Path) -> None:
    """Caches written by training before extraction was a step of its own must still be found."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    stat = (model / "config.json").stat()
    identity = json.dumps(["folder", str(model.resolve()), [["config.json", stat.st_size, stat.st_mtime_ns]]])
    texts = ["Andy Griffith", "Spain"]
    expected = hashlib.sha256(json.dumps([identity, texts]).encode()).hexdigest()
    assert sbert.cache_key(str(model), texts) == expected
    assert sbert.cache_key(str(model), texts[::-1]) != expected  # the order of the list is part of it


def test_cache_round_trip_and_stale_keys(tmp_path: Path) -> None:
    path = sbert.cache_path(tmp_path, "sbert-m")
    assert path == tmp_path / "names-sbert-m.safetensors" and sbert.read_cache(path, "k") is None
    embeddings = torch.randn(3, 4)
    sbert.write_cache(path, embeddings, "k", "sbert:m")
    assert torch.equal(sbert.read_cache(path, "k"), embeddings)
    assert sbert.read_cache(path, "other names or model") is None


def test_distinct_names_keep_first_seen_order() -> None:
    assert sbert.distinct_names(["b", None, "a", "b"]) == ["b", "a"]
