"""sentence-transformers name encoders: loading offline, and the batch encoder training and the cache use.

The cache and the batching every dense name encoder shares: :mod:`mmalign.extract.name_embeddings`.
"""

from __future__ import annotations

import importlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from mmalign.errors import MMAlignError

INSTALL_HINT = (
    "install the offline model with `pip install 'mmalign[text]'` "
    "or give a local sentence-transformers folder: --name-encoder sbert:PATH"
)


def model_identity(model: str) -> str:
    """What a names cache must change with: the folder's files, or the package's version."""
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


def sentence_encoder(model: str, device: str = "cpu") -> Callable[[list[str]], torch.Tensor]:
    """The model :func:`load_sentence_encoder` loads, as a function from a batch of texts to unit rows."""
    loaded = load_sentence_encoder(model, device)

    def encode(texts: list[str]) -> torch.Tensor:
        return loaded.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False
        )

    return encode
