"""Blockwise search against a brute-force float64 reference on small random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmalign import search

NO_FAISS = pytest.mark.skipif(not search.faiss_available(), reason="faiss not installed")
# (backend, csls_k): CSLS always runs on torch blocks, whatever "auto" finds installed.
SETTINGS = [
    pytest.param("torch", 0, id="torch-cosine"),
    pytest.param("torch", 3, id="torch-csls"),
    pytest.param("faiss", 0, id="faiss-cosine", marks=NO_FAISS),
    pytest.param("auto", 3, id="auto-csls"),
]


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def dyadic(n: int, seed: int) -> torch.Tensor:
    """Unit rows of width 8 with four entries ±0.5: every dot product, and every CSLS score
    with an even ``csls_k``, is exact in float32 whatever the summation order. BLAS sums in
    different orders at matrix edges, so only such data gives identical vectors bit-equal
    scores, which the tie tests need."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.zeros(n, 8)
    for row in rows:
        row[torch.randperm(8, generator=g)[:4]] = 0.5 * (2 * torch.randint(0, 2, (4,), generator=g) - 1).float()
    return rows


def reference_scores(q: torch.Tensor, c: torch.Tensor, csls_k: int) -> np.ndarray:
    """The full score matrix in float64: cosine, or CSLS from its definition."""
    s = q.double() @ c.double().T
    if csls_k:
        r_q = s.topk(min(csls_k, s.shape[1]), dim=1).values.mean(1, keepdim=True)
        r_c = s.T.topk(min(csls_k, s.shape[0]), dim=1).values.mean(1)[None, :]
        s = 2 * s - r_q - r_c
    return s.numpy()


def reference_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices sorted by score descending, equal scores by lower index (stable sort)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize(("backend", "csls_k"), SETTINGS)
@pytest.mark.parametrize("swap", [False, True], ids=["kg1-to-kg2", "kg2-to-kg1"])
def test_topk_matches_brute_force(backend: str, csls_k: int, swap: bool) -> None:
    kg1, kg2 = unit(230, 24, seed=1), unit(310, 24, seed=2)
    queries, candidates = (kg2, kg1) if swap else (kg1, kg2)
    # block=16 forces many blocks; FAISS_CHUNK is irrelevant at this size.
    scores, indices = search.topk(queries, candidates, 10, csls_k=csls_k, block=16, backend=backend)
    ref = reference_scores(queries, candidates, csls_k)
    expected = reference_topk(ref, 10)
    assert indices.shape == (len(queries), 10) and indices.dtype == torch.int64
    assert torch.equal(indices, torch.from_numpy(expected))
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(ref, expected, 1), atol=1e-5)


@pytest.mark.parametrize(("backend", "csls_k"), SETTINGS)
def test_ties_go_to_lower_index(backend: str, csls_k: int) -> None:
    csls_k -= csls_k % 2  # even: CSLS stays exact on dyadic data
    base = dyadic(12, seed=3)
    candidates = torch.cat([base, base, base])  # candidate j, j+12, j+24 identical
    queries = dyadic(40, seed=4)
    scores, indices = search.topk(queries, candidates, 7, csls_k=csls_k, block=5, backend=backend)
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
    scores, indices = search.topk(dyadic(9, seed=6), candidates, 5, csls_k=csls_k, block=4, backend=backend)
    assert torch.equal(indices, torch.arange(5).repeat(9, 1))


def test_k_larger_than_candidates_and_empty_inputs() -> None:
    scores, indices = search.topk(unit(4, 8, 6), unit(3, 8, 7), 10)
    assert scores.shape == indices.shape == (4, 3)
    scores, indices = search.topk(unit(0, 8, 6), unit(3, 8, 7), 2, csls_k=3)
    assert scores.shape == (0, 2)
    with pytest.raises(ValueError):
        search.topk(unit(4, 8, 6), unit(3, 9, 7), 1)
    with pytest.raises(ValueError):
        search.topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="gpu")  # type: ignore[arg-type]


def test_faiss_backend_needs_faiss_and_cosine(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="CSLS"):
        search.topk(unit(4, 8, 6), unit(3, 8, 7), 1, csls_k=2, backend="faiss")
    monkeypatch.setattr(search, "_faiss", lambda: None)
    with pytest.raises(ValueError, match="not installed"):
        search.topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="faiss")
    _, indices = search.topk(unit(4, 8, 6), unit(3, 8, 7), 1, backend="auto")  # falls back to torch
    assert indices.shape == (4, 1)


def test_block_rows_bound_memory() -> None:
    assert search.block_rows(100, 4096) == 4096
    assert search.block_rows(10**6, 4096) == search.BLOCK_BYTES // (4 * 10**6)
    assert search.block_rows(10**9, 4096) == search.MIN_ROWS
    assert search.block_rows(10**6, 8) == 8


@pytest.mark.parametrize("csls_k", [0, 3])
def test_rank_of_targets_matches_brute_force(csls_k: int) -> None:
    queries, candidates = unit(150, 24, seed=8), unit(190, 24, seed=9)
    targets = torch.randint(0, 190, (150,), generator=torch.Generator().manual_seed(10))
    ranks = search.rank_of_targets(queries, candidates, targets, csls_k=csls_k, block=16)
    ref = reference_scores(queries, candidates, csls_k)
    own = ref[np.arange(150), targets.numpy()]
    assert ranks.dtype == torch.int64
    assert torch.equal(ranks, torch.from_numpy(1 + (ref > own[:, None]).sum(1)))


def test_rank_of_targets_one_to_many_and_agrees_with_topk() -> None:
    queries, candidates = unit(20, 16, seed=11), unit(30, 16, seed=12)
    _, best = search.topk(queries, candidates, 3, csls_k=3)
    # query 0 has three gold targets (its top-3), query 5 one: ranks 1, 2, 3 and 1.
    rows = torch.tensor([0, 5, 0, 0])
    targets = torch.stack([best[0, 0], best[5, 0], best[0, 1], best[0, 2]])
    ranks = search.rank_of_targets(queries, candidates, targets, csls_k=3, block=4, query_rows=rows)
    assert ranks.tolist() == [1, 1, 2, 3]


def test_rank_counts_only_strictly_higher() -> None:
    candidates = dyadic(1, seed=13).repeat(6, 1)
    ranks = search.rank_of_targets(dyadic(3, seed=14), candidates, torch.tensor([5, 0, 3]), csls_k=2)
    assert ranks.tolist() == [1, 1, 1]


def test_one_to_one_by_hand() -> None:
    # Both queries prefer candidate 7; query 0 holds it with the higher score.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7]])
    indices = torch.tensor([[7, 3], [7, 4]])
    rows, columns = search.one_to_one(scores, indices)
    assert rows.tolist() == [0, 1] and columns.tolist() == [0, 1]
    # Query 1's whole list is taken by a better pair: it stays unmatched.
    rows, columns = search.one_to_one(torch.tensor([[0.9], [0.5]]), torch.tensor([[1], [1]]))
    assert rows.tolist() == [0] and columns.tolist() == [0]


@pytest.mark.parametrize("csls_k", [0, 3])
def test_one_to_one_is_a_stable_matching(csls_k: int) -> None:
    scores, indices = search.topk(unit(120, 6, seed=15), unit(100, 6, seed=16), 5, csls_k=csls_k)
    rows, columns = search.one_to_one(scores, indices)
    matched = indices[rows, columns]
    assert len(set(rows.tolist())) == len(rows) and len(set(matched.tolist())) == len(matched)
    query_score = dict(zip(rows.tolist(), scores[rows, columns].tolist()))
    cand_score = dict(zip(matched.tolist(), scores[rows, columns].tolist()))
    for q in range(len(scores)):  # no blocking pair: someone always holds something at least as good
        for s, c in zip(scores[q].tolist(), indices[q].tolist()):
            assert query_score.get(q, -9.0) >= s or cand_score.get(c, -9.0) >= s


@pytest.mark.parametrize("all_candidates", [False, True])
def test_rank_pairs_uses_each_entity_once(all_candidates: bool) -> None:
    left, right = unit(12, 16, seed=17), unit(15, 16, seed=18)
    # left 3 has two gold targets; right 9 is listed twice; right 0..14 minus gold are extra.
    pairs = torch.tensor([[3, 9], [1, 2], [3, 4], [7, 9], [0, 11]])
    ranks = search.rank_pairs(left, right, pairs, csls_k=2, all_candidates=all_candidates)
    cands = np.arange(15) if all_candidates else np.array([2, 4, 9, 11])
    ref = reference_scores(left[[0, 1, 3, 7]], right[cands], 2)
    row = {0: 0, 1: 1, 3: 2, 7: 3}
    col = {int(c): i for i, c in enumerate(cands)}
    expected = [1 + int((ref[row[a]] > ref[row[a], col[b]]).sum()) for a, b in pairs.tolist()]
    assert ranks.tolist() == expected
