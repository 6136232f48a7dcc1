"""Rule state moving with its districts when the number of ingest workers changes.

Differential: one engine watches the whole city (the reference); the same readings and ticks also go
to the engines of a worker layout (each reading to the slot owning its device's district, as the
broker's per-device subscriptions deliver it), which are snapshotted mid-way and restored into the
engines of another layout (`RuleEngine.restore_many`). Whatever the layouts, the union of the
workers' events must be the reference's, event for event: nothing fired twice, nothing cleared by a
worker that lost the device, no pending window, ring, bucket or silence restarted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alerts.engine import RuleEngine
from alerts.events import ConditionEvent
from devices.partitions import Slot
from devices.registry import Registry
from tests.alerts.city import (
    HARBOR,
    RIVERSIDE,
    city,
    city_registry,  # noqa: F401 - the `registry` fixture
)
from tests.alerts.timeline import Timeline, rules

RULES = """
- id: wl-high
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {yellow: 5.0}
  for_s: 600
- id: rain-1h
  kind: accumulation
  device_type: rain_gauge
  metric: rainfall
  window_s: 3600
  levels: {yellow: 30}
- id: wl-rising
  kind: rate
  device_type: water_level
  metric: water_level
  window_s: 3600
  levels: {yellow: 0.3}
- id: flood-risk
  kind: composite
  all_of: [rain-1h, wl-rising]
  area_depth: 2
  level: orange
- id: cover-open
  kind: threshold
  device_type: manhole_cover
  metric: cover_open
  levels: {orange: 1}
- id: covers-cluster
  kind: cluster
  rule: cover-open
  min_devices: 3
  radius_m: 500
  window_s: 900
  level: red
- id: wl-offline
  kind: offline
  device_type: water_level
  areas: [demo/harbor]
  after_intervals: 3
  level: yellow
"""

AREA = {d.id: d.area for d in city()}

# (at, device, metric, value): a storm over both districts, covers opening in a row.
SCRIPT = [
    (0, "wl-a1", "water_level", 5.2),  # over for 600 s: fires at 600, after the move
    (0, "wl-a2", "water_level", 3.0),
    (0, "wl-h1", "water_level", 3.0),
    (0, "rg-1", "rainfall", 35.0),
    (0, "rr-1", "rainfall", 35.0),
    (100, "mc-1", "cover_open", 1.0),
    (110, "mc-2", "cover_open", 1.0),
    (120, "mc-3", "cover_open", 1.0),
    (130, "mc-far", "cover_open", 1.0),
    (300, "wl-a2", "water_level", 3.4),  # rising in the riverside: flood risk there
    (300, "wl-h1", "water_level", 3.5),  # and in the harbour; last heard: offline after 900 s
    (300, "wl-a1", "water_level", 5.3),
    (500, "mc-1", "cover_open", 0.0),  # the cluster falls below three
    (900, "rg-1", "rainfall", 1.0),
    (1500, "wl-a1", "water_level", 4.0),
]
MOVE_AT = 450
END = 2000


def _key(e: ConditionEvent) -> tuple[object, ...]:
    return (e.at_ms, e.rule, e.source, e.level.label, e.firing)


class Layout:
    """The engines of ``workers`` ingest workers, each fed what its slot owns."""

    def __init__(self, workers: int, lines: Sequence[Timeline]) -> None:
        self.slots = [Slot(k, workers) for k in range(workers)]
        self.lines = list(lines)

    @classmethod
    def fresh(cls, workers: int, registry: Registry) -> Layout:
        lines = []
        for k in range(workers):
            tl = Timeline(registry, [])  # its clock drives the engine
            slot = Slot(k, workers) if workers > 1 else None
            tl.engine = RuleEngine(registry, rules(RULES), tl.clock, slot=slot)
            lines.append(tl)
        return cls(workers, lines)

    def moved_to(self, workers: int, registry: Registry, at: float) -> Layout:
        """The engines of another layout, restored from every worker's snapshot of this one."""
        for tl in self.lines:  # stopped at ``at``, the new ones start then: no time down
            tl.clock.now_ms = tl.ms(at)
        blobs = [tl.engine.state_snapshot() for tl in self.lines]
        lines = []
        for k in range(workers):
            tl = Timeline(registry, [])
            tl.clock.now_ms = tl.ms(at)
            slot = Slot(k, workers) if workers > 1 else None
            tl.engine = RuleEngine.restore_many(blobs, registry, rules(RULES), tl.clock, slot=slot)
            lines.append(tl)
        return Layout(workers, lines)

    def push(self, at: float, device: str, metric: str, value: float) -> None:
        owner = next(
            tl for s, tl in zip(self.slots, self.lines, strict=True) if s.owns(AREA[device], device)
        )
        owner.push(at=at, device=device, metric=metric, value=value)

    def tick(self, at: float) -> None:
        for tl in self.lines:
            tl.tick(at)

    def events(self) -> list[tuple[object, ...]]:
        return sorted(_key(e) for tl in self.lines for e in tl.events)

    def active(self) -> list[tuple[str, str]]:
        return sorted((a.rule, a.source) for tl in self.lines for a in tl.engine.active())


def _run(tl_push: object, tl_tick: object, start: float, stop: float) -> None:
    """Feed the script's readings in [start, stop) and a tick every 10 s."""
    t = start
    while t < stop:
        for at, device, metric, value in SCRIPT:
            if at == t:
                tl_push(t, device, metric, value)  # type: ignore[operator]
        tl_tick(t)  # type: ignore[operator]
        t += 10


def _workers_apart() -> int:
    """The first worker count at which the riverside and the harbour are on different slots."""
    return next(
        w
        for w in (2, 3, 4, 8, 16)
        if next(k for k in range(w) if Slot(k, w).owns(RIVERSIDE, ""))
        != next(k for k in range(w) if Slot(k, w).owns(HARBOR, ""))
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [(1, "apart"), ("apart", 1), ("apart", 3), (3, 2)],
    ids=["one-to-many", "many-to-one", "many-to-three", "three-to-two"],
)
def test_a_change_of_worker_count_continues_every_condition_and_window(
    registry: Registry, before: int | str, after: int | str
) -> None:
    apart = _workers_apart()
    w_before = apart if before == "apart" else int(before)
    w_after = apart if after == "apart" else int(after)
    reference = Timeline(registry, rules(RULES))

    def ref_push(at: float, device: str, metric: str, value: float) -> None:
        reference.push(at=at, device=device, metric=metric, value=value)

    _run(ref_push, reference.tick, 0, END)
    ref = sorted(_key(e) for e in reference.events)
    assert any(k[1] == "wl-high" and k[4] for k in ref)  # the window pending at the move fired
    assert any(k[1] == "covers-cluster" and not k[4] for k in ref)  # a cluster ended after it
    assert any(k[1] == "wl-offline" and k[4] for k in ref)  # silence counted across the move
    assert any(k[1] == "flood-risk" for k in ref)

    first = Layout.fresh(w_before, registry)
    _run(first.push, first.tick, 0, MOVE_AT)
    assert first.events() == [k for k in ref if k[0] < reference.ms(MOVE_AT)]
    held = first.active()
    assert held  # conditions are active when the workers change

    second = first.moved_to(w_after, registry, MOVE_AT)
    assert second.active() == held  # every condition held by exactly one new worker
    _run(second.push, second.tick, MOVE_AT, END)
    assert second.events() == [k for k in ref if k[0] >= reference.ms(MOVE_AT)]


def test_without_the_writer_s_slot_a_moved_device_would_be_cleared(registry: Registry) -> None:
    """What the `elsewhere` guard prevents: a worker that loses a district must not clear it."""
    apart = _workers_apart()
    first = Layout.fresh(1, registry)
    _run(first.push, first.tick, 0, MOVE_AT)
    blob = first.lines[0].engine.state_snapshot()
    harbour = next(k for k in range(apart) if Slot(k, apart).owns(HARBOR, ""))
    tl = Timeline(registry, [])
    tl.clock.now_ms = tl.ms(MOVE_AT)
    engine = RuleEngine.restore_many(
        [blob], registry, rules(RULES), tl.clock, slot=Slot(harbour, apart)
    )
    tl.engine = engine
    tl.tick(MOVE_AT)
    assert not [e for e in tl.events if not e.firing], [tl.describe(e) for e in tl.events]
    in_harbour = {
        (a.rule, a.source)
        for a in first.lines[0].engine.active()
        if (a.area or AREA.get(a.device or "", "")).startswith("demo/harbor")
    }
    assert in_harbour
    assert {(a.rule, a.source) for a in engine.active()} == in_harbour
