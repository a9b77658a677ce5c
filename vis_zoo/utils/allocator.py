"""Give the C allocator's freed memory back to the operating system during long-video inference.

glibc's malloc keeps freed blocks in its heap for reuse and returns pages to the system only from
the top of the heap. A video's per-chunk temporaries (feature maps, mask logits, RLE strings) are
freed in a different order from the one they were allocated in, so the free space inside the heap
stays resident, and which blocks end up on top changes from chunk to chunk: the resident size
steps upwards as the heap fragments (R-50 at 180x320: 150 to 300 MB of freed but resident memory
during a call). `malloc_trim` hands back every free page of the heap, so the resident memory stays
at the memory in use.

    trimmer = FreedMemoryTrimmer()
    for chunk in chunks:
        ...                  # per-chunk work, its temporaries freed
        trimmer.step()       # at most once per `min_interval_s` seconds of CPU time

Elsewhere than glibc (macOS, musl) `release_freed_memory` does nothing and returns False.
"""

import ctypes
import ctypes.util
import sys
import time
from typing import Optional

__all__ = ["FreedMemoryTrimmer", "release_freed_memory"]

_MALLOC_TRIM = None  # glibc's malloc_trim once looked up; False when there is none


def _malloc_trim():
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                trim = libc.malloc_trim  # AttributeError on a libc other than glibc
                trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
                _MALLOC_TRIM = trim
            except (OSError, AttributeError):
                pass
    return _MALLOC_TRIM


def release_freed_memory() -> bool:
    """Return the free pages of every malloc heap to the operating system (glibc `malloc_trim(0)`:
    a few milliseconds). True when glibc released any memory."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim else False


class FreedMemoryTrimmer:
    """Calls `release_freed_memory` from a loop, at most once per `min_interval_s` seconds of this
    process's CPU time (all its threads).

    The interval bounds the cost: a trimmed page is zero-filled again when the next chunk touches
    it, so trimming after every fast chunk on a GPU would cost more than it saves; on CPU, with
    R-50 at 180x320 and one thread, it adds about 9,000 page faults per second of CPU time and
    measured 4% (MinVIS) to 8% (IFC) to the time of a call (tools/benchmark_trim.py). CPU time
    rather than wall-clock time: a run slowed down by other processes on the machine does the same
    work between two trims, so where it trims does not depend on the machine's load.
    """

    def __init__(self, min_interval_s: float = 1.0):
        self.min_interval_s = float(min_interval_s)
        self._last: Optional[float] = None
        self.num_trims = 0

    def step(self) -> None:
        now = time.process_time()
        if self._last is not None and now - self._last < self.min_interval_s:
            return
        self._last = now
        release_freed_memory()
        self.num_trims += 1
