"""Top-k lists against a brute-force float64 reference on small random data, in every backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign.search import faiss_available, faiss_backend, topk, topk_both_ways
from vectors import dyadic, reference_scores, reference_topk, unit

NO_FAISS = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
# (backend, csls_k): CSLS always runs on torch blocks, whatever "auto" finds installed.
SETTINGS = [
    pytest.param("torch", 0, id="torch-cosine"),
    pytest.param("torch", 3, id="torch-csls"),
    pytest.param("faiss", 0, id="faiss-cosine", marks=NO_FAISS),
    pytest.param("auto", 3, id="auto-csls"),
]


@pytest.mark.parametrize(("backend", "csls_k"), SETTINGS)
@pytest.mark.parametrize("swap", [False, True], ids=["kg1-to-kg2", "kg2-to-kg1"])
def test_topk_matches_brute_force(backend: str, csls_k: int, swap: bool) -> None:
    kg1, kg2 = unit(230, 24, seed=1), unit(310, 24, seed=2)
    queries, candidates = (kg2, kg1) if swap else (kg1, kg2)
    # block=16 forces many blocks; FAISS_CHUNK is irrelevant at this size.
    scores, indices = topk(queries, candidates, 10, csls_k=csls_k, block=16, backend=backend)
    ref = reference_scores(queries, candidates, csls_k)
    expected = reference_topk(ref, 10)
    assert indices.shape == (len(queries), 10) and indices.dtype == torch.int64
    assert torch.equal(indices, torch.from_numpy(expected))
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(ref, expected, 1), atol=1e-5)


@pytest.mark.parametrize("csls_k", [0, 2, 3])  # even k: CSLS scores of dyadic rows are exact
@pytest.mark.parametrize("data", ["random", "tied"])
def test_both_ways_equals_two_calls(csls_k: int, data: str) -> None:
    """Both directions in three CSLS passes give bit for bit what two topk calls give in four."""
    if data == "random":
        left, right = unit(230, 24, seed=1), unit(310, 24, seed=2)
    else:  # many equal scores: the reused radii must not change any tie order
        left, right = dyadic(120, seed=3), dyadic(90, seed=4)
    (scores, indices), (back_scores, back_indices) = topk_both_ways(left, right, 7, 2, csls_k=csls_k, block=16)
    expected = topk(left, right, 7, csls_k=csls_k, block=16)
    expected_back = topk(right, left, 2, csls_k=csls_k, block=16)
    assert torch.equal(indices, expected[1]) and torch.equal(scores, expected[0])
    assert torch.equal(back_indices, expected_back[1]) and torch.equal(back_scores, expected_back[0])
    ref = reference_scores(right, left, csls_k)  # and against the float64 reference
    np.testing.assert_allclose(back_scores.numpy(), np.take_along_axis(ref, back_indices.numpy(), 1), atol=1e-5)


@pytest.mark.parametrize(("backend", "csls_k"), SETTINGS)
def test_ties_go_to_lower_index(backend: str, csls_k: int) -> None:
    csls_k -= csls_k % 2  # even: CSLS stays exact on dyadic data
    base = dyadic(12, seed=3)
    candidates = torch.cat([base, base, base])  # candidate j, j+12, j+24 identical
    queries = dyadic(40, seed=4)
    scores, indices = topk(queries, candidates, 7, csls_k=csls_k, block=5, backend=backend)
    if csls_k == 0:
        assert torch.equal(indices, torch.from_numpy(reference_topk(reference_scores(queries, candidates, 0), 7)))
    for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
        assert row_scores == sorted(row_scores, reverse=True)
        for a in range(6):
            if row_scores[a] == row_scores[a + 1]:
                assert row_indices[a] < row_indices[a + 1]
        chosen = set(row_indices)
        for j in chosen:  # a copy is only listed after all lower-index copies
            assert all(i in chosen for i in range(j % 12, j, 12))


@pytest.mark.parametrize(("backend", "csls_k"), SETTINGS)
def test_all_tied_candidates_give_first_indices(backend: str, csls_k: int) -> None:
    csls_k -= csls_k % 2
    candidates = dyadic(1, seed=5).repeat(50, 1)
    scores, indices = topk(dyadic(9, seed=6), candidates, 5, csls_k=csls_k, block=4, backend=backend)
    assert torch.equal(indices, torch.arange(5).repeat(9, 1))


def test_k_larger_than_candidates_and_empty_inputs() -> None:
    scores, indices = topk(unit(4, 8, 6), unit(3, 8, 7), 10)
    assert scores.shape == indices.shape == (4, 3)
    scores, indices = topk(unit(0, 8, 6), unit(3, 8, 7), 2, csls_k=3)
    assert scores.shape == (0, 2)
    with pytest.raises(ValueError):
        topk(unit(4, 8, 6), unit(3, 9, 7), 1)
    with pytest.raises(ValueError):
        topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="gpu")  # type: ignore[arg-type]


def test_faiss_backend_needs_faiss_and_cosine(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="CSLS"):
        topk(unit(4, 8, 6), unit(3, 8, 7), 1, csls_k=2, backend="faiss")
    monkeypatch.setattr(faiss_backend, "_faiss", lambda: None)
    with pytest.raises(ValueError, match="not installed"):
        topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="faiss")
    _, indices = topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="auto")  # falls back to torch
    assert indices.shape == (4, 1)
