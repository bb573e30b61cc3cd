"""Keep freed memory inside the process while training or extracting features on a CPU.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh
`mmap` and returns it with `munmap` when freed. A training step at the tub's 120x160 frames
allocates activations of 35-70 MiB each (160 frames x 24 channels x 58 x 78), so every
step asks the kernel for those pages again and zero-fills them on first touch: an ELU
over one such tensor took 47 ms fresh against 26 ms into reused memory, and the whole
step ran 1.3x faster with the blocks kept, EfficientNet-Lite0's feature extraction 2.3x
(docs/benchmarks.md, "Keeping freed memory").
PyTorch's CPU allocator has no cache of its own, so the fix is malloc's: serve large
blocks from the heap and never trim it. The price is that the process keeps its peak
memory until it exits, which a training process does anyway. Called by `train`
(`train.heap=keep`, the default) and `extract_features`; it is a setting of the whole
process, so a library that embeds steertime decides by those two switches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1

_kept = False

# `train.heap` and `steertime features --heap`: keep (this module) or system (as it comes).
HEAPS = ("keep", "system")


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (no mmap per block, no trimming).

    Returns True when the setting is in force (now or from an earlier call); False where
    the C library is not glibc (macOS, Windows, musl), which is then left as it was."""
    global _kept
    if _kept:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 on failure.
    _kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    if _kept:
        log.debug("malloc: large blocks from the heap, never trimmed (train.heap=keep)")
    return _kept
