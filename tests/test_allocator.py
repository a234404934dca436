"""The glibc allocator setting that keeps freed tensor memory warm for the next epoch."""

from __future__ import annotations

import platform

import torch

from mmalign.allocator import keep_freed_memory


def test_keep_freed_memory_applies_on_glibc_and_allocation_still_works() -> None:
    applied = keep_freed_memory()
    assert applied == (platform.libc_ver()[0] == "glibc")
    for _ in range(3):  # big blocks now come from the heap and are reused, not unmapped
        block = torch.ones(4096, 4096)
        assert float(block.sum()) == 4096 * 4096
        del block


def test_release_freed_memory_hands_pages_back_on_glibc() -> None:
    from mmalign.allocator import release_freed_memory

    keep_freed_memory()
    block = torch.ones(8192, 8192)  # 256 MB from the heap, kept after the free
    del block
    glibc = platform.libc_ver()[0] == "glibc"
    before = _rss_kb() if glibc else 0
    assert release_freed_memory() == glibc
    if glibc:
        assert _rss_kb() < before - 100_000


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def test_within_returning_freed_memory_a_freed_block_leaves_at_once() -> None:
    from mmalign.allocator import release_freed_memory, returning_freed_memory

    glibc = keep_freed_memory()
    release_freed_memory()
    base = _rss_kb()
    block = torch.ones(8192, 8192)  # 256 MB from the heap, kept after the free
    del block
    if glibc:
        assert _rss_kb() > base + 200_000
    release_freed_memory()
    with returning_freed_memory():
        base = _rss_kb()
        block = torch.ones(8192, 8192)  # from mmap now: unmapped when freed
        assert _rss_kb() > base + 200_000
        del block
        assert _rss_kb() < base + 50_000
    block = torch.ones(8192, 8192)  # and after it, from the heap again
    del block
    if glibc:
        assert _rss_kb() > base + 200_000
    release_freed_memory()


def test_keep_free_keeps_a_small_free_heap_warm_and_hands_a_large_one_back(monkeypatch) -> None:
    from mmalign import allocator

    glibc = allocator.keep_freed_memory()
    if not glibc:
        assert allocator.free_heap_bytes() is None or not allocator.release_freed_memory(keep_free=True)
        return
    allocator.release_freed_memory()
    block = torch.ones(8192, 8192)  # 256 MB from the heap, kept after the free
    del block
    assert allocator.free_heap_bytes() >= 256 * 2**20
    before = _rss_kb()
    monkeypatch.setattr(allocator, "KEEP_FREE_BYTES", 2**62)  # more free than that: kept
    assert not allocator.release_freed_memory(keep_free=True)
    assert _rss_kb() > before - 50_000
    monkeypatch.setattr(allocator, "KEEP_FREE_BYTES", 0)  # any free heap is more: handed back
    assert allocator.release_freed_memory(keep_free=True)
    assert _rss_kb() < before - 200_000
