"""Response units (drainage crews, traffic police, fire, municipal works): records, the store, and nearest-unit suggestions.

A unit belongs to an area, offers skills, has a status (available, dispatched, on scene, off duty)
and a last known position, and may have a login (``account``, a `devices.access.Role.UNIT` user)
through which its crew reports. Dispatches (`alerts.incident_store`) move its status.

Suggestions rank every unit at once: the haversine distance from the incident to all units is one
numpy expression over their coordinate columns, then masks for status and skills, then an
``argsort``. A city has hundreds of units, not millions: a full vectorised pass costs microseconds
and needs no spatial index (the camera index in ``video.index`` is for thousands of cameras and
radius queries); past ~10^5 units a KD-tree over unit-sphere xyz would be the next step.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from alerts._response_tables import LIVE_DISPATCH, ResponseDb, dispatches_table, units_table
from alerts.errors import InvalidAlertRequestError, ResponseConflictError, ResponseNotFoundError
from devices.areas import scope_clause
from devices.geo import haversine_m

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UnitKind(enum.StrEnum):
    """What a unit is."""

    DRAINAGE = "drainage"  # 排水抢险队
    TRAFFIC_POLICE = "traffic_police"  # 交警
    FIRE = "fire"  # 消防救援
    MUNICIPAL_WORKS = "municipal_works"  # 市政抢修
    MEDICAL = "medical"  # 急救
    OTHER = "other"


DEFAULT_SKILLS: dict[UnitKind, tuple[str, ...]] = {
    UnitKind.DRAINAGE: ("drainage",),
    UnitKind.TRAFFIC_POLICE: ("traffic",),
    UnitKind.FIRE: ("fire", "gas", "rescue"),
    UnitKind.MUNICIPAL_WORKS: ("municipal_works",),
    UnitKind.MEDICAL: ("medical",),
    UnitKind.OTHER: (),
}
"""A unit's skills when it is registered without any (what `alerts/data/incidents.yaml` asks for)."""


class UnitStatus(enum.StrEnum):
    """Where a unit is with its work."""

    AVAILABLE = "available"
    DISPATCHED = "dispatched"  # on its way
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"  # not to be sent (between shifts, out of service)


@dataclass(frozen=True, slots=True)
class Unit:
    """One response unit."""

    id: str
    name: str
    kind: UnitKind
    area: str
    skills: tuple[str, ...]
    status: UnitStatus
    updated_ms: int
    lat: float | None = None
    lon: float | None = None
    position_ms: int | None = None
    account: str | None = None
    contact: str = ""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A unit that could go, how far it is (metres, great circle) and about when it would be there."""

    unit: Unit
    distance_m: float
    eta_s: float


def rank(
    units: Sequence[Unit],
    lat: float,
    lon: float,
    *,
    skills: Sequence[str] = (),
    k: int = 5,
    speed_kmh: float = 30.0,
    detour: float = 1.3,
) -> list[Suggestion]:
    """The ``k`` nearest available units with any of ``skills`` (any unit when empty), nearest first.

    Units without a position are left out: nobody can say how far they are. The ETA is the great
    circle stretched by ``detour`` (streets are not straight) at ``speed_kmh``.
    """
    if not units:
        return []
    lats = np.array([u.lat if u.lat is not None else np.nan for u in units], dtype=np.float64)
    lons = np.array([u.lon if u.lon is not None else np.nan for u in units], dtype=np.float64)
    available = np.array([u.status is UnitStatus.AVAILABLE for u in units], dtype=np.bool_)
    wanted = set(skills)
    suits = np.array([not wanted or bool(wanted & set(u.skills)) for u in units], dtype=np.bool_)
    distance = haversine_m(lat, lon, lats, lons)
    ok = available & suits & np.isfinite(distance)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(distance[idx], kind="stable")][:k]
    metres_per_s = speed_kmh / 3.6
    return [
        Suggestion(units[i], float(distance[i]), float(distance[i] * detour / metres_per_s))
        for i in idx.tolist()
    ]


def unit_of(row: sa.Row[Any]) -> Unit:
    """A units row as a record."""
    return Unit(
        id=row.id,
        name=row.name,
        kind=UnitKind(row.kind),
        area=row.area,
        skills=tuple(row.skills or ()),
        status=UnitStatus(row.status),
        updated_ms=row.updated_ms,
        lat=row.lat,
        lon=row.lon,
        position_ms=row.position_ms,
        account=row.account,
        contact=row.contact,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class UnitStore:
    """Units in SQL; each change goes to ``on_change`` after its commit."""

    def __init__(
        self,
        db: ResponseDb,
        *,
        on_change: Callable[[Unit], None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Keep units in ``db``."""
        self._db = db
        self._on_change = on_change or (lambda _u: None)
        self._clock = clock

    def put(self, unit: Unit) -> Unit:
        """Create or replace a unit (its status and position are kept when it exists).

        Raises:
            InvalidAlertRequestError: a bad id, or a position with only one coordinate.
            ResponseConflictError: its account already speaks for another unit.
        """
        if not _ID.match(unit.id):
            msg = f"unit id {unit.id!r}: letters, digits, '.', '_' or '-', at most 64"
            raise InvalidAlertRequestError(msg)
        if (unit.lat is None) != (unit.lon is None):
            msg = "give both lat and lon, or neither"
            raise InvalidAlertRequestError(msg)
        now = self._clock()
        skills = list(unit.skills or DEFAULT_SKILLS[unit.kind])

        def work(conn: sa.Connection) -> Unit:
            old = conn.execute(sa.select(units_table).where(units_table.c.id == unit.id)).first()
            values: dict[str, object] = {
                "name": unit.name,
                "kind": unit.kind.value,
                "area": unit.area,
                "skills": skills,
                "account": unit.account,
                "contact": unit.contact,
                "updated_ms": now,
            }
            if unit.lat is not None:
                values |= {"lat": unit.lat, "lon": unit.lon, "position_ms": now}
            try:
                if old is None:
                    values |= {"id": unit.id, "status": unit.status.value}
                    conn.execute(sa.insert(units_table).values(**values))
                else:
                    conn.execute(
                        sa.update(units_table).where(units_table.c.id == unit.id).values(**values)
                    )
            except sa.exc.IntegrityError:
                msg = f"account {unit.account!r} already reports for another unit"
                raise ResponseConflictError(msg) from None
            return self._get(conn, unit.id)

        saved = self._db.write(work)
        self._on_change(saved)
        return saved

    def get(self, unit_id: str) -> Unit:
        """The unit ``unit_id``.

        Raises:
            ResponseNotFoundError: no such unit.
        """
        return self._db.read(lambda conn: self._get(conn, unit_id))

    @staticmethod
    def _get(conn: sa.Connection, unit_id: str) -> Unit:
        row = conn.execute(sa.select(units_table).where(units_table.c.id == unit_id)).first()
        if row is None:
            raise ResponseNotFoundError(kind="unit", key=unit_id)
        return unit_of(row)

    def of_account(self, user: str) -> Unit | None:
        """The unit a `Role.UNIT` login reports for, if any."""
        row = self._db.read(
            lambda conn: conn.execute(
                sa.select(units_table).where(units_table.c.account == user)
            ).first()
        )
        return unit_of(row) if row is not None else None

    def units(
        self,
        *,
        within: Sequence[str] | None = None,
        status: UnitStatus | None = None,
        kind: UnitKind | None = None,
    ) -> list[Unit]:
        """Units in any of the area prefixes ``within`` (all when None), by id."""
        q = sa.select(units_table).order_by(units_table.c.id)
        if within is not None:
            q = q.where(scope_clause(units_table.c.area, within))
        if status is not None:
            q = q.where(units_table.c.status == status.value)
        if kind is not None:
            q = q.where(units_table.c.kind == kind.value)
        rows = self._db.read(lambda conn: conn.execute(q).all())
        return [unit_of(r) for r in rows]

    def move(self, unit_id: str, lat: float, lon: float) -> Unit:
        """Record where the unit is now."""
        now = self._clock()

        def work(conn: sa.Connection) -> Unit:
            self._get(conn, unit_id)
            conn.execute(
                sa.update(units_table)
                .where(units_table.c.id == unit_id)
                .values(lat=lat, lon=lon, position_ms=now, updated_ms=now)
            )
            return self._get(conn, unit_id)

        unit = self._db.write(work)
        self._on_change(unit)
        return unit

    def set_duty(self, unit_id: str, *, on_duty: bool) -> Unit:
        """Take a unit off duty (never while it is on a dispatch) or back on.

        Raises:
            ResponseConflictError: it is dispatched or on scene.
        """
        now = self._clock()

        def work(conn: sa.Connection) -> Unit:
            unit = self._get(conn, unit_id)
            if unit.status in (UnitStatus.DISPATCHED, UnitStatus.ON_SCENE):
                msg = f"unit {unit_id} is {unit.status.value}: recall it or let it complete first"
                raise ResponseConflictError(msg)
            status = UnitStatus.AVAILABLE if on_duty else UnitStatus.OFF_DUTY
            conn.execute(
                sa.update(units_table)
                .where(units_table.c.id == unit_id)
                .values(status=status.value, updated_ms=now)
            )
            return self._get(conn, unit_id)

        unit = self._db.write(work)
        self._on_change(unit)
        return unit

    def delete(self, unit_id: str) -> Unit:
        """Remove a unit that is on no live dispatch; returns what it was."""

        def work(conn: sa.Connection) -> Unit:
            unit = self._get(conn, unit_id)
            live = conn.execute(
                sa.select(sa.func.count())
                .select_from(dispatches_table)
                .where(
                    dispatches_table.c.unit_id == unit_id,
                    dispatches_table.c.status.in_(LIVE_DISPATCH),
                )
            ).scalar_one()
            if live:
                msg = f"unit {unit_id} is on a dispatch: recall it first"
                raise ResponseConflictError(msg)
            conn.execute(sa.delete(units_table).where(units_table.c.id == unit_id))
            return unit

        return self._db.write(work)
