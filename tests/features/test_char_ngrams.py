"""The char encoder: equal names give equal rows, buckets pinned, independent of the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from mmalign.features import char_ngrams as cn


def test_char_features_equal_for_equal_names_and_zero_for_none() -> None:
    matrix = cn.char_ngram_features(["Abdullah Gül", "abdullah gul", None, "Andy Griffith", "Abdullah Gül"], dim=512)
    assert matrix.layout == torch.sparse_csr and matrix.dtype == torch.float32 and matrix.shape == (5, 512)
    dense = matrix.to_dense()
    assert torch.equal(dense[0], dense[1]) and torch.equal(dense[0], dense[4])
    assert torch.allclose(dense.norm(dim=1), torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0]))
    assert float(dense[0] @ dense[3]) < 0.5


def test_char_features_are_pinned() -> None:
    """The bucket of an n-gram must never change: trained models depend on it."""
    matrix = cn.char_ngram_features(["ab"], dim=2**14)  # " ab ": 3 bigrams, 2 trigrams, 1 4-gram
    assert matrix.col_indices().tolist() == [2780, 8519, 9151, 10695, 15397, 16031]


def test_char_features_do_not_depend_on_the_process() -> None:
    """Python's hash() is salted per process; the n-gram hash must not be."""
    code = (
        "from mmalign.features.char_ngrams import char_ngram_features as f;"
        "m = f(['Andy Griffith', 'Denton, Texas']); print(m.col_indices().tolist(), m.values().tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(cn.__file__).parents[2])}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    matrix = cn.char_ngram_features(["Andy Griffith", "Denton, Texas"])
    assert output == f"{matrix.col_indices().tolist()} {matrix.values().tolist()}\n"
