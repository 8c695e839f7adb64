"""Memory reuse for the network's large activations (glibc's malloc).

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap() and returns it on free,
so each layer of a 16 s chunk at the published size gets new pages from the kernel, zeroed and faulted in one by
one: measured 22-35 % of the forward's time (benchmarks/README.md, "Issue 18 levers"). Served from the heap and
kept after free instead, the same blocks are reused from chunk to chunk; the peak grows by about 100-150 MB.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
KEEP_BYTES = 2**31 - 1  # freed memory at the heap's top kept up to this much (mallopt takes an int)


def reuse_freed_memory() -> bool:
    """Process-wide: large blocks from the heap, freed memory kept for reuse. For a program's entry point (the
    CLI calls it); a library user may call it too. False where the C library has no mallopt (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
