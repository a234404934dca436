"""Keep freed memory inside the process (glibc malloc), so big tensors reuse warm pages.

An epoch allocates and frees the same few dozen N × d buffers. glibc serves blocks over its
mmap threshold with fresh ``mmap`` pages and unmaps them on free, so every buffer page-faults
on its first touch, every epoch: on DBP15K zh_en a training step took markedly longer that way
than with mmap disabled and trimming off. The price is memory: freed blocks stay in a heap that
fragments, and peak RSS rose well above glibc's defaults (``MMALIGN_RETURN_MEMORY=1`` in the
CLI keeps those); docs/benchmarks.md, "Memory and speed of the training step", has both.
:func:`release_freed_memory` between the phases of training (steps, evaluation, search, the
final write-up) bounds that: each phase starts from the live set instead of stacking on the
last phase's fragments.
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


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system now (``malloc_trim``); False where not glibc."""
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
