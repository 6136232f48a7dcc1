"""The ``store`` health alert (hub/store_alarm.py) through a real alert store (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.events import ConditionEvent, Level
from alerts.store import AlertStore
from hub.store_alarm import RULE, SOURCE, StoreAlarm
from ingest.pipeline import StoreHealth


class ToStore:
    """The alert path, as `hub.alerting.Alerting.emit` ends: events applied to the alert store."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self.events: list[ConditionEvent] = []

    def emit(self, events: list[ConditionEvent]) -> None:
        self.events += events
        self.store.apply_many(events)


@pytest.fixture
def alerts(tmp_path: Path) -> Iterator[AlertStore]:
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield store
    store.dispose()


def store_alert(alerts: AlertStore) -> list[tuple[Level, bool]]:
    return [(a.level, a.firing) for a in alerts.active_alerts() if a.source == SOURCE]


def test_the_alert_rises_orange_escalates_red_and_clears(alerts: AlertStore) -> None:
    path = ToStore(alerts)
    alarm = StoreAlarm(path, alerts)
    alarm(StoreHealth(failing=False, blocked=False, spooled=0))  # healthy from the start: nothing
    assert path.events == []
    alarm(StoreHealth(failing=True, blocked=False, spooled=10, error="No space left on device"))
    assert store_alert(alerts) == [(Level.ORANGE, True)]
    assert "No space left on device" in path.events[-1].summary
    alarm(StoreHealth(failing=True, blocked=False, spooled=500, error="still"))  # same: no event
    assert len(path.events) == 1
    alarm(StoreHealth(failing=True, blocked=True, spooled=500, error="spool full"))
    assert store_alert(alerts) == [(Level.RED, True)]
    assert "acknowledgements held back" in path.events[-1].summary
    alarm(StoreHealth(failing=False, blocked=False, spooled=480))
    assert [(e.rule, e.firing) for e in path.events] == [(RULE, True), (RULE, True), (RULE, False)]
    assert all(not firing for _, firing in store_alert(alerts))


def test_an_alert_left_firing_by_a_crash_is_cleared_by_the_first_good_write(
    alerts: AlertStore,
) -> None:
    StoreAlarm(ToStore(alerts), alerts)(StoreHealth(failing=True, blocked=True, spooled=0))
    path = ToStore(alerts)
    restarted = StoreAlarm(path, alerts)  # a new process: it reads what is firing
    restarted(StoreHealth(failing=False, blocked=False, spooled=0))
    assert [e.firing for e in path.events] == [False]
    assert all(not firing for _, firing in store_alert(alerts))
