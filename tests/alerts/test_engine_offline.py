"""Offline rules on a timeline: detection on the timer, debounce, recovery, reminders, dark areas."""

from __future__ import annotations

from alerts.engine import RuleEngine
from devices.partitions import Slot
from devices.registry import Registry
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.timeline import Clock, Timeline, cleared, fired, rules

# Water level gauges report every 300 s: offline after 900 s of silence.
OFFLINE = """
- id: wl-offline
  kind: offline
  device_type: water_level
  after_intervals: 3
  level: yellow
"""

HARBOR_ONLY = OFFLINE + "  areas: [demo/harbor]\n"


def _alive(tl: Timeline, devices: list[str], at: float) -> None:
    tl.push_many(at=at, readings=[(d, "water_level", 3.0, at, 0) for d in devices])


def test_detected_within_one_tick_of_the_limit_on_the_timer_not_on_arrival(
    registry: Registry,
) -> None:
    tl = Timeline(registry, rules(HARBOR_ONLY))
    _alive(tl, ["wl-h1"], at=100)
    tl.ticks(0, 999)
    _alive(tl, ["wl-a1"], at=1000.5)  # other devices' data does not run detection
    tl.want()
    tl.tick(at=1000)  # 900 s after the last reading
    tl.want(
        fired(
            "wl-offline",
            "wl-h1",
            "yellow",
            at=1000,
            summary_has="no data for 15 min (expected every 5 min)",
        )
    )
    tl.ticks(1001, 1500)
    tl.want()
    tl.want(fired("wl-offline", "wl-h1", "yellow"), between=(999, 1001))


def test_devices_never_heard_count_from_when_the_engine_started(registry: Registry) -> None:
    tl = Timeline(registry, rules(HARBOR_ONLY))
    tl.ticks(0, 899, every=10)
    tl.want()
    tl.tick(at=900)
    tl.want(fired("wl-offline", "wl-h1", "yellow", at=900))


def test_gaps_shorter_than_the_limit_never_alert(registry: Registry) -> None:
    tl = Timeline(registry, rules(HARBOR_ONLY))
    for t in (0, 500, 1390, 2280, 2400):  # gaps of 500, 890, 890, 120 s
        _alive(tl, ["wl-h1"], at=t)
        tl.ticks(t, t + 880, every=20)
    tl.want()


def test_recovery_clears_at_once_when_data_returns(registry: Registry) -> None:
    tl = Timeline(registry, rules(HARBOR_ONLY))
    _alive(tl, ["wl-h1"], at=0)
    tl.ticks(0, 1200, every=30)
    tl.want(fired("wl-offline", "wl-h1", "yellow", at=900))
    _alive(tl, ["wl-h1"], at=1234)  # not waiting for a tick
    tl.want(cleared("wl-offline", "wl-h1", at=1234, level="yellow"))
    assert "data again after 20 min" in tl.events[-1].summary
    tl.ticks(1235, 2000, every=30)
    tl.want()


def test_reminders_while_still_offline(registry: Registry) -> None:
    tl = Timeline(registry, rules(HARBOR_ONLY + "  remind_s: 3600\n"))
    _alive(tl, ["wl-h1"], at=0)
    tl.ticks(0, 8200, every=100)
    tl.want(
        fired("wl-offline", "wl-h1", "yellow", at=900),
        fired(
            "wl-offline", "wl-h1", "yellow", at=4500, summary_has="still no data, for 1 h 15 min"
        ),
        fired(
            "wl-offline", "wl-h1", "yellow", at=8100, summary_has="still no data, for 2 h 15 min"
        ),
    )


def test_a_street_going_dark_gives_one_area_event_not_one_per_device(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(OFFLINE + "  area: {depth: 3, min_devices: 3, min_fraction: 0.5}\n"),
    )
    # Four riverside gauges report at different phases and then all stop; the harbour one keeps on.
    for d, t in (("wl-a1", 0), ("wl-a2", 100), ("wl-a3", 200), ("wl-a4", 250)):
        _alive(tl, [d], at=t)
    for t in range(0, 3000, 60):
        _alive(tl, ["wl-h1"], at=t + 30)
        tl.tick(at=t)
    tl.want(
        fired(
            "wl-offline",
            "area:demo/riverside/s1",
            "yellow",
            at=900,
            summary_has="4 of 4 devices (water_level) went silent together",
        ),
    )
    # Three come back: the area is no longer dark; the one still silent now raises its own event.
    _alive(tl, ["wl-a1", "wl-a2", "wl-a3"], at=3000)
    tl.want(
        cleared("wl-offline", "area:demo/riverside/s1", at=3000),
        fired("wl-offline", "wl-a4", "yellow", at=3000),
    )
    _alive(tl, ["wl-a4"], at=3100)
    tl.want(cleared("wl-offline", "wl-a4", at=3100))


def test_one_device_failing_in_an_area_is_a_device_event(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(OFFLINE + "  area: {depth: 3, min_devices: 3, min_fraction: 0.5}\n"),
    )
    for t in range(0, 2000, 100):
        _alive(tl, ["wl-a1", "wl-a2", "wl-a3", "wl-h1"], at=t)
        tl.tick(at=t + 50)
    tl.want(fired("wl-offline", "wl-a4", "yellow", at=950))


def test_an_area_already_alerted_device_keeps_its_alert_when_the_area_goes_dark(
    registry: Registry,
) -> None:
    tl = Timeline(
        registry,
        rules(OFFLINE + "  area: {depth: 3, min_devices: 3, min_fraction: 0.5}\n"),
    )
    for t in range(0, 1000, 100):
        _alive(tl, ["wl-a1", "wl-a2", "wl-a3", "wl-h1"], at=t)
        tl.tick(at=t + 50)
    tl.want(fired("wl-offline", "wl-a4", "yellow", at=950))
    for t in range(1000, 3000, 100):
        _alive(tl, ["wl-h1"], at=t)
        tl.tick(at=t + 50)
    # The other three missed 1.5 reports (suspect) by 1350 s, and one of them (wl-a4) is offline.
    tl.want(fired("wl-offline", "area:demo/riverside/s1", "yellow", at=1350))
    assert {(a.source, a.level.label) for a in tl.engine.active()} == {
        ("device:wl-a4", "yellow"),
        ("area:demo/riverside/s1", "yellow"),
    }


GATEWAY_OFFLINE = """
- id: gw-offline
  kind: offline
  device_type: gateway
  after_s: 100
  level: blue
"""


def test_a_gateway_is_alive_while_its_detectors_readings_arrive(registry: Registry) -> None:
    from devices.profiles import Device  # noqa: PLC0415

    # A gateway's messages carry only its detectors' readings (trafix): those prove it alive.
    registry.put_devices(
        [
            Device(id="tgw-1", vendor="trafix", profile="trafix-gw", area=HARBOR_AREA),
            *(
                Device(
                    id=f"tf-{i}",
                    vendor="trafix",
                    profile="trafix-flow",
                    area=HARBOR_AREA,
                    tags={"gateway": "tgw-1"},
                )
                for i in (1, 2)
            ),
        ]
    )
    tl = Timeline(registry, rules(GATEWAY_OFFLINE))
    for t in range(0, 300, 50):
        tl.push_many(at=t, readings=[("tf-1", "vehicle_count", 3.0, t, 0)])
        tl.ticks(t, t + 49, every=7)
    tl.want()
    tl.ticks(300, 400, every=5)
    tl.want(fired("gw-offline", "tgw-1", "blue", at=350))
    tl.push_many(at=401, readings=[("tf-2", "vehicle_count", 1.0, 401, 0)])
    tl.want(cleared("gw-offline", "tgw-1"))


HARBOR_AREA = "demo/harbor/gangwan-rd"


def test_a_worker_slot_watches_only_its_own_districts(registry: Registry) -> None:
    """One ingest worker of several hears only its devices: it must not call the others offline."""
    # The first worker count at which the two districts land on different slots (CRC-32 of the
    # districts: partitions 0 and 24 of 64, so 16 workers).
    workers = next(
        w for w in (2, 3, 4, 8, 16) if _slot_of("demo/riverside", w) != _slot_of("demo/harbor", w)
    )
    mine = Slot(_slot_of("demo/riverside", workers), workers)
    theirs = Slot(_slot_of("demo/harbor", workers), workers)
    ours = RuleEngine(registry, rules(OFFLINE), Clock(), slot=mine)
    tl = Timeline(registry, rules(OFFLINE), engine=ours)
    tl.ticks(0, 900, every=10)
    fired_for = {e.device for e in tl.events if e.firing}
    assert fired_for
    assert all(d.startswith("wl-a") for d in fired_for)  # riverside's, never harbor's wl-h1
    assert ours.owns_source("device:wl-a1")
    assert not ours.owns_source("device:wl-h1")
    assert ours.owns_source("area:demo/riverside/st1")
    assert not ours.owns_source("area:demo/harbor")
    other = Timeline(
        registry, rules(OFFLINE), RuleEngine(registry, rules(OFFLINE), Clock(), slot=theirs)
    )
    other.ticks(0, 900, every=10)
    assert {e.device for e in other.events if e.firing} == {"wl-h1"}


def _slot_of(area: str, workers: int) -> int:
    return next(k for k in range(workers) if Slot(k, workers).owns(area, ""))
