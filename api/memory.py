"""The API process's memory after large answers: given back to the system, not kept.

An answer runs to megabytes (up to `Settings.max_answer_bytes`), and so do the stored
documents it is read from (a document with long logs: hundreds of kilobytes each). glibc's
malloc serves a block of 128 KB or more from its own mapping, given back when freed, but
raises that threshold to the size of each such block freed (up to 32 MB): after the first
large answer, the documents and answers that follow are carved from the heap, which keeps what
it grew to (measured: +225 MB after a few answers of 28 MB, for good). A fixed threshold keeps
every large block in its own mapping: after a large answer, the process is back to its size.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

#: glibc's `mallopt` parameter for the size from which a block is mapped on its own
M_MMAP_THRESHOLD = -3
#: blocks of at least this many bytes are mapped on their own (glibc's initial threshold)
MMAP_THRESHOLD = 128 * 1024


def give_back_large_blocks() -> bool:
    """Fix malloc's mapping threshold at `MMAP_THRESHOLD`; False where the C library has no
    `mallopt` (not glibc), or refused it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(name).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return False
