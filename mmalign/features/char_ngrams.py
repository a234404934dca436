"""The ``char`` name encoder: a hashed bag of character n-grams, computed in memory.

No model, deterministic, works across Latin-script languages, and cheap (docs/benchmarks.md,
History, "Names"), so it is never cached: every run computes it from the names.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.features.config import NAME_BUCKETS
from mmalign.name_sources import normalize_name

DEFAULT_NAME_DIM = NAME_BUCKETS
NGRAM_SIZES = (2, 3, 4)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads FNV's weak low bits before taking them modulo dim."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def char_ngram_features(names: Sequence[str | None], dim: int = DEFAULT_NAME_DIM) -> torch.Tensor:
    """Hashed bag of character 2-4-grams, one L2-normalised row per name (None → zero row).

    Each name is normalised (:func:`normalize_name`) and padded with one space on each side, so
    word starts and ends are n-grams of their own. An n-gram's bucket is FNV-1a (64-bit) over its
    Unicode code points, mixed with splitmix64's finaliser, modulo ``dim``: stable across runs,
    machines and Python versions (Python's ``hash()`` is salted per process). Values are n-gram
    counts, rows scaled to unit length, so a row depends on its own name only. All of it is
    vectorised over the whole list, which keeps it cheap.

    Returns a float32 sparse CSR tensor of shape ``(len(names), dim)``.
    """
    if dim < 1:
        raise MMAlignError(f"the name feature dimension must be positive, not {dim}")
    normalized = ("" if name is None else normalize_name(name) for name in names)
    padded = [f" {text} " if text else "" for text in normalized]
    count = len(padded)
    lengths = np.fromiter((len(text) for text in padded), dtype=np.int64, count=count)
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    row_of = np.repeat(np.arange(count, dtype=np.int64), lengths)
    room = np.repeat(lengths, lengths) - (np.arange(codes.size) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    keys = []
    for size in NGRAM_SIZES:
        starts = np.flatnonzero(room >= size)
        h = np.full(starts.size, _FNV_OFFSET, dtype=np.uint64)
        for k in range(size):
            h = (h ^ codes[starts + k]) * _FNV_PRIME
        keys.append(row_of[starts] * dim + (_mix64(h) % np.uint64(dim)).astype(np.int64))
    cells, counts = np.unique(np.concatenate(keys), return_counts=True)
    rows, cols = cells // dim, cells % dim
    values = counts.astype(np.float64)
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=count))
    values /= norms[rows]
    crow = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=count), out=crow[1:])
    with warnings.catch_warnings():  # torch's "sparse CSR is in beta" notice, once per process
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(cols),
            torch.from_numpy(values.astype(np.float32)),
            size=(count, dim),
            check_invariants=False,
        )
