"""A rain storm over one district of the demo city, for `hub demo` and the alert tests.

From its start the storm's rain rate ramps up to a peak and stays there: rain gauges in the district
climb, water levels there rise by a fixed rate per hour of storm (capped), a few manhole covers are
pushed open once the rain is heavy, and one street loses power: its sensors go silent. Everything is
a pure function of (device, time since the storm began), so a run is repeatable and a test can say
exactly what to expect.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hub.simmodels import Group, Moment, Values

Rows = NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class Storm:
    """A storm over ``district`` (an area prefix such as ``demo/riverside``) from ``start`` (epoch s).

    Attributes:
        district: area path prefix the storm covers.
        start: when it begins (epoch seconds).
        peak_mm_h: rain rate at its peak.
        ramp_s: seconds from start to the peak.
        rise_m_h: how fast water levels in the district rise while it rains at the peak.
        max_rise_m: the most the water rises.
        open_covers: fraction of the district's manhole covers pushed open once rain passes 30 mm/h.
        dark_street: area prefix of the street that loses power (its sensors stop reporting), or "".
        dark_after_s: seconds after the start at which that street goes dark.
    """

    district: str
    start: float
    peak_mm_h: float = 80.0
    ramp_s: float = 300.0
    rise_m_h: float = 6.0
    max_rise_m: float = 3.0
    open_covers: float = 0.15
    dark_street: str = ""
    dark_after_s: float = 120.0

    def _in(self, group: Group, rows: Rows, prefix: str) -> NDArray[np.bool_]:
        areas = group.areas[rows]
        return np.asarray((areas == prefix) | np.char.startswith(areas, prefix + "/"))

    def rate(self, now: float) -> float:
        """Rain rate (mm/h) of the storm at ``now``."""
        elapsed = now - self.start
        if elapsed <= 0:
            return 0.0
        return self.peak_mm_h * min(1.0, elapsed / self.ramp_s)

    def rise(self, now: float) -> float:
        """How far (m) water in the district has risen by ``now``."""
        elapsed = max(0.0, now - self.start)
        return min(self.max_rise_m, self.rise_m_h * elapsed / 3600.0)

    def adjust(self, group: Group, rows: Rows, moment: Moment, values: Values) -> None:
        """Add the storm to the values of the district's devices (see `hub.simmodels.Scenario`)."""
        rate = self.rate(moment.now)
        if rate <= 0 or len(rows) == 0:
            return
        inside = self._in(group, rows, self.district)
        if not inside.any():
            return
        if "rain_rate" in values:
            values["rain_rate"] = np.where(inside, values["rain_rate"] + rate, values["rain_rate"])
        if "rainfall" in values:
            fallen = values["rainfall"]
            if fallen.ndim == 2:  # per-minute batches (rainco): mm per minute
                extra = rate / 60.0
                values["rainfall"] = np.where(inside[:, None], fallen + extra, fallen)
            else:  # mm since the last report
                extra = rate * moment.period_s / 3600.0
                values["rainfall"] = np.where(inside, fallen + np.round(extra, 1), fallen)
        if "water_level" in values:
            # The simulator writes water levels in the vendor's unit, cm.
            values["water_level"] = np.where(
                inside, values["water_level"] + 100.0 * self.rise(moment.now), values["water_level"]
            )
        if "open" in values and rate >= 30.0:
            pushed = _stable_fraction(group, rows) < self.open_covers
            values["open"] = np.where(inside & pushed, 1.0, values["open"])
            if "water" in values:
                values["water"] = np.where(inside & pushed, 1.0, values["water"])

    def silent(self, group: Group, rows: Rows, moment: Moment) -> NDArray[np.bool_]:
        """Which of ``rows`` send nothing now: the dark street's devices, once it has gone dark."""
        if not self.dark_street or moment.now - self.start < self.dark_after_s:
            return np.zeros(len(rows), dtype=np.bool_)
        return self._in(group, rows, self.dark_street)


def _stable_fraction(group: Group, rows: Rows) -> NDArray[np.float64]:
    """A number in [0, 1) per device that never changes: which covers the storm opens."""
    # crc32, not hash(): str hashes change from process to process.
    ids = [group.ids[r].encode() for r in rows.tolist()]
    return np.array([(zlib.crc32(i) % 10_007) / 10_007 for i in ids], dtype=np.float64)


DEMO_DISTRICT = "demo/riverside"
DEMO_DARK_STREET = "demo/riverside/binjiang-rd"


def demo_storm(start: float) -> Storm:
    """The storm `hub demo` runs: quick enough that alerts show within minutes, not hours.

    Rain ramps to 100 mm/h in a minute (covers open after ~20 s), the river in Riverside rises
    15 m/h up to 3 m (rate alerts within two minutes, level alerts over the next ten), Binjiang
    Road goes dark after 90 s, and the 1-hour rain sums cross 20 mm after about 13 minutes.
    """
    return Storm(
        DEMO_DISTRICT,
        start,
        peak_mm_h=100.0,
        ramp_s=60.0,
        rise_m_h=15.0,
        max_rise_m=3.0,
        open_covers=0.2,
        dark_street=DEMO_DARK_STREET,
        dark_after_s=90.0,
    )
