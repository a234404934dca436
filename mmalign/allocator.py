"""Keep freed memory inside the process (glibc malloc), so big tensors reuse warm pages.

An epoch allocates and frees the same few dozen N × d buffers. glibc serves blocks over its
mmap threshold with fresh ``mmap`` pages and unmaps them on free, so every buffer page-faults
on its first touch, every epoch: on DBP15K zh_en a training step took markedly longer that way
than with mmap disabled and trimming off. The price is memory: freed blocks stay in a heap that
fragments, and peak RSS rose well above glibc's defaults (``MMALIGN_RETURN_MEMORY=1`` in the
CLI keeps those); docs/benchmarks.md, "Memory and speed of the training step", has both.
:func:`release_freed_memory` between the phases of training (steps, evaluation, search, the
final write-up) bounds that: each phase starts from the live set instead of stacking on the
last phase's fragments. Between an epoch's steps and its check it hands the pages back only
when the heap holds more than :data:`KEEP_FREE_BYTES` free: below that (graphs of DBP15K's
size) the next phase faults every page in again and the peak did not grow without the trim
(docs/benchmarks.md, "Freed memory kept between the steps and the checks").
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
_keeping = False  # keep_freed_memory is in force

KEEP_FREE_BYTES = 2**30
"""Free heap below which :func:`release_freed_memory` with ``keep_free`` keeps the pages: a DBP15K
run's steps and checks leave 0.5-1.1 GiB free (no trim then), a 100k-a-side run's 3.3-3.6 GiB."""


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later)."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc_function(name: str) -> Callable[..., int] | None:
    """``name`` from the C library, or None where there is none or it lacks ``name``.

    ``mallopt`` and ``malloc_trim`` are glibc's: musl, macOS and Windows give None.
    """
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Turn off mmap-backed blocks and heap trimming; False where the C library is not glibc."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    global _keeping
    _keeping = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _keeping


@contextmanager
def returning_freed_memory() -> Iterator[None]:
    """Within: big blocks come from ``mmap`` again, so each goes back to the system when freed.

    For the phases that allocate their big buffers once rather than every step (the
    whole-graph forward, validation): in the kept heap their temporaries leave holes that
    later, larger buffers cannot reuse, and the peak grows by the fragments, by gigabytes at
    1M entities a side (docs/benchmarks.md, "Partitioned training"). Blocks allocated before
    keep coming from, and going back to, the heap. Nothing changes where freed memory is not kept.
    """
    mallopt = _glibc_function("mallopt") if _keeping else None
    if mallopt is None:
        yield
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, 0)


def free_heap_bytes() -> int | None:
    """Freed bytes the heap holds (``mallinfo2``'s ``fordblks``, all arenas); None where unknown."""
    mallinfo2 = _glibc_function("mallinfo2")
    if mallinfo2 is None:
        return None
    mallinfo2.argtypes, mallinfo2.restype = [], _MallInfo2
    return int(mallinfo2().fordblks)


def release_freed_memory(keep_free: bool = False) -> bool:
    """Give the heap's free pages back to the system now (``malloc_trim``); False where not glibc
    or, with ``keep_free``, where the heap holds no more than :data:`KEEP_FREE_BYTES` free
    (where that cannot be read, the pages go back).
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    if keep_free:
        free = free_heap_bytes()
        if free is not None and free <= KEEP_FREE_BYTES:
            return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
