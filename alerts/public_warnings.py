"""Public warnings: the four colours of the Emergency Response Law, published for an area, adjusted, lifted.

A warning (预警) is a statement to the public and to every screen of an area: "orange rainstorm
warning for Riverside until 18:00, because ...". Unlike an alert it is issued by a person (a
commander or administrator), has a validity, and is adjusted (level, reason, validity) or lifted
(解除) by a person; it expires by itself when its validity ends. An area has at most one active
warning of a kind (the database keeps that): a worse storm *adjusts* the warning, it does not add a
second one. Every step is a line in an append-only history.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts._response_tables import ResponseDb, warning_audit_table, warnings_table
from alerts.errors import (
    InvalidAlertRequestError,
    InvalidTransitionError,
    ResponseConflictError,
    ResponseNotFoundError,
)
from alerts.events import Level
from devices.access import Role
from devices.areas import scope_clause

WARNING_ROLES = (Role.ADMIN, Role.COMMANDER)
"""Who publishes, adjusts and lifts warnings: a public statement is a commander's decision."""

KINDS = ("rainstorm", "flood", "waterlogging", "typhoon", "heat", "cold", "fog", "gale", "other")
"""The usual kinds (GB/T 27962 names a few more); any short lower-case word is accepted."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class WarningState(enum.StrEnum):
    """A warning is active until lifted by a person or expired by its validity."""

    ACTIVE = "active"
    LIFTED = "lifted"
    EXPIRED = "expired"


class WarningAction(enum.StrEnum):
    """The steps of a warning's history."""

    PUBLISH = "publish"
    ADJUST = "adjust"
    LIFT = "lift"
    EXPIRE = "expire"  # the hub's own, when the validity ends


@dataclass(frozen=True, slots=True)
class PublicWarning:
    """One warning, as it stands."""

    id: int
    area: str
    kind: str
    level: Level
    reason: str
    valid_from_ms: int
    valid_until_ms: int
    state: WarningState
    issued_by: str
    issued_ms: int
    updated_ms: int
    seq: int
    ended_ms: int | None = None

    def in_force(self, now_ms: int) -> bool:
        """Active and within its validity now."""
        return (
            self.state is WarningState.ACTIVE and self.valid_from_ms <= now_ms < self.valid_until_ms
        )


@dataclass(frozen=True, slots=True)
class WarningEntry:
    """One line of a warning's history: what it was after the step."""

    warning_id: int
    seq: int
    at_ms: int
    actor: str
    action: WarningAction
    level: Level
    valid_until_ms: int
    reason: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class WarningChange:
    """A warning after a step, and the history line that recorded it."""

    warning: PublicWarning
    entry: WarningEntry


def _warning_of(row: sa.Row[Any]) -> PublicWarning:
    return PublicWarning(
        id=row.id,
        area=row.area,
        kind=row.kind,
        level=Level(row.level),
        reason=row.reason,
        valid_from_ms=row.valid_from_ms,
        valid_until_ms=row.valid_until_ms,
        state=WarningState(row.state),
        issued_by=row.issued_by,
        issued_ms=row.issued_ms,
        updated_ms=row.updated_ms,
        seq=row.seq,
        ended_ms=row.ended_ms,
    )


def _entry_of(row: sa.Row[Any]) -> WarningEntry:
    return WarningEntry(
        warning_id=row.warning_id,
        seq=row.seq,
        at_ms=row.at_ms,
        actor=row.actor,
        action=WarningAction(row.action),
        level=Level(row.level),
        valid_until_ms=row.valid_until_ms,
        reason=row.reason,
        note=row.note,
    )


def check_level(level: Level) -> Level:
    """Warnings are blue, yellow, orange or red; ``info`` is not a warning."""
    if level is Level.INFO:
        msg = "a public warning is blue, yellow, orange or red"
        raise InvalidAlertRequestError(msg)
    return level


def _now_ms() -> int:
    return int(time.time() * 1000)


class WarningStore:
    """Warnings and their history in SQL; each change goes to ``on_change`` after its commit."""

    def __init__(
        self,
        db: ResponseDb,
        *,
        on_change: Callable[[WarningChange], None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Keep warnings in ``db``."""
        self._db = db
        self._on_change = on_change or (lambda _c: None)
        self._clock = clock

    def publish(
        self,
        *,
        area: str,
        kind: str,
        level: Level,
        reason: str,
        valid_until_ms: int,
        actor: str,
        valid_from_ms: int | None = None,
    ) -> WarningChange:
        """Publish a warning for ``area``.

        Raises:
            InvalidAlertRequestError: a bad kind or level, or a validity that ends before it starts.
            ResponseConflictError: the area has an active warning of this kind already (adjust it).
        """
        if not _KIND.match(kind):
            msg = f"warning kind {kind!r}: a lower-case word, e.g. {', '.join(KINDS)}"
            raise InvalidAlertRequestError(msg)
        check_level(level)
        now = self._clock()
        start = now if valid_from_ms is None else valid_from_ms
        if valid_until_ms <= max(start, now):
            msg = "a warning's validity must end in the future, after it starts"
            raise InvalidAlertRequestError(msg)

        def work(conn: Connection) -> list[WarningChange]:
            changes = self._expire(conn, now)  # an expired one must not block its successor
            values = {
                "area": area,
                "kind": kind,
                "level": int(level),
                "reason": reason,
                "valid_from_ms": start,
                "valid_until_ms": valid_until_ms,
                "state": WarningState.ACTIVE.value,
                "issued_by": actor,
                "issued_ms": now,
                "updated_ms": now,
                "seq": 1,
            }
            try:
                with conn.begin_nested():
                    warning_id = int(
                        conn.execute(
                            sa.insert(warnings_table)
                            .values(**values)
                            .returning(warnings_table.c.id)
                        ).scalar_one()
                    )
            except sa.exc.IntegrityError:
                msg = f"{area} has an active {kind} warning already: adjust or lift it"
                raise ResponseConflictError(msg) from None
            entry = WarningEntry(
                warning_id, 1, now, actor, WarningAction.PUBLISH, level, valid_until_ms, reason
            )
            self._insert_entry(conn, entry)
            return [*changes, WarningChange(self._get(conn, warning_id), entry)]

        return self._commit(work)[-1]

    def adjust(
        self,
        warning_id: int,
        *,
        actor: str,
        level: Level | None = None,
        reason: str | None = None,
        valid_until_ms: int | None = None,
        note: str = "",
    ) -> WarningChange:
        """Change an active warning's level, reason or validity (recorded with ``note``).

        Raises:
            ResponseNotFoundError: no such warning.
            InvalidTransitionError: it was lifted or has expired.
        """
        if level is not None:
            check_level(level)

        def work(conn: Connection) -> list[WarningChange]:
            now = self._clock()
            changes = self._expire(conn, now)
            w = self._live(conn, warning_id, WarningAction.ADJUST)
            until = w.valid_until_ms if valid_until_ms is None else valid_until_ms
            if until <= now:
                msg = "to end a warning now, lift it"
                raise InvalidAlertRequestError(msg)
            new_level = w.level if level is None else level
            new_reason = w.reason if reason is None else reason
            values = {
                "level": int(new_level),
                "reason": new_reason,
                "valid_until_ms": until,
                "updated_ms": now,
                "seq": w.seq + 1,
            }
            conn.execute(
                sa.update(warnings_table).where(warnings_table.c.id == w.id).values(**values)
            )
            entry = WarningEntry(
                w.id,
                w.seq + 1,
                now,
                actor,
                WarningAction.ADJUST,
                new_level,
                until,
                new_reason,
                note,
            )
            self._insert_entry(conn, entry)
            return [*changes, WarningChange(self._get(conn, w.id), entry)]

        return self._commit(work)[-1]

    def lift(self, warning_id: int, *, actor: str, note: str = "") -> WarningChange:
        """End an active warning now (解除).

        Raises:
            ResponseNotFoundError: no such warning.
            InvalidTransitionError: it was lifted or has expired already.
        """

        def work(conn: Connection) -> list[WarningChange]:
            now = self._clock()
            changes = self._expire(conn, now)
            w = self._live(conn, warning_id, WarningAction.LIFT)
            return [*changes, self._end(conn, w, now, actor, WarningAction.LIFT, note)]

        return self._commit(work)[-1]

    def expire_due(self) -> list[WarningChange]:
        """Expire the active warnings whose validity ended (the hub's tick)."""
        return self._commit(lambda conn: self._expire(conn, self._clock()))

    # -- the parts of a write ----------------------------------------------------------------------

    def _commit(self, work: Callable[[Connection], list[WarningChange]]) -> list[WarningChange]:
        changes = self._db.write(work)
        for change in changes:
            self._on_change(change)
        return changes

    def _expire(self, conn: Connection, now: int) -> list[WarningChange]:
        t = warnings_table.c
        rows = conn.execute(
            sa.select(warnings_table).where(
                t.state == WarningState.ACTIVE.value, t.valid_until_ms <= now
            )
        ).all()
        return [
            self._end(conn, _warning_of(r), now, "system", WarningAction.EXPIRE, "validity ended")
            for r in rows
        ]

    def _end(
        self,
        conn: Connection,
        w: PublicWarning,
        now: int,
        actor: str,
        action: WarningAction,
        note: str,
    ) -> WarningChange:
        state = WarningState.LIFTED if action is WarningAction.LIFT else WarningState.EXPIRED
        conn.execute(
            sa.update(warnings_table)
            .where(warnings_table.c.id == w.id)
            .values(state=state.value, ended_ms=now, updated_ms=now, seq=w.seq + 1)
        )
        entry = WarningEntry(
            w.id, w.seq + 1, now, actor, action, w.level, w.valid_until_ms, w.reason, note
        )
        self._insert_entry(conn, entry)
        return WarningChange(self._get(conn, w.id), entry)

    def _live(self, conn: Connection, warning_id: int, action: WarningAction) -> PublicWarning:
        w = self._get(conn, warning_id)
        if w.state is not WarningState.ACTIVE:
            reason = f"warning {warning_id} is {w.state.value}: publish a new one instead"
            raise InvalidTransitionError(w.state.value, action.value, [], reason=reason)
        return w

    @staticmethod
    def _get(conn: Connection, warning_id: int) -> PublicWarning:
        row = conn.execute(
            sa.select(warnings_table).where(warnings_table.c.id == warning_id)
        ).first()
        if row is None:
            raise ResponseNotFoundError(kind="warning", key=warning_id)
        return _warning_of(row)

    @staticmethod
    def _insert_entry(conn: Connection, e: WarningEntry) -> None:
        conn.execute(
            sa.insert(warning_audit_table).values(
                warning_id=e.warning_id,
                seq=e.seq,
                at_ms=e.at_ms,
                actor=e.actor,
                action=e.action.value,
                level=int(e.level),
                valid_until_ms=e.valid_until_ms,
                reason=e.reason,
                note=e.note,
            )
        )

    # -- reads ------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The store's clock (what "in force" is judged by)."""
        return self._clock()

    def get(self, warning_id: int) -> PublicWarning:
        """The warning ``warning_id``."""
        return self._db.read(lambda conn: self._get(conn, warning_id))

    def warnings(
        self,
        *,
        within: Sequence[str] | None = None,
        above: Sequence[str] = (),
        active: bool | None = None,
        limit: int = 200,
    ) -> list[PublicWarning]:
        """Warnings newest first: in any of the prefixes ``within``, or for one of the areas ``above``.

        A screen of an area shows the warnings for that area, for the areas above it (``above``:
        its chain up the tree) and for the areas within it (``within``: what it covers).
        ``active`` True keeps those in force now (an active one past its validity is not).
        """
        t = warnings_table.c
        where: list[sa.ColumnElement[bool]] = []
        if within is not None:
            place = scope_clause(t.area, within)
            where.append(sa.or_(place, t.area.in_(list(above))) if above else place)
        if active is not None:
            now = self._clock()
            in_force = sa.and_(
                t.state == WarningState.ACTIVE.value, t.valid_from_ms <= now, t.valid_until_ms > now
            )
            where.append(in_force if active else sa.not_(in_force))
        q = (
            sa.select(warnings_table)
            .where(*where)
            .order_by(t.level.desc(), t.issued_ms.desc(), t.id.desc())
            .limit(limit)
        )
        return [_warning_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]

    def history(self, warning_id: int) -> list[WarningEntry]:
        """The warning's history, oldest first."""
        t = warning_audit_table
        q = sa.select(t).where(t.c.warning_id == warning_id).order_by(t.c.seq)
        return [_entry_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]
