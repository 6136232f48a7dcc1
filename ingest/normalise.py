"""Normalisation on whole batches: valid-range checks become quality flags (readings are kept, never dropped)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.registry import Registry
from ingest.batch import Quality, ReadingBatch


@dataclass(frozen=True, slots=True)
class RangeTable:
    """Valid ranges as arrays: ``lo[profile, metric]``/``hi[profile, metric]`` (NaN = unbounded)."""

    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    device_profile: NDArray[np.int32]  # profile index of each device index
    version: int

    @classmethod
    def from_registry(cls, registry: Registry) -> RangeTable:
        """Build the table from every profile the registry holds."""
        interner = registry.interner
        profiles = registry.profiles()
        for p in profiles:
            interner.profile_index(p.id)
        n_p, n_m = max(len(interner.profile_ids), 1), max(interner.metric_count, 1)
        lo = np.full((n_p, n_m), np.nan)
        hi = np.full((n_p, n_m), np.nan)
        for p in profiles:
            pi = interner.profile_index(p.id)
            for m in p.metrics:
                mi = interner.metrics[m.name]
                if m.min is not None:
                    lo[pi, mi] = m.min
                if m.max is not None:
                    hi[pi, mi] = m.max
        return cls(
            lo=lo, hi=hi, device_profile=interner.device_profiles().copy(), version=registry.version
        )


def flag_out_of_range(batch: ReadingBatch, table: RangeTable) -> ReadingBatch:
    """The batch with OUT_OF_RANGE set where a value lies outside its profile's valid range."""
    if len(batch) == 0:
        return batch
    prof = table.device_profile[batch.device]
    lo = table.lo[prof, batch.metric]
    hi = table.hi[prof, batch.metric]
    # NaN bounds compare False, so an unbounded side never flags.
    bad = (batch.value < lo) | (batch.value > hi)
    if not bad.any():
        return batch
    quality = batch.quality | np.where(bad, np.uint8(Quality.OUT_OF_RANGE), np.uint8(0))
    return batch.with_quality(quality.astype(np.uint8))
