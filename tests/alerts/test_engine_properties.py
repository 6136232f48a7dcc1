"""Properties over random timelines: events per (rule, source) alternate sensibly; restarts change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.engine import RuleEngine
from alerts.events import ConditionEvent
from alerts.levelrules import LevelRuntime
from devices.loader import load_shipped
from devices.registry import Registry
from tests.alerts.city import city
from tests.alerts.timeline import Timeline, rules

RULES = rules(
    """
- id: wl-high
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {yellow: 5.0, orange: 5.5, red: 6.0}
  deadband: 0.1
  repeat: 2
- id: wl-high-slow
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {blue: 4.5, orange: 5.5}
  for_s: 120
  clear_after_s: 200
  clear_below: 4.0
- id: wl-edged
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {blue: 4.0, yellow: 5.0, red: 6.5}
  deadband: 0.3
  clear_below: 3.5
  overrides:
    - {area: demo/harbor, levels: {yellow: 4.5}}
    - {device: wl-a2, disabled: true}
- id: wl-both-ways
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {blue: {below: 3.3}, orange: {above: 6.8}}
- id: wl-tricky
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {blue: 4.0, yellow: 4.2, orange: 4.4, red: 6.0}
  deadband: 0.5
  for_s: 30
  repeat: 2
  clear_after_s: 60
- id: wl-for-only
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {blue: 4.0, yellow: 5.0, red: 6.0}
  for_s: 45
  deadband: 0.2
- id: wl-rising-slowly
  kind: rate
  device_type: water_level
  metric: water_level
  window_s: 900
  levels: {blue: 0.8, orange: 2.0}
  for_s: 60
- id: wl-rising
  kind: rate
  device_type: water_level
  metric: water_level
  window_s: 600
  levels: {yellow: 0.5, red: 1.5}
- id: wl-sum
  kind: accumulation
  device_type: water_level
  metric: water_level
  window_s: 900
  resolution_s: 60
  levels: {blue: 20, yellow: {above: 40, window_s: 300}}
- id: wl-offline
  kind: offline
  device_type: water_level
  after_s: 400
  remind_s: 500
  area: {depth: 3, min_devices: 2, min_fraction: 0.5, suspect_intervals: 1}
"""
)
DEVICES = ["wl-a1", "wl-a2", "wl-a3", "wl-h1"]

push = st.tuples(
    st.just("push"),
    st.floats(0, 200),  # seconds since the previous step
    st.sampled_from(DEVICES),
    st.floats(3.0, 7.0),
    st.floats(-100, 0),  # reading time relative to now (negative: delayed or late)
)
tick = st.tuples(st.just("tick"), st.floats(0, 300), st.just(""), st.just(0.0), st.just(0.0))
steps = st.lists(st.one_of(push, tick), min_size=1, max_size=60)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    path: Path = tmp_path_factory.mktemp("props") / "hub.db"
    reg = Registry(f"sqlite:///{path}")
    load_shipped(reg)
    reg.put_devices(city())
    yield reg
    reg.engine.dispose()


def _run(
    tl: Timeline, plan: list[tuple[str, float, str, float, float]], start: float = 0.0
) -> float:
    t = start
    for op, dt, device, value, ts in plan:
        t += round(dt, 3)
        if op == "push":
            tl.push(at=t, device=device, metric="water_level", value=value, ts=t + round(ts, 3))
        else:
            tl.tick(at=t)
    return t


def _check_alternation(events: list[ConditionEvent], tl: Timeline) -> None:
    last: dict[tuple[str, str], ConditionEvent] = {}
    for ev in events:
        key = (ev.rule, ev.source)
        prev = last.get(key)
        if prev is None or not prev.firing:
            assert ev.firing, f"a cleared event with nothing active: {tl.describe(ev)}"
        elif ev.firing:
            # Firing again while active: a level change, or an offline reminder at the same level.
            assert ev.level != prev.level or ev.kind == "offline", f"duplicate: {tl.describe(ev)}"
        else:
            assert ev.level == prev.level, f"cleared at another level: {tl.describe(ev)}"
        last[key] = ev
    held = {(a.rule, a.source): a.level for a in tl.engine.active()}
    still = {k: e.level for k, e in last.items() if e.firing}
    assert held == still


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_events_per_rule_and_source_alternate_and_match_what_is_active(
    registry: Registry, plan: list[tuple[str, float, str, float, float]]
) -> None:
    tl = Timeline(registry, RULES)
    _run(tl, plan)
    _check_alternation(tl.events, tl)


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(before=steps, after=steps)
def test_a_snapshot_and_restore_changes_nothing_that_follows(
    registry: Registry,
    before: list[tuple[str, float, str, float, float]],
    after: list[tuple[str, float, str, float, float]],
) -> None:
    straight = Timeline(registry, RULES)
    t = _run(straight, before)
    blob = straight.engine.state_snapshot()
    restarted = Timeline(registry, RULES)
    restarted.clock.now_ms = straight.clock.now_ms
    restarted.engine = RuleEngine.restore(blob, registry, RULES, restarted.clock)
    mark = len(straight.events)
    _run(straight, after, start=t)
    _run(restarted, after, start=t)
    assert [restarted.describe(e) for e in restarted.events] == [
        straight.describe(e) for e in straight.events[mark:]
    ]
    _check_alternation(straight.events, straight)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_skipping_readings_inside_the_edges_changes_no_event(
    registry: Registry, plan: list[tuple[str, float, str, float, float]]
) -> None:
    fast = Timeline(registry, RULES)
    slow = Timeline(registry, RULES)
    edged = [rt for rt in slow.engine._runtimes.values() if isinstance(rt, LevelRuntime)]
    assert any(rt.params.edged for rt in edged)
    for rt in edged:
        rt.params.edged = False  # every reading of an active device goes through the state machine
    _run(fast, plan)
    _run(slow, plan)
    assert [fast.describe(e) for e in fast.events] == [slow.describe(e) for e in slow.events]
