"""Public warnings with an injected clock: publish, adjust, lift, expire; one active per area and kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from alerts._response_tables import ResponseDb
from alerts.errors import InvalidAlertRequestError, InvalidTransitionError, ResponseConflictError
from alerts.events import Level
from alerts.public_warnings import WarningAction, WarningChange, WarningState, WarningStore

HOUR = 3_600_000
T0 = 1_750_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def parts(db_url: str) -> Iterator[tuple[WarningStore, Clock, list[WarningChange], ResponseDb]]:
    db = ResponseDb(db_url)  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    clock = Clock()
    changes: list[WarningChange] = []
    yield WarningStore(db, on_change=changes.append, clock=clock), clock, changes, db
    db.dispose()


def test_publish_adjust_lift_each_recorded(
    parts: tuple[WarningStore, Clock, list[WarningChange], ResponseDb],
) -> None:
    store, clock, changes, _ = parts
    w = store.publish(
        area="demo/riverside",
        kind="rainstorm",
        level=Level.YELLOW,
        reason="50 mm in 3 h",
        valid_until_ms=T0 + 6 * HOUR,
        actor="cmd",
    ).warning
    assert w.in_force(T0)
    with pytest.raises(ResponseConflictError, match="adjust or lift"):
        store.publish(
            area="demo/riverside",
            kind="rainstorm",
            level=Level.RED,
            reason="x",
            valid_until_ms=T0 + HOUR,
            actor="cmd",
        )
    # Another kind, or another area, is another warning.
    store.publish(
        area="demo/riverside",
        kind="flood",
        level=Level.BLUE,
        reason="river rising",
        valid_until_ms=T0 + HOUR,
        actor="cmd",
    )
    clock.now += HOUR // 2
    up = store.adjust(w.id, actor="cmd", level=Level.ORANGE, note="80 mm/h upstream").warning
    assert (up.level, up.reason, up.seq) == (Level.ORANGE, "50 mm in 3 h", 2)
    clock.now += HOUR // 2
    lifted = store.lift(w.id, actor="cmd", note="rain stopped").warning
    assert (lifted.state, lifted.ended_ms) == (WarningState.LIFTED, T0 + HOUR)
    assert not lifted.in_force(clock.now)
    with pytest.raises(InvalidTransitionError, match="lifted"):
        store.adjust(w.id, actor="cmd", level=Level.RED)
    history = store.history(w.id)
    assert [(e.action, e.level) for e in history] == [
        (WarningAction.PUBLISH, Level.YELLOW),
        (WarningAction.ADJUST, Level.ORANGE),
        (WarningAction.LIFT, Level.ORANGE),
    ]
    # The flood warning ran out at T0 + 1 h: it expired, recorded by the hub, in the same write.
    assert [c.entry.action for c in changes].count(WarningAction.EXPIRE) == 1
    assert store.warnings(active=True) == []


def test_expiry_frees_the_kind_for_a_new_warning(
    parts: tuple[WarningStore, Clock, list[WarningChange], ResponseDb],
) -> None:
    store, clock, _, _ = parts
    first = store.publish(
        area="demo",
        kind="heat",
        level=Level.ORANGE,
        reason="38 C",
        valid_until_ms=T0 + HOUR,
        actor="cmd",
    ).warning
    clock.now += HOUR
    assert [c.warning.id for c in store.expire_due()] == [first.id]
    second = store.publish(
        area="demo",
        kind="heat",
        level=Level.RED,
        reason="40 C",
        valid_until_ms=T0 + 3 * HOUR,
        actor="cmd",
    ).warning
    assert store.get(first.id).state is WarningState.EXPIRED
    assert [w.id for w in store.warnings(active=True)] == [second.id]


def test_what_a_screen_of_an_area_shows(
    parts: tuple[WarningStore, Clock, list[WarningChange], ResponseDb],
) -> None:
    store, _, _, _ = parts
    ids = {}
    for area in ("demo", "demo/riverside", "demo/riverside/binjiang-rd", "demo/oldtown"):
        ids[area] = store.publish(
            area=area,
            kind="rainstorm",
            level=Level.BLUE,
            reason="r",
            valid_until_ms=T0 + HOUR,
            actor="cmd",
        ).warning.id
    shown = store.warnings(within=("demo/riverside",), above=["demo/riverside", "demo"])
    assert {w.area for w in shown} == {"demo", "demo/riverside", "demo/riverside/binjiang-rd"}


def test_bad_warnings_are_refused_and_history_is_append_only(
    parts: tuple[WarningStore, Clock, list[WarningChange], ResponseDb],
) -> None:
    store, _, _, db = parts
    with pytest.raises(InvalidAlertRequestError, match="blue, yellow"):
        store.publish(
            area="a",
            kind="rainstorm",
            level=Level.INFO,
            reason="r",
            valid_until_ms=T0 + HOUR,
            actor="c",
        )
    with pytest.raises(InvalidAlertRequestError, match="future"):
        store.publish(
            area="a",
            kind="rainstorm",
            level=Level.RED,
            reason="r",
            valid_until_ms=T0 - 1,
            actor="c",
        )
    with pytest.raises(InvalidAlertRequestError, match="lower-case"):
        store.publish(
            area="a",
            kind="Rain Storm",
            level=Level.RED,
            reason="r",
            valid_until_ms=T0 + HOUR,
            actor="c",
        )
    store.publish(
        area="a", kind="fog", level=Level.YELLOW, reason="r", valid_until_ms=T0 + HOUR, actor="c"
    )
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.writer.begin() as conn:
        conn.execute(sa.text("DELETE FROM public_warning_audit"))
