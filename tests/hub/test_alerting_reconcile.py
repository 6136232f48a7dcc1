"""The hub's engine and alert store agree after a start, whichever of the two was saved last."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from alerts.engine import RuleEngine
from alerts.events import ConditionEvent, Level
from alerts.rulebook import RuleBook
from alerts.store import AlertStore
from devices.registry import Registry
from hub.alerting import Alerting, now_ms
from ingest.batch import ReadingBatch
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture

RULES = """
- id: cover-open
  kind: threshold
  device_type: manhole_cover
  metric: cover_open
  levels: {orange: 1}
"""


def _book(registry: Registry, tmp_path: Path) -> RuleBook:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return RuleBook(str(registry.engine.url), paths=[path], shipped=False)


def _open(registry: Registry, device: str) -> ReadingBatch:
    interner = registry.interner
    return ReadingBatch.from_columns(
        np.array([interner.devices[device].index], dtype=np.int32),
        np.array([interner.metrics["cover_open"]], dtype=np.int16),
        np.array([now_ms()], dtype=np.int64),
        np.array([1.0]),
    )


def test_a_condition_the_engine_saved_but_the_store_never_got_is_raised(
    registry: Registry, tmp_path: Path
) -> None:
    book = _book(registry, tmp_path)
    state = tmp_path / "rule-state.npz"
    engine = RuleEngine(registry, book.rules(), now_ms)
    assert engine.evaluate(_open(registry, "mc-1"))  # the event is lost: the hub died here
    engine.save(state)
    store = AlertStore(str(registry.engine.url))
    alerting = Alerting(registry, book, store, state)
    try:
        assert alerting.drain()
        alert = store.active("device:mc-1", "cover-open")
        assert alert is not None
        assert alert.firing
        assert alert.level is Level.ORANGE
    finally:
        alerting.close()
        store.dispose()
        book.dispose()


def test_a_firing_alert_the_engine_does_not_hold_is_cleared(
    registry: Registry, tmp_path: Path
) -> None:
    book = _book(registry, tmp_path)
    store = AlertStore(str(registry.engine.url))
    store.apply(
        ConditionEvent(
            rule="cover-open",
            source="device:mc-2",
            kind="threshold",
            level=Level.ORANGE,
            firing=True,
            at_ms=now_ms(),
            summary="mc-2 open",
            device="mc-2",
        )
    )
    alerting = Alerting(registry, book, store, tmp_path / "no-state-yet.npz")
    try:
        assert alerting.drain()
        alert = store.active("device:mc-2", "cover-open")
        assert alert is not None  # still there for people to close, but no longer firing
        assert not alert.firing
        assert "restart" in store.history(alert.id)[-1].note + alert.summary
    finally:
        alerting.close()
        store.dispose()
        book.dispose()


def test_a_rule_edit_reaches_the_running_engine(registry: Registry, tmp_path: Path) -> None:
    book = _book(registry, tmp_path)
    store = AlertStore(str(registry.engine.url))
    alerting = Alerting(registry, book, store, tmp_path / "rule-state.npz")
    try:
        book.put(
            {"id": "gas", "kind": "threshold", "metric": "gas_lel", "levels": {"red": 50}},
            actor="chief",
        )
        assert [r.id for r in alerting.engine.rules] == ["cover-open", "gas"]
        book.delete("gas", actor="chief")
        assert [r.id for r in alerting.engine.rules] == ["cover-open"]
        started = time.monotonic()
        alerting.emit(alerting.engine.evaluate(_open(registry, "mc-3")))
        assert alerting.drain()
        assert time.monotonic() - started < 5
        assert store.active("device:mc-3", "cover-open") is not None
    finally:
        alerting.close()
        store.dispose()
        book.dispose()
