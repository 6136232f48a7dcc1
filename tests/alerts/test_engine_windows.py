"""Rate and accumulation rules on a timeline: rises within a window, sums over sliding windows."""

from __future__ import annotations

from devices.registry import Registry
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.timeline import Timeline, cleared, fired, rules

RISING = """
- id: wl-rising
  kind: rate
  device_type: water_level
  metric: water_level
  window_s: 3600
  levels: {yellow: 0.3, orange: 0.6}
"""

RAIN = """
- id: rain-1h
  kind: accumulation
  device_type: rain_gauge
  metric: rainfall
  window_s: 3600
  resolution_s: 300
  levels: {blue: 20, yellow: 30}
"""


def test_rate_fires_when_the_rise_within_the_window_reaches_a_level(registry: Registry) -> None:
    tl = Timeline(registry, rules(RISING))
    for k, v in enumerate([3.0, 3.05, 3.1, 3.2, 3.31, 3.5, 3.65]):
        tl.push(at=k * 300, device="wl-a1", metric="water_level", value=v)
    tl.want(
        fired(
            "wl-rising",
            "wl-a1",
            "yellow",
            at=1200,
            summary_has="water level rose 0.31 m within 1 h",
        ),
        fired("wl-rising", "wl-a1", "orange", at=1800),
    )


def test_rate_measures_only_within_the_window(registry: Registry) -> None:
    tl = Timeline(registry, rules(RISING))
    # +0.5 m, but over two hours: never 0.3 m within one.
    for k in range(9):
        tl.push(at=k * 900, device="wl-a1", metric="water_level", value=3.0 + k * 0.0625)
    tl.want()


def test_rate_clears_when_the_level_steadies_and_falls_are_a_separate_rule(
    registry: Registry,
) -> None:
    tl = Timeline(
        registry,
        rules(
            RISING
            + """
- id: wl-falling
  kind: rate
  direction: fall
  device_type: water_level
  metric: water_level
  window_s: 1800
  levels: {blue: 0.5}
"""
        ),
    )
    tl.push(at=0, device="wl-a2", metric="water_level", value=3.0)
    tl.push(at=600, device="wl-a2", metric="water_level", value=3.4)
    tl.want(fired("wl-rising", "wl-a2", "yellow", at=600))
    tl.push(
        at=4300, device="wl-a2", metric="water_level", value=3.4
    )  # the low of t=0 left the window
    tl.want(cleared("wl-rising", "wl-a2", at=4300))
    tl.push(at=4400, device="wl-a2", metric="water_level", value=2.8)
    tl.want(fired("wl-falling", "wl-a2", "blue", at=4400, summary_has="fell 0.6 m within 30 min"))


def test_accumulation_sums_over_the_window_and_slides_on_the_timer(registry: Registry) -> None:
    tl = Timeline(registry, rules(RAIN))
    for k in range(12):  # 2.5 mm every 5 minutes: 30 mm in the hour
        tl.push(at=k * 300 + 10, device="rg-1", metric="rainfall", value=2.5)
    tl.want(
        fired("rain-1h", "rg-1", "blue", at=7 * 300 + 10, summary_has="rainfall 20 mm in 1 h"),
        fired("rain-1h", "rg-1", "yellow", at=11 * 300 + 10),
    )
    # The rain stops. 5-minute buckets leave the window one by one, on the timer, without readings:
    # at 3600 s the first (27.5 mm left), at 4800 s the fifth (17.5 mm left).
    tl.ticks(3400, 3900, every=60)
    tl.want(fired("rain-1h", "rg-1", "blue", at=3640, summary_has="27.5 mm"))
    assert [(e.ts_ms, e.value) for e in tl.events[-1].evidence] == [(tl.ms(3310), 2.5)]
    tl.ticks(3960, 5400, every=60)
    tl.want(cleared("rain-1h", "rg-1", at=4800))


def test_accumulation_dry_readings_cost_nothing_and_keep_nothing(registry: Registry) -> None:
    tl = Timeline(registry, rules(RAIN))
    for k in range(50):
        tl.push(at=k * 300, device="rg-2", metric="rainfall", value=0.0)
    tl.ticks(15000, 15010)
    tl.want()


def test_accumulation_per_level_windows_like_the_rainstorm_signals(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(
            """
- id: rainstorm
  kind: accumulation
  device_type: rain_gauge
  metric: rainfall
  window_s: 10800
  resolution_s: 900
  levels:
    yellow: {above: 50, window_s: 21600}
    orange: {above: 50}
    red: {above: 100}
"""
        ),
    )
    # 10 mm per hour for 6 h: 60 mm in 6 h (yellow) but never 50 mm in 3 h.
    for h in range(6):
        tl.push(at=h * 3600 + 60, device="rg-1", metric="rainfall", value=10.0)
    tl.want(fired("rainstorm", "rg-1", "yellow", at=4 * 3600 + 60, summary_has="50 mm in 6 h"))
    # Then a downpour: 45 mm in one report; the last 3 h hold 10+10+45 = 65 mm -> orange.
    tl.push(at=6 * 3600 + 60, device="rg-1", metric="rainfall", value=45.0)
    tl.want(fired("rainstorm", "rg-1", "orange", summary_has="65 mm in 3 h"))


def test_accumulation_takes_a_gateway_s_minute_history_in_one_batch(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(RAIN.replace("device_type: rain_gauge", "device_type: rain_gauge\n  repeat: 1")),
    )
    # rainco stations send five minutes at once, one reading a minute.
    tl.push_many(at=300, readings=[("rr-1", "rainfall", 4.5, 60 * k, 0) for k in range(1, 6)])
    tl.want(fired("rain-1h", "rr-1", "blue", at=300, summary_has="rainfall 22.5 mm in 1 h"))
