"""The ``store`` health alert: the time-series store failing, spooling or blocking, on the normal alert path.

The ingest pipeline reports each change of the store's health (`ingest.pipeline.StoreHealth`);
this turns it into a `ConditionEvent` for the same applier the rule engine and the camera patrol use
(`hub.alerting.Alerting.emit`), so a store outage reaches the duty officer's screen, MQTT and webhooks
like any other alert, and clears itself when the store writes again:

- **orange** while the store fails and readings go to the spool: nothing is lost and the hub keeps
  watching the city, but the store must be mended before the spool fills;
- **red** while neither the store nor the spool takes readings: the hub holds acknowledgements back,
  the broker keeps the messages, and the hub sees no new readings until one of them recovers.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from alerts.events import ConditionEvent, Level
from alerts.store import AlertStore
from ingest.pipeline import StoreHealth

logger = logging.getLogger(__name__)

RULE = "hub.store"
SOURCE = "hub:store"
KIND = "health"


class AlertPath(Protocol):
    """Where condition events go (`hub.alerting.Alerting`)."""

    def emit(self, events: list[ConditionEvent]) -> None:
        """Queue events for the alert store, in order."""
        ...


def condition_event(health: StoreHealth, at_ms: int, level: Level) -> ConditionEvent:
    """The alert path's event for the store's health (``level``: the level it has, or had)."""
    if health.blocked:
        summary = (
            "time-series store and spool refuse readings: acknowledgements held back, the broker "
            f"keeps the messages; {health.spooled} readings spooled ({health.error})"
        )
    elif health.failing:
        summary = (
            f"time-series store failing: {health.spooled} readings spooled, written after it "
            f"recovers ({health.error})"
        )
    else:
        summary = f"time-series store writes again ({health.spooled} readings left to replay)"
    return ConditionEvent(
        rule=RULE,
        source=SOURCE,
        kind=KIND,
        level=level,
        firing=health.failing,
        at_ms=at_ms,
        summary=summary[:1000],
        metric="store",
        value=float(health.spooled),
    )


class StoreAlarm:
    """A pipeline store watcher raising, escalating and clearing the ``store`` alert (thread-safe)."""

    def __init__(self, path: AlertPath, alerts: AlertStore) -> None:
        """Emit on ``path``; an alert left firing by an earlier run is picked up from ``alerts``."""
        self._path = path
        self._lock = threading.Lock()
        self._level: Level | None = None  # the firing alert's level; None: not firing
        for alert in alerts.active_alerts():
            if alert.source == SOURCE and alert.rule == RULE and alert.firing:
                self._level = alert.level

    def __call__(self, health: StoreHealth) -> None:
        """Raise, escalate or clear the alert to match ``health``."""
        level = (Level.RED if health.blocked else Level.ORANGE) if health.failing else None
        with self._lock:
            before, self._level = self._level, level
            if level == before:
                return
            event = condition_event(
                health, int(time.time() * 1000), level or before or Level.ORANGE
            )
            self._path.emit([event])
        logger.info("store alert: %s", event.summary)
