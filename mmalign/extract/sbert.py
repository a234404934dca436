"""sentence-transformers name encoders: loading offline, encoding, and the workspace cache.

Encoding tens of thousands of names takes about a minute on two CPU cores, so
``mmalign features names`` (:mod:`mmalign.extract.names`) does it once and leaves
``features/names-<tag>.safetensors`` (``embeddings``: distinct names × D float32); its
metadata ``key`` says which model saw which name list, so a stale cache is never used.
Training reads a matching cache and otherwise encodes in memory (:mod:`mmalign.features.names`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors import safe_open

from mmalign.errors import MMAlignError
from mmalign.report import SILENT, Reporter
from mmalign.run import atomic_save_tensors

SBERT_BATCH = 256
INSTALL_HINT = (
    "install the offline model with `pip install 'mmalign[text]'` "
    "or give a local sentence-transformers folder: --name-encoder sbert:PATH"
)


def distinct_names(names: Sequence[str | None]) -> list[str]:
    """The texts sbert encodes for ``names``: each name once, first seen first (the order a cache key fixes)."""
    return list(dict.fromkeys(name for name in names if name is not None))


def cache_path(features_dir: Path, tag: str) -> Path:
    """``<features_dir>/names-<tag>.safetensors``: one cache per encoder (its tag)."""
    return Path(features_dir) / f"names-{tag}.safetensors"


def cache_key(model: str, texts: Sequence[str]) -> str:
    """What a cache must have been made from: this model (its files or version), these texts in order."""
    return hashlib.sha256(json.dumps([_model_identity(model), list(texts)]).encode()).hexdigest()


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


def _model_identity(model: str) -> str:
    """What the cache key must change with: the folder's files, or the package's version."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        stats = sorted(
            (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")
            if p.is_file()
        )
        return json.dumps(["folder", str(folder.resolve()), stats])
    module = _import_model_package(model)
    return json.dumps(["package", module.__name__, str(getattr(module, "__version__", "?"))])


def _import_model_package(model: str) -> Any:
    name = model.replace("-", "_")
    if not name.isidentifier():
        raise MMAlignError(f"no such model folder: {model}; {INSTALL_HINT}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MMAlignError(f"the sentence-transformers model {model!r} is not installed; {INSTALL_HINT}") from None


@contextmanager
def _no_transformers_progress() -> Iterator[None]:
    """Hide transformers' own "Loading weights" bar (library code never draws on the terminal)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # reported by the caller, which imports sentence-transformers next
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_sentence_encoder(model: str, device: str = "cpu") -> Any:
    """A SentenceTransformer from a local folder or a model package, loaded offline.

    A folder is loaded with ``local_files_only``; anything else is taken as a package name
    (``-`` read as ``_``) whose ``load_model(device=...)`` returns the model. Every failure is
    an :class:`MMAlignError` saying how to get a model that works offline.
    """
    from mmalign._compat import ensure_torchvision

    ensure_torchvision()
    folder = Path(model).expanduser()
    try:
        with _no_transformers_progress():
            if folder.is_dir():
                from sentence_transformers import SentenceTransformer

                return SentenceTransformer(str(folder), device=device, local_files_only=True)
            load = getattr(_import_model_package(model), "load_model", None)
            if load is None:
                raise MMAlignError(f"package {model!r} has no load_model(); {INSTALL_HINT}")
            return load(device=device)
    except MMAlignError:
        raise
    except ImportError as error:
        raise MMAlignError(f"sentence-transformers cannot be imported ({error}); {INSTALL_HINT}") from None
    except Exception as error:  # a broken folder or package fails in many library-specific ways
        raise MMAlignError(f"cannot load the sentence-transformers model {model!r} offline: {error}") from None


def sbert_encode(
    model: Any, texts: Sequence[str], batch_size: int = SBERT_BATCH, reporter: Reporter = SILENT
) -> torch.Tensor:
    """Dense float32 unit-length embeddings of ``texts`` (one row each, in the given order).

    Texts are encoded in length order so each batch pads little (what sentence-transformers
    does inside one ``encode`` call), in slices of ``batch_size`` so the progress bar moves.
    """
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out: torch.Tensor | None = None
    with reporter.progress("encoding names", total=len(texts)) as task:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors = model.encode(
                [texts[i] for i in chunk],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            ).float().cpu()
            if out is None:
                out = torch.zeros(len(texts), vectors.shape[1], dtype=torch.float32)
            out[torch.tensor(chunk)] = vectors
            task.advance(len(chunk))
    if out is None:
        raise MMAlignError("no names to encode")
    return out
