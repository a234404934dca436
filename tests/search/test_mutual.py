"""Mutual nearest neighbours, plain and under CSLS, against brute force over the same products."""

from __future__ import annotations

import pytest
import torch

from mmalign.search import mutual, mutual_nearest


def test_mutual_nearest_matches_brute_force() -> None:
    torch.manual_seed(0)
    left = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    right = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    rows, cols = mutual_nearest(left, right, block=7, precision="fp32")
    scores = left @ right.T
    best_right, best_left = scores.argmax(1), scores.argmax(0)
    expected = [(i, int(best_right[i])) for i in range(50) if int(best_left[best_right[i]]) == i]
    assert list(zip(rows.tolist(), cols.tolist())) == expected and expected


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("candidates", [3, 8, 100])
def test_mutual_nearest_under_csls_matches_brute_force(candidates: int, precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact whether the best is among the kept candidates (100: all) or needs the full re-search (3: often).

    In bf16 the search ranks the product's bf16 values (top-k without a float32 copy): the
    same pairs as a brute force over those values.
    """
    refined: list[int] = []
    full_search = mutual._best_exact
    monkeypatch.setattr(mutual, "_best_exact", lambda queries, *rest: refined.append(len(queries)) or full_search(queries, *rest))
    torch.manual_seed(0)
    left = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    right = torch.nn.functional.normalize(torch.randn(40, 8), dim=1)
    rows, cols = mutual_nearest(left, right, block=7, precision=precision, csls_k=3, candidates=candidates)
    if candidates in (3, 100):  # 3 kept of 40 always leaves some rows unsure; all 40 never does
        assert bool(refined) == (candidates == 3)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    cos = torch.cat([left[i : i + 7].to(dtype) @ right.to(dtype).T for i in range(0, 50, 7)]).float()
    csls = 2 * cos - cos.topk(3, dim=1).values.mean(1)[:, None] - cos.topk(3, dim=0).values.mean(0)[None, :]
    best_right, best_left = csls.argmax(1), csls.argmax(0)
    expected = [(i, int(best_right[i])) for i in range(50) if int(best_left[best_right[i]]) == i]
    assert list(zip(rows.tolist(), cols.tolist())) == expected and expected
    plain = mutual_nearest(left, right, block=7, precision=precision)
    assert list(zip(*map(torch.Tensor.tolist, plain))) != expected  # CSLS changes the pairs here


def test_both_ways_lists_are_the_same_by_column_blocks_and_by_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The column-block pass (all left rows × a few right columns) keeps what the row-block pass keeps."""
    torch.manual_seed(1)
    left = torch.nn.functional.normalize(torch.randn(230, 16), dim=1)
    right = torch.nn.functional.normalize(torch.randn(170, 16), dim=1)
    by_columns = mutual.top_k_both(left, right.T.contiguous(), 6, 32, torch.float32)
    monkeypatch.setattr(mutual, "COLUMN_BLOCK_BYTES", 0)  # every block too large: rows at a time
    by_rows = mutual.top_k_both(left, right.T.contiguous(), 6, 32, torch.float32)
    scores = left @ right.T
    assert torch.equal(by_columns[1], by_rows[1]) and torch.equal(by_columns[3], by_rows[3])
    assert torch.equal(by_columns[1], scores.topk(6, dim=1).indices)
    assert torch.equal(by_columns[3], scores.topk(6, dim=0).indices.T)
    assert torch.allclose(by_columns[0], by_rows[0]) and torch.allclose(by_columns[2], by_rows[2])
