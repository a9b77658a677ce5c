"""Memory of the measuring process, in one unit (GB = 2^30 bytes) for every benchmark number.

Peak resident memory on CPU comes from `getrusage(RUSAGE_SELF).ru_maxrss`, which Linux reports in
kilobytes; current resident memory from /proc/self/statm (pages); CUDA memory from torch's
allocator counters (bytes). Every figure in the model zoo goes through these helpers.
"""

import os
import resource
from typing import Optional

GB = 1024**3

__all__ = ["GB", "bytes_to_gb", "current_rss_gb", "peak_cuda_gb", "peak_rss_gb", "total_ram_gb"]


def bytes_to_gb(n: float) -> float:
    return n / GB


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in kB on Linux)."""
    return bytes_to_gb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def current_rss_gb() -> float:
    """Resident memory of this process now (/proc/self/statm, second field, in pages)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return bytes_to_gb(pages * os.sysconf("SC_PAGE_SIZE"))


def peak_cuda_gb(device=None) -> float:
    """`torch.cuda.max_memory_allocated` of `device` (the current one when None)."""
    import torch

    return bytes_to_gb(torch.cuda.max_memory_allocated(device))


def total_ram_gb() -> Optional[float]:
    """The machine's RAM (/proc/meminfo MemTotal, kB), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            return bytes_to_gb(int(f.readline().split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        return None
