"""Per-period figures: incidents opened, closed and overdue per area, and how fast the city responded.

For the incidents opened in a period, grouped by the area at a chosen depth of the path (district:
2, street: 3, ...): how many, by level and type, how many were closed, dismissed, still open at the
period's end, how many steps overran and how many were escalated; and the minutes from opening to
registration, dispatch, arrival and closing (count, mean, median, 90th percentile). The times are
numpy columns (NaN where a step was never reached), grouped by one ``np.unique``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alerts.incidents import Incident, IncidentState

STEPS = ("register", "dispatch", "arrive", "close")
_MILESTONES = ("registered_ms", "dispatched_ms", "arrived_ms", "closed_ms")


@dataclass(frozen=True, slots=True)
class Timing:
    """Minutes from opening to one step over the incidents that reached it."""

    count: int
    mean_min: float | None
    median_min: float | None
    p90_min: float | None


@dataclass(frozen=True, slots=True)
class AreaFigures:
    """One area's figures for the period."""

    area: str
    opened: int
    closed: int
    dismissed: int
    open_at_end: int
    overdue_steps: int
    escalated: int
    by_level: dict[str, int]
    by_type: dict[str, int]
    times: dict[str, Timing]


@dataclass(frozen=True, slots=True)
class PeriodReport:
    """The period, the grouping depth, a row per area, and the whole (area ``*``)."""

    since_ms: int
    until_ms: int
    depth: int
    areas: list[AreaFigures]
    total: AreaFigures
    meta: dict[str, Any] = field(default_factory=dict)


def group_area(area: str, depth: int) -> str:
    """The first ``depth`` segments of an area path (the whole path when shorter)."""
    return "/".join(area.split("/")[:depth])


def _timing(minutes: NDArray[np.float64]) -> Timing:
    done = minutes[np.isfinite(minutes)]
    if len(done) == 0:
        return Timing(0, None, None, None)
    mean, median, p90 = np.mean(done), np.median(done), np.percentile(done, 90)
    return Timing(len(done), round(float(mean), 2), round(float(median), 2), round(float(p90), 2))


def _figures(
    area: str,
    rows: Sequence[Incident],
    delays: Mapping[str, NDArray[np.float64]],
    overdue: Mapping[int, int],
    until_ms: int,
) -> AreaFigures:
    closed = [i for i in rows if i.closed_ms is not None and i.closed_ms < until_ms]
    return AreaFigures(
        area=area,
        opened=len(rows),
        closed=sum(1 for i in closed if i.outcome != "dismissed"),
        dismissed=sum(1 for i in closed if i.outcome == "dismissed"),
        open_at_end=len(rows) - len(closed),
        overdue_steps=sum(overdue.get(i.id, 0) for i in rows),
        escalated=sum(1 for i in rows if i.escalations),
        by_level=dict(sorted(Counter(i.level.label for i in rows).items())),
        by_type=dict(sorted(Counter(i.type for i in rows).items())),
        times={step: _timing(delays[step]) for step in STEPS},
    )


def period_report(
    incidents: Sequence[Incident],
    overdue: Mapping[int, int],
    *,
    since_ms: int,
    until_ms: int,
    depth: int = 2,
) -> PeriodReport:
    """Figures per area (cut at ``depth``) for the incidents opened in ``[since_ms, until_ms)``.

    ``overdue`` maps incident ids to how many of their steps overran. A step reached after the
    period's end does not count in its times (the report says what was known then).
    """
    rows = [i for i in incidents if since_ms <= i.opened_ms < until_ms]
    opened = np.array([i.opened_ms for i in rows], dtype=np.float64)
    delays: dict[str, NDArray[np.float64]] = {}
    for step, name in zip(STEPS, _MILESTONES, strict=True):
        at = np.array(
            [np.nan if (v := getattr(i, name)) is None or v >= until_ms else v for i in rows],
            dtype=np.float64,
        )
        if step == "close":  # a dismissed case was never responded to: not a closing time
            dismissed = np.array([i.outcome == "dismissed" for i in rows], dtype=np.bool_)
            at[dismissed] = np.nan
        delays[step] = (at - opened) / 60_000
    keys = np.array([group_area(i.area, depth) for i in rows], dtype=object)
    areas: list[AreaFigures] = []
    if rows:
        names, inverse = np.unique(keys.astype(str), return_inverse=True)
        for k, name in enumerate(names.tolist()):
            mask = inverse == k
            members = [i for i, m in zip(rows, mask.tolist(), strict=True) if m]
            areas.append(
                _figures(name, members, {s: d[mask] for s, d in delays.items()}, overdue, until_ms)
            )
    total = _figures("*", rows, delays, overdue, until_ms)
    still = sum(1 for i in rows if i.state is not IncidentState.CLOSED)
    return PeriodReport(since_ms, until_ms, depth, areas, total, meta={"open_now": still})
