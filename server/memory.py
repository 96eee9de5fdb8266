"""The process's memory within its container limit: large blocks go back to the system when freed.

glibc's malloc serves a block of 128 KiB or more with mmap, and returns it at free, until a large
block is freed: then it raises that threshold (up to 32 MiB) and serves later large blocks from its
heaps, whose freed memory it keeps. A server whose requests and answers pass through Python as
blocks of megabytes, on many threads (each with its own heap), so keeps the peak of every thread:
20 refused requests of 15 MB left the process 140 MB larger, the issue's attacks 1.4 GB.
A fixed threshold (mallopt M_MMAP_THRESHOLD, as the MALLOC_MMAP_THRESHOLD_ variable would set it)
keeps every block of 1 MiB or more on mmap, given back as soon as it is freed.

Not glibc (musl, macOS): nothing to do, `release_large_blocks` says False.
"""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
LARGE_BLOCK_BYTES = 1024 * 1024


def release_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Serve blocks of `threshold` bytes or more with mmap, always; True when the allocator took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
