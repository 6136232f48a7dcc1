"""Roll-ups along the area tree: devices, active alerts, open incidents, warnings and units per child area.

Each table is read once, grouped by its exact area path (``GROUP BY area``: a few thousand distinct
grid paths at city scale), and the distinct paths are then assigned to the children of the asked
area with one vectorised prefix test per child (``np.char.startswith``), so a district's roll-up
costs five small queries whatever the number of devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from alerts._response_tables import incidents_table, units_table, warnings_table
from alerts._tables import alerts_table, not_closed
from alerts.events import Level
from devices.registry import devices_table


@dataclass(frozen=True, slots=True)
class Part:
    """One child area: its path and the path prefixes it spans (`devices.areas.AreaTree.covers`)."""

    path: str
    prefixes: tuple[str, ...]


@dataclass(slots=True)
class Figures:
    """One area's counts."""

    area: str
    devices: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    overdue: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)


def _assign(paths: Sequence[str], parts: Sequence[Part]) -> NDArray[np.int64]:
    """Index of the part each path lies in (-1: none), one vectorised test per prefix."""
    arr = np.asarray(list(paths), dtype=str)
    out = np.full(len(arr), -1, dtype=np.int64)
    if not len(arr):
        return out
    for k, part in enumerate(parts):
        for p in part.prefixes:
            hit = (arr == p) | np.char.startswith(arr, p + "/")
            out[(out < 0) & hit] = k
    return out


def _add(
    figures: list[Figures],
    rows: Sequence[tuple[str, str, int]],
    parts: Sequence[Part],
    attr: str,
) -> None:
    """Add ``(area, key, count)`` rows into each part's ``attr`` counter."""
    idx = _assign([r[0] for r in rows], parts)
    for (_, key, n), k in zip(rows, idx.tolist(), strict=True):
        if k >= 0:
            counter: dict[str, int] = getattr(figures[k], attr)
            counter[key] = counter.get(key, 0) + int(n)


def rollup(conn: Connection, parts: Sequence[Part], now_ms: int) -> list[Figures]:
    """The counts of every part, in the order given."""
    figures = [Figures(p.path) for p in parts]
    d = devices_table.c
    devices = conn.execute(
        sa.select(d.area, sa.func.count()).where(d.status != "decommissioned").group_by(d.area)
    ).all()
    idx = _assign([r[0] for r in devices], parts)
    for (_, n), k in zip(devices, idx.tolist(), strict=True):
        if k >= 0:
            figures[k].devices += int(n)
    a = alerts_table.c
    alerts = conn.execute(
        sa.select(a.area, a.level, sa.func.count())
        .where(not_closed, a.area.is_not(None))
        .group_by(a.area, a.level)
    ).all()
    _add(figures, [(r[0], Level(r[1]).label, r[2]) for r in alerts], parts, "alerts")
    i = incidents_table.c
    incidents = conn.execute(
        sa.select(i.area, i.state, sa.func.count())
        .where(i.state != "closed")
        .group_by(i.area, i.state)
    ).all()
    _add(figures, [(r[0], r[1], r[2]) for r in incidents], parts, "incidents")
    overdue = conn.execute(
        sa.select(i.area, sa.func.count())
        .where(i.state != "closed", i.overdue_state == i.state)
        .group_by(i.area)
    ).all()
    idx = _assign([r[0] for r in overdue], parts)
    for (_, n), k in zip(overdue, idx.tolist(), strict=True):
        if k >= 0:
            figures[k].overdue += int(n)
    w = warnings_table.c
    warnings = conn.execute(
        sa.select(w.area, w.level, sa.func.count())
        .where(w.state == "active", w.valid_from_ms <= now_ms, w.valid_until_ms > now_ms)
        .group_by(w.area, w.level)
    ).all()
    _add(figures, [(r[0], Level(r[1]).label, r[2]) for r in warnings], parts, "warnings")
    u = units_table.c
    units = conn.execute(
        sa.select(u.area, u.status, sa.func.count()).group_by(u.area, u.status)
    ).all()
    _add(figures, [(r[0], r[1], r[2]) for r in units], parts, "units")
    return figures
