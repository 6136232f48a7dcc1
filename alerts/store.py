"""Alerts, their append-only audit, their evidence and their deliveries, in SQL (the registry's DB).

**One active alert per (source, rule)** is the database's job, not the caller's: a partial unique index
over the rows that are not closed refuses a second one, whichever process or thread writes it
(ThingsBoard's concurrent duplicates, thingsboard#5652, came from checking in code). On SQLite every
write transaction starts with ``BEGIN IMMEDIATE``, so a read-then-write cannot be overtaken between
its read and its write; on PostgreSQL the active row is read ``FOR UPDATE``, and an insert that loses
the race meets the unique index and is retried as an update.

**The audit is append-only**: the store only inserts into it, and database triggers refuse an UPDATE
or DELETE of an audit row from anyone.

Each committed change is handed to ``on_change`` (the notification feed) after the commit, in commit
order within this process (a lock spans the transaction and the hand-over). Across processes, the
per-alert ``seq`` orders them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Engine

from alerts._tables import (
    alert_of,
    alerts_table,
    audit_of,
    audit_table,
    deliveries_table,
    evidence_table,
    insert_audit,
    insert_evidence,
    metadata,
    not_closed,
    sqlite_autocommit_driver,
    sqlite_begin_immediate,
    sqlite_wal,
)
from alerts.errors import AlertNotFoundError
from alerts.events import ConditionEvent, Evidence, Level
from alerts.lifecycle import (
    SYSTEM_ACTOR,
    Action,
    Alert,
    AlertChange,
    AuditEntry,
    State,
    decide,
    on_condition,
    transition,
)
from alerts.webhook import Delivery, Outcome
from devices.access import Role
from devices.areas import scope_clause

logger = logging.getLogger(__name__)

# The condition path's statements, built once: constructing a statement per event cost more Python
# than the SQLite work itself, and the applier runs next to the decoder for the GIL.
_ACTIVE_BY_KEY = (
    sa.select(alerts_table)
    .where(
        alerts_table.c.source == sa.bindparam("source"),
        alerts_table.c.rule == sa.bindparam("rule"),
        not_closed,
    )
    .with_for_update()
)
_INSERT_ALERT = sa.insert(alerts_table).returning(alerts_table.c.id)


class AlertPolicy(BaseModel):
    """Choices the operations centre makes about alerts (settings section ``alert_policy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto_close_cleared_unacked: bool = Field(
        False,
        title="Close unacknowledged alerts whose condition cleared",
        description="Off by default: a gas spike or an open cover that came and went at night is "
        "exactly what the morning shift must see, so it stays raised-and-cleared (ThingsBoard's "
        "CLEARED_UNACK) until someone acknowledges it. On: the hub closes an alert still 'raised' "
        "when its condition clears, and the history says so; for sites where transients are noise",
    )


Order = Literal["newest", "severity", "updated"]


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A filter over alerts; None means "any".

    ``since``/``until`` select alerts alive at some time in ``[since, until)``: raised before
    ``until`` and not closed before ``since`` (a shift's alerts, including those carried over).
    ``area`` is a prefix along the area path: ``sh/huangpu`` matches ``sh/huangpu/bund``, not
    ``sh/huangpu2``.
    """

    states: tuple[State, ...] = ()
    min_level: Level | None = None
    area: str | None = None
    kind: str | None = None
    rule: str | None = None
    device: str | None = None
    firing: bool | None = None
    active: bool | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    vendor: str | None = None
    order: Order = "newest"
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """A reading kept with an alert, and the audit entry whose condition event brought it."""

    audit_seq: int
    device: str
    metric: str
    ts_ms: int
    value: float


_T = TypeVar("_T")


def _now_ms() -> int:
    return int(time.time() * 1000)


class AlertStore:
    """Creates and updates alerts from condition events and people's actions, atomically."""

    def __init__(
        self,
        url: str,
        *,
        policy: AlertPolicy | None = None,
        on_change: Callable[[AlertChange], None] | None = None,
        vendor_of: Callable[[str], str | None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Open (and create if needed) the alert tables at a SQLAlchemy URL.

        Args:
            url: the database, normally the registry's.
            policy: what to do with alerts nobody acknowledged; the default keeps them.
            on_change: called with every committed change (the notification feed).
            vendor_of: a device id's vendor, stored with a new alert so vendors see their own.
            clock: epoch ms for people's actions (condition events carry their own time).
        """
        self.policy = policy or AlertPolicy()
        self._on_change = on_change
        self._vendor_of = vendor_of or (lambda _device: None)
        self._clock = clock
        self._lock = threading.RLock()
        self._writer: Engine = sa.create_engine(url)
        self._reader: Engine = self._writer
        if self._writer.dialect.name == "sqlite":
            sa.event.listen(self._writer, "connect", sqlite_autocommit_driver)
            sa.event.listen(self._writer, "begin", sqlite_begin_immediate)
            if url not in ("sqlite://", "sqlite:///:memory:"):  # a memory DB is one connection's
                self._reader = sa.create_engine(url)
                sa.event.listen(self._reader, "connect", sqlite_wal)
        metadata.create_all(self._writer)

    def dispose(self) -> None:
        """Close the database connections."""
        self._writer.dispose()
        self._reader.dispose()

    # -- writes ---------------------------------------------------------------------------------

    def apply(self, event: ConditionEvent) -> AlertChange | None:
        """Apply a rule engine event to the one active alert of its (source, rule); the change made.

        A firing event with no active alert raises a new one; on an active alert it re-fires a
        cleared condition or changes the level (escalate / de-escalate). A cleared event clears the
        condition and leaves the work state alone (unless `AlertPolicy.auto_close_cleared_unacked`
        closes an unacknowledged alert: then two changes are recorded, and the close is returned).
        Repeats change nothing and return None (a firing repeat refreshes the value and last time).
        """
        changes = self._write(lambda conn: self._apply(conn, event))
        return changes[-1] if changes else None

    def apply_many(self, events: Sequence[ConditionEvent]) -> list[AlertChange]:
        """`apply` each event in order, in one transaction: a storm's hundreds of events cost one commit.

        All or nothing: if the transaction fails, no event of it is applied (the caller may retry).
        """
        if not events:
            return []

        def work(conn: Connection) -> list[AlertChange]:
            return [c for e in events for c in self._apply(conn, e)]

        return self._write(work)

    def act(
        self,
        alert_id: int,
        action: Action,
        *,
        actor: str,
        role: Role,
        note: str = "",
        target: str | None = None,
        force: bool = False,
    ) -> AlertChange:
        """A person's action on an alert: checked against role and state, recorded in the audit.

        ``target`` is the assignee of `Action.ASSIGN` and the unit of `Action.DISPATCH`.

        Raises:
            AlertNotFoundError: no such alert.
            ActionForbiddenError: the role may not take the action.
            InvalidTransitionError: the alert's state does not accept it.
        """
        (change,) = self._write(
            lambda conn: self._act(conn, alert_id, action, actor, role, note, target, force)
        )
        return change

    def escalate_unacked(self, alert_id: int, *, at_ms: int, note: str) -> AlertChange | None:
        """Record that nobody acknowledged the alert in time (the hub's own action), once.

        Returns None when the alert is no longer raised, or was escalated already, by the time the
        write happens: someone acknowledged it meanwhile, and nobody needs waking.
        """

        def work(conn: Connection) -> list[AlertChange]:
            row = conn.execute(
                sa.select(alerts_table).where(alerts_table.c.id == alert_id).with_for_update()
            ).first()
            if row is None:
                raise AlertNotFoundError(alert_id)
            alert = alert_of(row)
            if alert.state is not State.RAISED or alert.escalated_ms is not None:
                return []
            state = transition(alert.state, Action.ESCALATE_UNACKED)
            entry = self._entry(
                alert, Action.ESCALATE_UNACKED, state, alert.level, at_ms, SYSTEM_ACTOR, note
            )
            return [self._record(conn, alert, entry, {"escalated_ms": at_ms}, ())]

        changes = self._write(work)
        return changes[0] if changes else None

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep a notification's delivery outcome with its alert (`alerts.notify.DeliveryLog`)."""
        with self._reader.begin() as conn:  # not the writer: no need to queue behind alert writes
            conn.execute(
                sa.insert(deliveries_table).values(
                    alert_id=delivery.alert_id,
                    seq=delivery.seq,
                    channel=delivery.channel,
                    target=delivery.target,
                    outcome=delivery.outcome.value,
                    attempts=delivery.attempts,
                    status=delivery.status,
                    error=delivery.error,
                    at_ms=delivery.at_ms,
                )
            )

    def _write(self, work: Callable[[Connection], list[AlertChange]]) -> list[AlertChange]:
        with self._lock:
            for attempt in range(3):
                try:
                    with self._writer.begin() as conn:
                        changes = work(conn)
                    break
                except sa.exc.IntegrityError:
                    # Another writer raised the alert between our read and our insert (PostgreSQL);
                    # the retry reads it and updates it instead.
                    if attempt == 2:
                        raise
                    logger.info("alert write lost a race; retrying")
            for change in changes:
                self._notify(change)
            return changes

    def _notify(self, change: AlertChange) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(change)
        except Exception:  # a notification problem must never undo or block an alert
            logger.exception(
                "notifying alert %s change %s failed", change.alert.id, change.entry.seq
            )

    def _apply(self, conn: Connection, event: ConditionEvent) -> list[AlertChange]:
        row = conn.execute(_ACTIVE_BY_KEY, {"source": event.source, "rule": event.rule}).first()
        if row is None:
            return [self._raise(conn, event)] if event.firing else []
        alert = alert_of(row)
        action = on_condition(alert, event)
        if action is None:
            if event.firing:  # the same level again: the condition persists (ThingsBoard's endTs)
                conn.execute(
                    sa.update(alerts_table)
                    .where(alerts_table.c.id == alert.id)
                    .values(last_ms=max(alert.last_ms, event.at_ms), value=event.value)
                )
            return []
        state = transition(alert.state, action)
        level = event.level if event.firing else alert.level
        fields: dict[str, Any] = {
            "firing": event.firing,
            "last_ms": max(alert.last_ms, event.at_ms),
            "cleared_ms": None if event.firing else event.at_ms,
        }
        if event.firing:
            fields |= {"summary": event.summary, "value": event.value}
        if state is State.RAISED and alert.state is not State.RAISED:
            # Reopened by the condition: nobody has it now, and its acknowledgement clock restarts.
            fields |= {"acknowledged_ms": None, "escalated_ms": None}
        entry = self._entry(alert, action, state, level, event.at_ms, SYSTEM_ACTOR, event.summary)
        changes = [self._record(conn, alert, entry, fields, event.evidence)]
        after = changes[0].alert
        if (
            action is Action.CLEAR
            and self.policy.auto_close_cleared_unacked
            and after.state is State.RAISED
        ):
            note = "condition cleared before anyone acknowledged it (auto_close_cleared_unacked)"
            closed = transition(after.state, Action.AUTO_CLOSE)
            entry = self._entry(
                after, Action.AUTO_CLOSE, closed, after.level, event.at_ms, SYSTEM_ACTOR, note
            )
            changes.append(self._record(conn, after, entry, {"closed_ms": event.at_ms}, ()))
        return changes

    def _raise(self, conn: Connection, event: ConditionEvent) -> AlertChange:
        vendor = self._vendor_of(event.device) if event.device is not None else None
        values = {
            "rule": event.rule,
            "source": event.source,
            "kind": event.kind,
            "level": int(event.level),
            "state": State.RAISED.value,
            "firing": True,
            "summary": event.summary,
            "device": event.device,
            "area": event.area,
            "vendor": vendor,
            "metric": event.metric,
            "value": event.value,
            "first_ms": event.at_ms,
            "last_ms": event.at_ms,
            "updated_ms": event.at_ms,
            "seq": 1,
            "state_ms": event.at_ms,
        }
        alert_id = int(conn.execute(_INSERT_ALERT, values).scalar_one())
        alert = Alert(
            id=alert_id,
            rule=event.rule,
            source=event.source,
            kind=event.kind,
            level=event.level,
            state=State.RAISED,
            firing=True,
            summary=event.summary,
            first_ms=event.at_ms,
            last_ms=event.at_ms,
            updated_ms=event.at_ms,
            seq=1,
            state_ms=event.at_ms,
            device=event.device,
            area=event.area,
            vendor=vendor,
            metric=event.metric,
            value=event.value,
        )
        entry = AuditEntry(
            alert_id=alert_id,
            seq=1,
            at_ms=event.at_ms,
            actor=SYSTEM_ACTOR,
            action=Action.RAISE,
            from_state=None,
            to_state=State.RAISED,
            from_level=None,
            to_level=event.level,
            note=event.summary,
        )
        insert_audit(conn, entry)
        insert_evidence(conn, alert_id, 1, event.evidence)
        return AlertChange(alert=alert, entry=entry)

    def _act(
        self,
        conn: Connection,
        alert_id: int,
        action: Action,
        actor: str,
        role: Role,
        note: str,
        target: str | None,
        force: bool,
    ) -> list[AlertChange]:
        row = conn.execute(
            sa.select(alerts_table).where(alerts_table.c.id == alert_id).with_for_update()
        ).first()
        if row is None:
            raise AlertNotFoundError(alert_id)
        alert = alert_of(row)
        state = decide(alert, action, role, force=force)
        now = self._clock()
        fields: dict[str, Any] = {}
        if action is Action.ACKNOWLEDGE or (
            action is Action.DISPATCH and alert.acknowledged_ms is None
        ):
            fields["acknowledged_ms"] = now  # dispatching is acknowledging
        if action is Action.ASSIGN:
            fields["assignee"] = target
        elif action is Action.DISPATCH:
            fields["unit"] = target
        elif action is Action.CLOSE:
            fields["closed_ms"] = now
            if alert.firing:
                note = f"closed while the condition still held. {note}".strip()
        entry = self._entry(alert, action, state, alert.level, now, actor, note, target)
        return [self._record(conn, alert, entry, fields, ())]

    @staticmethod
    def _entry(
        alert: Alert,
        action: Action,
        state: State,
        level: Level,
        at_ms: int,
        actor: str,
        note: str,
        target: str | None = None,
    ) -> AuditEntry:
        return AuditEntry(
            alert_id=alert.id,
            seq=alert.seq + 1,
            at_ms=at_ms,
            actor=actor,
            action=action,
            from_state=alert.state,
            to_state=state,
            from_level=alert.level,
            to_level=level,
            note=note,
            target=target,
        )

    @staticmethod
    def _record(
        conn: Connection,
        alert: Alert,
        entry: AuditEntry,
        fields: dict[str, Any],
        evidence: Sequence[Evidence],
    ) -> AlertChange:
        """Write the alert's new fields, its audit entry and evidence; the change they make."""
        fields = {
            **fields,
            "state": entry.to_state.value,
            "level": int(entry.to_level),
            "seq": entry.seq,
            "updated_ms": max(alert.updated_ms, entry.at_ms),
        }
        if entry.to_state is not entry.from_state:
            fields["state_ms"] = entry.at_ms
        conn.execute(sa.update(alerts_table).where(alerts_table.c.id == alert.id).values(**fields))
        insert_audit(conn, entry)
        insert_evidence(conn, alert.id, entry.seq, evidence)
        typed = {
            **fields,
            "state": entry.to_state,
            "level": entry.to_level,
        }
        return AlertChange(alert=replace(alert, **typed), entry=entry)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, alert_id: int, *, vendor: str | None = None) -> Alert:
        """The alert ``alert_id``; with ``vendor``, only if it is about that vendor's device.

        Raises:
            AlertNotFoundError: no such alert, or not ``vendor``'s.
        """
        with self._reader.connect() as conn:
            row = conn.execute(sa.select(alerts_table).where(alerts_table.c.id == alert_id)).first()
        if row is None or (vendor is not None and row.vendor != vendor):
            raise AlertNotFoundError(alert_id)
        return alert_of(row)

    def active(self, source: str, rule: str) -> Alert | None:
        """The active alert of (source, rule), if any."""
        with self._reader.connect() as conn:
            row = conn.execute(
                sa.select(alerts_table).where(
                    alerts_table.c.source == source, alerts_table.c.rule == rule, not_closed
                )
            ).first()
        return alert_of(row) if row is not None else None

    def active_alerts(self) -> list[Alert]:
        """Every active alert (what the notification router starts from)."""
        with self._reader.connect() as conn:
            rows = conn.execute(sa.select(alerts_table).where(not_closed)).all()
        return [alert_of(r) for r in rows]

    def history(self, alert_id: int) -> list[AuditEntry]:
        """The alert's audit, oldest first."""
        with self._reader.connect() as conn:
            rows = conn.execute(
                sa.select(audit_table)
                .where(audit_table.c.alert_id == alert_id)
                .order_by(audit_table.c.seq)
            ).all()
        return [audit_of(r) for r in rows]

    def evidence(self, alert_id: int) -> list[EvidenceRow]:
        """The readings kept with the alert, in the order the engine sent them."""
        with self._reader.connect() as conn:
            rows = conn.execute(
                sa.select(evidence_table)
                .where(evidence_table.c.alert_id == alert_id)
                .order_by(evidence_table.c.audit_seq, evidence_table.c.n)
            ).all()
        return [EvidenceRow(r.audit_seq, r.device, r.metric, r.ts_ms, r.value) for r in rows]

    def deliveries(self, alert_id: int) -> list[Delivery]:
        """The alert's notification deliveries, oldest first."""
        with self._reader.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries_table)
                .where(deliveries_table.c.alert_id == alert_id)
                .order_by(deliveries_table.c.id)
            ).all()
        return [
            Delivery(
                alert_id=r.alert_id,
                seq=r.seq,
                channel=r.channel,
                target=r.target,
                outcome=Outcome(r.outcome),
                attempts=r.attempts,
                at_ms=r.at_ms,
                status=r.status,
                error=r.error,
            )
            for r in rows
        ]

    def query(self, q: AlertQuery) -> tuple[list[Alert], int]:
        """One page of the alerts matching ``q``, and how many match in all."""
        c = alerts_table.c
        where: list[sa.ColumnElement[bool]] = []
        if q.states:
            where.append(c.state.in_([s.value for s in q.states]))
        if q.min_level is not None:
            where.append(c.level >= int(q.min_level))
        if q.area:
            where.append(scope_clause(c.area, [q.area.rstrip("/")]))
        for column, value in ((c.kind, q.kind), (c.rule, q.rule), (c.device, q.device)):
            if value is not None:
                where.append(column == value)
        if q.vendor is not None:
            where.append(c.vendor == q.vendor)
        if q.firing is not None:
            where.append(c.firing == q.firing)
        if q.active is not None:
            where.append(not_closed if q.active else c.state == State.CLOSED.value)
        if q.until_ms is not None:
            where.append(c.first_ms < q.until_ms)
        if q.since_ms is not None:
            where.append(sa.or_(c.closed_ms.is_(None), c.closed_ms >= q.since_ms))
        order = {
            "newest": (c.first_ms.desc(), c.id.desc()),
            "severity": (c.level.desc(), c.first_ms.desc(), c.id.desc()),
            "updated": (c.updated_ms.desc(), c.id.desc()),
        }[q.order]
        with self._reader.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(alerts_table).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(alerts_table)
                .where(*where)
                .order_by(*order)
                .offset(q.offset)
                .limit(q.limit)
            ).all()
        return [alert_of(r) for r in rows], int(total)
