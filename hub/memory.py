"""The process's malloc settings, applied by ``hub run`` before the hub starts.

glibc serves a large allocation (a numpy column of a batch, a decoded payload, DuckDB's buffers)
with its own ``mmap`` and gives it back to the system when freed, but only above a threshold that
glibc raises to the size of every such block freed, up to 32 MB. After the first few big batches,
the hub's per-flush arrays come from the heap instead, and freed heap memory mostly stays resident.
A fixed threshold of 128 KiB (glibc's starting value, kept from moving) returns them. With 100,000
devices, the hub's resident size after draining a million readings went from 294-296 MB to 281-288 MB
here (275-277 MB with the same setting as the ``MALLOC_MMAP_THRESHOLD_`` tunable, in force from the
process's first allocation), and after 100,000 one-reading messages from 274 MB to 257-261 MB, with no
throughput change that the run-to-run noise would show (``bench/report.py``'s ``hub_rss_mb_100k``
scenario, in a scratch harness).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)
_ENV = "MALLOC_MMAP_THRESHOLD_"  # the same setting as a glibc tunable, read at process start


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes unless the environment sets it; True if set.

    Does nothing (False) on another C library (musl, macOS), which has no such setting.
    """
    if _ENV in os.environ:
        return False  # the operator's choice, already in force
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    if not mallopt(_M_MMAP_THRESHOLD, threshold):
        logger.warning("could not set malloc's mmap threshold to %s bytes", threshold)
        return False
    return True
