"""Rule state across restarts (snapshot/restore, save/load), rule reloads and registry changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import RuleEngine
from alerts.rules import RuleError
from devices.profiles import Device, DeviceStatus
from devices.registry import Registry
from ingest.batch import ReadingBatch
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.timeline import T0_MS, Timeline, cleared, fired, rules

FOR = """
- id: wl-high
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {yellow: 5.0, orange: 5.5}
  for_s: 600
"""

RAIN = """
- id: rain-1h
  kind: accumulation
  device_type: rain_gauge
  metric: rainfall
  window_s: 3600
  levels: {blue: 20}
"""

OFFLINE = """
- id: wl-offline
  kind: offline
  device_type: water_level
  areas: [demo/harbor]
  level: yellow
"""


def _restarted(tl: Timeline, text: str, at: float) -> Timeline:
    """A new engine (a new process) restored from the old one's snapshot at ``at``."""
    blob = tl.engine.state_snapshot()
    fresh = Timeline(tl.registry, [])
    fresh.clock.now_ms = fresh.ms(at)
    fresh.engine = RuleEngine.restore(blob, tl.registry, rules(text), fresh.clock)
    return fresh


def test_a_restart_in_the_middle_of_a_for_window_keeps_the_window(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    tl.push(at=300, device="wl-a1", metric="water_level", value=5.3)
    after = _restarted(tl, FOR, at=400)
    after.ticks(400, 599, every=10)
    after.want()
    after.tick(at=600)
    after.want(fired("wl-high", "wl-a1", "yellow", at=600))


def test_without_the_snapshot_the_window_would_start_again(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    fresh = Timeline(registry, rules(FOR))
    fresh.push(at=400, device="wl-a1", metric="water_level", value=5.3)
    fresh.ticks(400, 1000, every=100)
    fresh.want(fired("wl-high", "wl-a1", "yellow", at=1000))


def test_active_conditions_survive_a_restart_no_refire_and_clear_later(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR.replace("for_s: 600", "")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    tl.push(at=1, device="wl-a1", metric="water_level", value=4.0, ts=-5)  # late
    tl.want(fired("wl-high", "wl-a1", "orange"))
    after = _restarted(tl, FOR.replace("for_s: 600", ""), at=10)
    assert [(a.source, a.level.label) for a in after.engine.active()] == [
        ("device:wl-a1", "orange")
    ]
    after.push(at=11, device="wl-a1", metric="water_level", value=5.7)
    after.push(at=12, device="wl-a1", metric="water_level", value=4.0, ts=-1)  # still late
    after.want()
    after.push(at=20, device="wl-a1", metric="water_level", value=4.0)
    after.want(cleared("wl-high", "wl-a1", at=20, level="orange"))


def test_windows_survive_a_restart(registry: Registry) -> None:
    tl = Timeline(registry, rules(RAIN))
    tl.push(at=0, device="rg-1", metric="rainfall", value=15.0)
    after = _restarted(tl, RAIN, at=600)
    after.push(at=900, device="rg-1", metric="rainfall", value=6.0)
    after.want(fired("rain-1h", "rg-1", "blue", summary_has="21 mm"))


def test_offline_state_survives_and_downtime_is_not_silence(registry: Registry) -> None:
    tl = Timeline(registry, rules(OFFLINE))
    tl.push(at=0, device="wl-h1", metric="water_level", value=3.0)
    tl.ticks(0, 1000, every=100)
    tl.want(fired("wl-offline", "wl-h1", "yellow", at=900))
    # The hub is down from 1000 s to 5000 s. The offline device stays offline (no second event) ...
    after = _restarted(tl, OFFLINE, at=5000)
    after.ticks(5000, 6000, every=100)
    after.want()
    # ... and comes back with a recovery event.
    after.push(at=6001, device="wl-h1", metric="water_level", value=3.0)
    after.want(cleared("wl-offline", "wl-h1", at=6001))
    # A device that was fine at the snapshot is not declared offline for the hub's own downtime.
    tl2 = Timeline(registry, rules(OFFLINE))
    tl2.push(at=0, device="wl-h1", metric="water_level", value=3.0)
    after2 = _restarted(tl2, OFFLINE, at=5000)
    after2.ticks(5000, 5899, every=100)
    after2.want()
    after2.tick(at=5900)  # 900 s of silence, not counting 0..5000 less the time before the save
    after2.want(fired("wl-offline", "wl-h1", "yellow", at=5900))


def test_rules_gone_since_the_snapshot_clear_their_conditions(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR.replace("for_s: 600", "")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    after = _restarted(tl, RAIN, at=10)
    after.tick(at=10)
    after.want(cleared("wl-high", "wl-a1", at=10, level="orange"))


def test_save_and_load_through_a_file(registry: Registry, tmp_path: Path) -> None:
    tl = Timeline(registry, rules(FOR))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    path = tmp_path / "rules.state"
    tl.engine.save(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("rules.state")] == [
        "rules.state"
    ]
    loaded = Timeline(registry, [])
    loaded.clock.now_ms = loaded.ms(100)
    loaded.engine = RuleEngine.load(path, registry, rules(FOR), loaded.clock)
    loaded.tick(at=600)
    loaded.want(fired("wl-high", "wl-a1", "yellow", at=600))
    missing = RuleEngine.load(tmp_path / "nothing", registry, rules(FOR), loaded.clock)
    assert missing.active() == []


def test_a_snapshot_that_is_not_one_is_refused(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR))
    with pytest.raises(RuleError, match="not a rule engine snapshot"):
        RuleEngine.restore(b"garbage", registry, rules(FOR), tl.clock)


def test_replace_rules_keeps_unchanged_rules_entirely(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR + RAIN))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    assert tl.engine.replace_rules(rules(FOR)) == []  # rain-1h removed: it held nothing
    tl.tick(at=600)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=600))


def test_replace_rules_a_changed_rule_keeps_active_levels_and_rejudges(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR.replace("for_s: 600", "")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    tl.want(fired("wl-high", "wl-a1", "yellow"))
    raised = FOR.replace("for_s: 600", "").replace("yellow: 5.0", "yellow: 5.1")
    assert tl.engine.replace_rules(rules(raised)) == []
    tl.push(at=10, device="wl-a1", metric="water_level", value=5.15)
    tl.want()  # still yellow under the new bound: no duplicate
    raised_more = raised.replace("yellow: 5.1", "yellow: 5.3").replace("orange: 5.5", "orange: 5.6")
    tl.engine.replace_rules(rules(raised_more))
    tl.push(at=20, device="wl-a1", metric="water_level", value=5.2)
    tl.want(cleared("wl-high", "wl-a1", at=20))


def test_replace_rules_clears_conditions_of_removed_rules(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR.replace("for_s: 600", "") + RAIN))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    events = tl.engine.replace_rules(rules(RAIN))
    assert [(e.rule, e.source, e.firing, e.level.label) for e in events] == [
        ("wl-high", "device:wl-a1", False, "orange")
    ]
    assert "rule was removed" in events[0].summary


def test_new_devices_are_watched_and_decommissioned_ones_cleared(registry: Registry) -> None:
    text = FOR.replace("for_s: 600", "") + OFFLINE
    tl = Timeline(registry, rules(text))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    tl.want(fired("wl-high", "wl-a1", "orange"))
    registry.put_devices(
        [Device(id="wl-new", vendor="hydrox", profile="hydrox-wl", area="demo/harbor/s9/g0909")]
    )
    tl.push(at=10, device="wl-new", metric="water_level", value=5.1)
    tl.want(fired("wl-high", "wl-new", "yellow", at=10))
    registry.set_status("wl-a1", DeviceStatus.DECOMMISSIONED)
    tl.tick(at=20)
    tl.want(cleared("wl-high", "wl-a1", at=20, level="orange"))
    # The new device is watched for silence from when the engine learnt of it.
    tl.push(at=100, device="wl-h1", metric="water_level", value=3.0)
    tl.ticks(21, 999, every=1)
    tl.want(fired("wl-offline", "wl-new", "yellow", at=910))


def test_replaced_hardware_continues_the_series_and_its_condition(registry: Registry) -> None:
    tl = Timeline(registry, rules(FOR.replace("for_s: 600", "")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    tl.want(fired("wl-high", "wl-a1", "orange"))
    registry.replace("wl-a1", Device(id="wl-a1b", vendor="hydrox", profile="hydrox-wl"))
    # The lifecycle keys alerts by source: the condition moves to the new id explicitly.
    tl.push(at=10, device="wl-a1b", metric="water_level", value=5.7)
    tl.want(
        cleared("wl-high", "wl-a1", at=10, level="orange"),
        fired("wl-high", "wl-a1b", "orange", at=10, summary_has="continues the condition of wl-a1"),
    )
    tl.push(at=20, device="wl-a1b", metric="water_level", value=4.0)
    tl.want(cleared("wl-high", "wl-a1b", at=20, level="orange"))


def test_a_failing_rule_is_logged_counted_and_the_others_go_on(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    engine = RuleEngine(registry, rules(FOR.replace("for_s: 600", "") + RAIN), lambda: 0)
    broken = engine._runtimes["rain-1h"]

    def fail(*_: object) -> list[object]:
        msg = "a bug"
        raise RuntimeError(msg)

    broken.evaluate = fail  # type: ignore[attr-defined]
    for t, level in ((1, 5.1), (2, 5.6)):
        got = engine.evaluate(
            _batch(registry, [("rg-1", "rainfall", 50.0, t), ("wl-a1", "water_level", level, t)])
        )
        assert [(e.rule, e.level.label) for e in got] == [
            ("wl-high", "yellow" if t == 1 else "orange")
        ]
    assert engine.failures == {"rain-1h": 2}
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "rule rain-1h failed; its other work goes on"
    ]


def _batch(registry: Registry, rows: list[tuple[str, str, float, float]]) -> ReadingBatch:
    return ReadingBatch.from_columns(
        [registry.interner.devices[d].index for d, _, _, _ in rows],
        [registry.interner.metrics[m] for _, m, _, _ in rows],
        [T0_MS + round(t * 1000) for _, _, _, t in rows],
        [v for _, _, v, _ in rows],
    )
