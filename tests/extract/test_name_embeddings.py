"""Dense name encoders: offline loading errors, the cache key every workspace cache is read by, batching."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.extract import name_embeddings as ne
from mmalign.extract import sbert
from mmalign.name_encoders import NameEncoder
from mmalign.report import RecordingReporter


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
    encoder = NameEncoder("sbert", str(model))
    assert ne.cache_key(ne.encoder_identity(encoder), texts) == expected
    assert ne.cache_key(ne.encoder_identity(encoder), texts[::-1]) != expected  # the order of the list is part of it


def test_cache_round_trip_and_stale_keys(tmp_path: Path) -> None:
    path = ne.cache_path(tmp_path, "sbert-m")
    assert path == tmp_path / "names-sbert-m.safetensors" and ne.read_cache(path, "k") is None
    embeddings = torch.randn(3, 4)
    ne.write_cache(path, embeddings, "k", "sbert:m")
    assert torch.equal(ne.read_cache(path, "k"), embeddings)
    assert ne.read_cache(path, "other names or model") is None


def test_distinct_names_keep_first_seen_order() -> None:
    assert ne.distinct_names(["b", None, "a", "b"]) == ["b", "a"]


def test_batches_keep_the_input_order_and_unit_rows() -> None:
    """Texts go to the encoder shortest first, in slices; rows come back where their text was."""
    seen: list[list[str]] = []

    def encode(batch: list[str]) -> torch.Tensor:
        seen.append(batch)
        return torch.tensor([[float(len(text)), 1.0] for text in batch])

    texts = ["ccc", "a", "bb", "dddd", "e"]
    reporter = RecordingReporter()
    rows = ne.encode_in_batches(encode, texts, batch_size=2, reporter=reporter)
    assert seen == [["a", "e"], ["bb", "ccc"], ["dddd"]]
    expected = torch.nn.functional.normalize(torch.tensor([[3.0, 1], [1, 1], [2, 1], [4, 1], [1, 1]]), dim=1)
    assert torch.allclose(rows, expected)
    with pytest.raises(MMAlignError, match="no names to encode"):
        ne.encode_in_batches(encode, [])
