"""How the blocks of rows are sized."""

from __future__ import annotations

from mmalign.search.blocks import BLOCK_BYTES, MIN_ROWS, block_rows


def test_block_rows_bound_memory() -> None:
    assert block_rows(100, 4096) == 4096
    assert block_rows(10**6, 4096) == BLOCK_BYTES // (4 * 10**6)
    assert block_rows(10**9, 4096) == MIN_ROWS
    assert block_rows(10**6, 8) == 8
