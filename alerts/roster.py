"""The duty roster (值班表): who is on duty, in which role, for which area, per shift; and the notices sent to them.

Escalations go to *people*, not to a channel: an overdue incident handed up to the district is told
to whoever is on duty for the district right now. `Roster.notify` finds them (walking up the area
chain when an area has nobody on duty), records one notice per person (each person's inbox:
``GET /api/v1/roster/notices``) and hands the message to the duty receivers (an SMS or IM gateway's
webhook, `alerts.webhook.WebhookNotifier`), which reach them by the contact the shift names.

`DutyNotifier` does the same for alert changes (an alert nobody acknowledged in time; a new alert at
or above a level): it subscribes to the alert feed, only queues (it runs on the thread that changed
the alert), and the hub's response tick flushes the queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts._response_tables import ResponseDb, duty_notices_table, shifts_table
from alerts.errors import InvalidAlertRequestError, ResponseNotFoundError
from alerts.events import Level
from alerts.grouping import Sender
from alerts.lifecycle import AlertChange, ChangeKind
from alerts.webhook import Outgoing
from devices.access import Role
from devices.areas import scope_clause

logger = logging.getLogger(__name__)

DUTY_ROLES = (Role.COMMANDER, Role.OFFICER, Role.ADMIN, Role.VIEWER)
"""Roles a shift may be in (units have their own status, not shifts)."""
ESCALATION_ROLES = (Role.COMMANDER, Role.OFFICER)
"""Who is told when something is handed up to an area."""
MAX_SHIFT_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Shift:
    """One person on duty for an area in a role, from ``starts_ms`` until ``ends_ms``."""

    id: int
    area: str
    role: Role
    user: str
    starts_ms: int
    ends_ms: int
    contact: str = ""
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class NewShift:
    """A shift to add."""

    area: str
    role: Role
    user: str
    starts_ms: int
    ends_ms: int
    contact: str = ""


@dataclass(frozen=True, slots=True)
class DutyNotice:
    """What one person on duty was told, and why."""

    id: int
    at_ms: int
    user: str
    role: Role
    area: str
    subject: str  # "incident:12", "alert:40", "warning:3"
    reason: str  # "escalated", "overdue", "alert_unacknowledged", "alert_raised"
    message: str
    contact: str = ""


def _shift_of(row: sa.Row[Any]) -> Shift:
    return Shift(
        id=row.id,
        area=row.area,
        role=Role(row.role),
        user=row.user,
        starts_ms=row.starts_ms,
        ends_ms=row.ends_ms,
        contact=row.contact,
        created_by=row.created_by,
    )


def _notice_of(row: sa.Row[Any]) -> DutyNotice:
    return DutyNotice(
        id=row.id,
        at_ms=row.at_ms,
        user=row.user,
        role=Role(row.role),
        area=row.area,
        subject=row.subject,
        reason=row.reason,
        message=row.message,
        contact=row.contact,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class Roster:
    """Shifts and duty notices in SQL, and the receivers that carry notices to people."""

    def __init__(
        self,
        db: ResponseDb,
        *,
        receivers: Sequence[Sender] = (),
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Keep the roster in ``db``; notices also go to ``receivers``."""
        self._db = db
        self._receivers = list(receivers)
        self._clock = clock
        self._gaps: set[str] = set()
        self.unanswered = 0

    # -- shifts -------------------------------------------------------------------------------------

    def add(self, shifts: Sequence[NewShift], *, actor: str) -> list[Shift]:
        """Add shifts (all or none).

        Raises:
            InvalidAlertRequestError: a shift that ends before it starts, lasts over a week, or is in
                a role that does not take duty.
        """
        for s in shifts:
            if s.role not in DUTY_ROLES:
                roles = ", ".join(r.value for r in DUTY_ROLES)
                msg = f"shift of {s.user}: role {s.role.value} takes no duty (one of {roles})"
                raise InvalidAlertRequestError(msg)
            if not 0 < s.ends_ms - s.starts_ms <= MAX_SHIFT_MS:
                msg = f"shift of {s.user}: it must end after it starts, within a week"
                raise InvalidAlertRequestError(msg)

        def work(conn: Connection) -> list[Shift]:
            out = []
            for s in shifts:
                shift_id = conn.execute(
                    sa.insert(shifts_table)
                    .values(
                        area=s.area,
                        role=s.role.value,
                        user=s.user,
                        starts_ms=s.starts_ms,
                        ends_ms=s.ends_ms,
                        contact=s.contact,
                        created_by=actor,
                    )
                    .returning(shifts_table.c.id)
                ).scalar_one()
                out.append(
                    Shift(
                        int(shift_id),
                        s.area,
                        s.role,
                        s.user,
                        s.starts_ms,
                        s.ends_ms,
                        s.contact,
                        actor,
                    )
                )
            return out

        return self._db.write(work)

    def get(self, shift_id: int) -> Shift:
        """The shift ``shift_id``."""
        q = sa.select(shifts_table).where(shifts_table.c.id == shift_id)
        row = self._db.read(lambda conn: conn.execute(q).first())
        if row is None:
            raise ResponseNotFoundError(kind="shift", key=shift_id)
        return _shift_of(row)

    def remove(self, shift_id: int) -> Shift:
        """Delete a shift; returns what it was."""
        shift = self.get(shift_id)
        self._db.write(
            lambda conn: conn.execute(sa.delete(shifts_table).where(shifts_table.c.id == shift_id))
        )
        return shift

    def shifts(
        self,
        *,
        within: Sequence[str] | None = None,
        at_ms: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        user: str | None = None,
        limit: int = 500,
    ) -> list[Shift]:
        """Shifts by start, filtered.

        ``within``: area prefixes; ``at_ms``: on duty then; ``since_ms``/``until_ms``: overlapping
        that window; ``user``: that person's.
        """
        t = shifts_table.c
        where: list[sa.ColumnElement[bool]] = []
        if within is not None:
            where.append(scope_clause(t.area, within))
        if at_ms is not None:
            where += [t.starts_ms <= at_ms, t.ends_ms > at_ms]
        if since_ms is not None:
            where.append(t.ends_ms > since_ms)
        if until_ms is not None:
            where.append(t.starts_ms < until_ms)
        if user is not None:
            where.append(t.user == user)
        q = sa.select(shifts_table).where(*where).order_by(t.starts_ms, t.id).limit(limit)
        return [_shift_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]

    def on_duty(
        self, chain: Sequence[str], at_ms: int, roles: Sequence[Role] = ESCALATION_ROLES
    ) -> tuple[str | None, list[Shift]]:
        """Who is on duty in ``roles`` at ``at_ms`` for the first area of ``chain`` that has anyone.

        ``chain`` is an area and those above it, nearest first; (None, []) when nobody is.
        """
        if not chain:
            return None, []
        t = shifts_table.c
        q = sa.select(shifts_table).where(
            t.area.in_(list(chain)),
            t.role.in_([r.value for r in roles]),
            t.starts_ms <= at_ms,
            t.ends_ms > at_ms,
        )
        found = [_shift_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]
        for area in chain:
            here = sorted((s for s in found if s.area == area), key=lambda s: (s.role, s.user))
            if here:
                return area, here
        return None, []

    # -- notices ------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The roster's clock (who is on duty is judged by it)."""
        return self._clock()

    def notify(
        self,
        chain: Sequence[str],
        *,
        subject: str,
        reason: str,
        message: str,
        roles: Sequence[Role] = ESCALATION_ROLES,
        details: dict[str, Any] | None = None,
    ) -> list[DutyNotice]:
        """Tell the people on duty for the first area of ``chain`` that has any; the notices kept.

        Nobody on duty anywhere up the chain is logged (a gap in the roster is itself a problem)
        and returns no notice.
        """
        now = self._clock()
        area, shifts = self.on_duty(chain, now, roles)
        if area is None:
            # A gap in the roster is itself a problem: said once per area, counted every time.
            self.unanswered += 1
            if chain[0] not in self._gaps:
                self._gaps.add(chain[0])
                logger.warning(
                    "nobody on duty for %s (or above) to tell about %s", chain[0], subject
                )
            return []
        people = {(s.user, s.role): s for s in shifts}  # one notice per person and role

        def work(conn: Connection) -> list[DutyNotice]:
            out = []
            for s in people.values():
                values = {
                    "at_ms": now,
                    "user": s.user,
                    "role": s.role.value,
                    "area": area,
                    "subject": subject,
                    "reason": reason,
                    "message": message,
                    "contact": s.contact,
                }
                notice_id = conn.execute(
                    sa.insert(duty_notices_table)
                    .values(**values)
                    .returning(duty_notices_table.c.id)
                ).scalar_one()
                out.append(
                    DutyNotice(
                        int(notice_id),
                        now,
                        s.user,
                        s.role,
                        area,
                        subject,
                        reason,
                        message,
                        s.contact,
                    )
                )
            return out

        notices = self._db.write(work)
        self._send(notices, area, subject, reason, message, details or {})
        return notices

    def _send(
        self,
        notices: list[DutyNotice],
        area: str,
        subject: str,
        reason: str,
        message: str,
        details: dict[str, Any],
    ) -> None:
        if not self._receivers or not notices:
            return
        body = {
            "subject": subject,
            "reason": reason,
            "area": area,
            "message": message,
            "to": [{"user": n.user, "role": n.role.value, "contact": n.contact} for n in notices],
            **details,
        }
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        out = Outgoing(key=f"duty:{subject}:{notices[0].id}", body=payload, refs=())
        for receiver in self._receivers:
            receiver.send(out)

    def notices(
        self,
        *,
        user: str | None = None,
        subject: str | None = None,
        within: Sequence[str] | None = None,
        since_ms: int | None = None,
        limit: int = 100,
    ) -> list[DutyNotice]:
        """Notices newest first, filtered by person, subject, area prefixes and time."""
        t = duty_notices_table.c
        where: list[sa.ColumnElement[bool]] = []
        if user is not None:
            where.append(t.user == user)
        if subject is not None:
            where.append(t.subject == subject)
        if within is not None:
            where.append(scope_clause(t.area, within))
        if since_ms is not None:
            where.append(t.at_ms >= since_ms)
        q = sa.select(duty_notices_table).where(*where).order_by(t.id.desc()).limit(limit)
        return [_notice_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]


class DutyNotifier:
    """Alert feed subscriber: alerts that need someone are told to the people on duty for their area.

    An alert nobody acknowledged in time (`ChangeKind.ESCALATED`), and a new alert at or above
    ``min_level``, become duty notices. ``observe`` only queues (bounded: the oldest is dropped and
    counted past ``max_queue``); `flush` does the database work, on the hub's response tick.
    """

    def __init__(
        self,
        roster: Roster,
        chain: Callable[[str], list[str]],
        *,
        min_level: Level = Level.ORANGE,
        max_queue: int = 10_000,
    ) -> None:
        """Notify through ``roster``; ``chain(area)`` gives an area and those above it."""
        self._roster = roster
        self._chain = chain
        self.min_level = min_level
        self._queue: deque[AlertChange] = deque(maxlen=max_queue)
        # A standby (an api node without the jobs lease): the last changes, with when they came,
        # for the moment it takes the lease from a holder that died before telling of them.
        self._recent: deque[tuple[float, AlertChange]] = deque(maxlen=max_queue)
        self._lock = threading.Lock()
        self.dropped = 0
        self.sent = 0
        self.adopted = 0

    def _wanted(self, change: AlertChange) -> bool:
        alert = change.alert
        wanted = change.kind is ChangeKind.ESCALATED or (
            change.kind is ChangeKind.CREATED and alert.level >= self.min_level
        )
        # An incident's own alerts: the response service tells people itself.
        return wanted and bool(alert.area) and not alert.source.startswith("incident:")

    def observe(self, change: AlertChange) -> None:
        """Queue a change that needs people (any thread; never blocks)."""
        if not self._wanted(change):
            return
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(change)

    def observe_standby(self, change: AlertChange, keep_s: float = 30.0) -> None:
        """Remember a change another node is to tell of, for ``keep_s`` (see `adopt`)."""
        if not self._wanted(change):
            return
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - keep_s:
                self._recent.popleft()
            self._recent.append((now, change))

    def adopt(self, window_s: float) -> int:
        """Queue the remembered changes of the last ``window_s`` that nobody told of yet.

        Called when this node takes the jobs lease: the node that held it may have died before its
        last flush. A change whose alert already has a notice of the same reason is skipped (a
        notice naming several alerts is found by its first only: at a takeover, one of those may
        be told twice rather than not at all).
        """
        now = time.monotonic()
        with self._lock:
            recent = [c for at, c in self._recent if at >= now - window_s]
            self._recent.clear()
        since = self._roster.now_ms() - round((window_s + 60) * 1000)
        fresh = []
        for change in recent:
            reason = _reason(change)
            told = self._roster.notices(subject=f"alert:{change.alert.id}", since_ms=since)
            if not any(n.reason == reason for n in told):
                fresh.append(change)
        with self._lock:
            self._queue.extend(fresh)
        self.adopted += len(fresh)
        return len(fresh)

    def flush(self) -> int:
        """Tell the people on duty about the queued changes; how many notices went out.

        Changes are grouped by the area whose people answer and by reason: a storm's fifty red
        alerts in one district are one notice per person, naming how many and the first few.
        """
        with self._lock:
            todo = list(self._queue)
            self._queue.clear()
        groups: dict[tuple[str, str], list[AlertChange]] = {}
        now = self._roster.now_ms()
        for change in todo:
            reason = _reason(change)
            area, _ = self._roster.on_duty(self._chain(change.alert.area or ""), now)
            if area is None:
                self._roster.unanswered += 1
                continue
            groups.setdefault((area, reason), []).append(change)
        sent = 0
        for (area, reason), changes in groups.items():
            alerts = sorted((c.alert for c in changes), key=lambda a: (-a.level, a.id))
            what = "not acknowledged in time" if reason == "alert_unacknowledged" else "raised"
            lines = [f"{a.level.label} alert {a.id}: {a.summary}" for a in alerts[:5]]
            more = f" (and {len(alerts) - 5} more)" if len(alerts) > 5 else ""
            head = f"{len(alerts)} alerts {what}" if len(alerts) > 1 else f"alert {what}"
            try:
                sent += len(
                    self._roster.notify(
                        [area],
                        subject=f"alert:{alerts[0].id}",
                        reason=reason,
                        message=f"{head}: " + "; ".join(lines) + more,
                        details={"alerts": [a.id for a in alerts]},
                    )
                )
            except Exception:  # one group's notice must not stop the others'
                logger.exception("telling the people on duty for %s failed", area)
        self.sent += sent
        return sent


def _reason(change: AlertChange) -> str:
    """The duty notice's reason for an alert change (escalated, or newly raised)."""
    return "alert_unacknowledged" if change.kind is ChangeKind.ESCALATED else "alert_raised"
