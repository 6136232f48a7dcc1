"""The process's memory settings for ``hub run``: malloc's mmap threshold and the garbage collector.

**malloc.** Applied before the hub starts.

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

**The collector.** Applied once the hub has started (`settle_collector`). What start-up built is
frozen, and the young generation is collected after 50,000 new objects instead of Python's 700.
Under load, every object that lives a few tens of milliseconds (a batch in flight, a frame, a
screen's send) outlived two young collections, and was promoted to the oldest generation. About
20,000 arrived every 10 s at 20,000 msg/s, so the collector walked all ~86,000 tracked objects
(200 screens' connections, the camera source's entries, ...) every 10 s. Each walk stopped
every thread for 36-66 ms, found nothing to free, and was what `bench/feed.py`'s
publish-to-screen p99 measured. With the higher threshold, no full collection ran in the
measured minute, a young one ran every ~2 s for ~20 ms, and that bench's p99 went from 99-167 ms
(three runs) to 80-81 ms (two runs; same host, same hour). Short-lived objects die by reference counting before any
collection sees them, so only garbage in cycles waits longer (at most 50,000 objects, a few MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)
_ENV = "MALLOC_MMAP_THRESHOLD_"  # the same setting as a glibc tunable, read at process start

GC_THRESHOLDS = (50_000, 20, 10)
"""The collector's thresholds: young generation (objects), middle and old (collections below)."""


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


def settle_collector(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Freeze what exists now and collect young objects less often (see the module's docstring).

    Call once, when start-up is done, in a process that runs one hub for its whole life: frozen
    objects are never collected, so a process that starts hub after hub (the test suite) would
    keep every stopped hub's cycles alive. The registry, rule tables and interned names built at
    start-up are then out of every full collection (one took 130-160 ms with 10,000 devices).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
