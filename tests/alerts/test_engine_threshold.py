"""Threshold rules on a timeline: levels, for_s, repeat, hysteresis, clear-after, overrides, late readings."""

from __future__ import annotations

from devices.registry import Registry
from ingest.batch import Quality
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.timeline import Timeline, cleared, fired, rules

WATER = """
- id: wl-high
  kind: threshold
  device_type: water_level
  metric: water_level
  levels: {yellow: 5.0, orange: 5.5, red: 6.0}
"""


def _water(extra: str = "") -> str:
    return WATER + "".join(f"  {line}\n" for line in extra.strip().splitlines())


def test_escalates_yellow_orange_red_and_back_down_then_clears(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    tl.push(at=0, device="wl-a1", metric="water_level", value=4.2)
    tl.want()
    tl.push(at=300, device="wl-a1", metric="water_level", value=5.1)
    tl.want(
        fired(
            "wl-high", "wl-a1", "yellow", at=300, summary_has="water level 5.1 m above yellow 5 m"
        )
    )
    tl.push(at=600, device="wl-a1", metric="water_level", value=5.6)
    tl.want(fired("wl-high", "wl-a1", "orange", at=600))
    tl.push(at=900, device="wl-a1", metric="water_level", value=6.3)
    tl.want(fired("wl-high", "wl-a1", "red", at=900))
    tl.push(at=1200, device="wl-a1", metric="water_level", value=6.4)
    tl.want()  # still red: no event
    tl.push(at=1500, device="wl-a1", metric="water_level", value=5.2)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=1500))  # de-escalated
    tl.push(at=1800, device="wl-a1", metric="water_level", value=4.0)
    tl.want(cleared("wl-high", "wl-a1", at=1800, level="yellow"))


def test_event_carries_device_area_metric_and_the_triggering_reading(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    (ev,) = tl.push(at=10, device="wl-a2", metric="water_level", value=5.7, ts=8)
    assert ev.kind == "threshold"
    assert (ev.device, ev.area, ev.metric, ev.value) == (
        "wl-a2",
        "demo/riverside/s1/g0101",
        "water_level",
        5.7,
    )
    assert [(e.device, e.metric, e.ts_ms, e.value) for e in ev.evidence] == [
        ("wl-a2", "water_level", tl.ms(8), 5.7)
    ]
    assert ev.summary == "wl-a2: water level 5.7 m above orange 5.5 m"


def test_only_devices_of_the_rule_s_type_and_metric(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    tl.push(at=0, device="pp-1", metric="pressure", value=9.0)  # another metric
    tl.push_many(at=1, readings=[("rg-1", "battery", 9.0, 1, 0)])  # another type
    tl.want()


def test_a_reading_at_the_bound_breaches_it(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.0)
    tl.want(fired("wl-high", "wl-a1", "yellow"))


def test_for_s_fires_only_after_breaching_that_long_and_a_dip_restarts_it(
    registry: Registry,
) -> None:
    tl = Timeline(registry, rules(_water("for_s: 600")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    tl.push(at=300, device="wl-a1", metric="water_level", value=5.3)
    tl.push(at=500, device="wl-a1", metric="water_level", value=4.9)  # dips: the window restarts
    tl.push(at=600, device="wl-a1", metric="water_level", value=5.2)
    tl.ticks(600, 1199, every=60)
    tl.want()
    # No reading needed: the window elapses on the timer, within one tick.
    tl.ticks(1200, 1260, every=30)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=1200, summary_has="5.2 m above yellow"))


def test_for_s_fires_on_the_reading_that_completes_the_window(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("for_s: 600")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.6)
    tl.push(at=600, device="wl-a1", metric="water_level", value=5.7)
    tl.want(fired("wl-high", "wl-a1", "orange", at=600))


def test_for_s_applies_to_escalation_too_but_not_to_going_down(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("for_s: 300")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.1)
    tl.push(at=300, device="wl-a1", metric="water_level", value=5.6)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=300))  # orange only breached for 0 s so far
    tl.tick(at=599)
    tl.want()
    tl.tick(at=600)
    tl.want(fired("wl-high", "wl-a1", "orange", at=600))
    tl.push(at=620, device="wl-a1", metric="water_level", value=5.2)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=620))


def test_repeat_needs_that_many_readings_in_a_row(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("repeat: 3")))
    for t, v in [(0, 5.1), (1, 5.1), (2, 4.0), (3, 5.1), (4, 5.2)]:
        tl.push(at=t, device="wl-a1", metric="water_level", value=v)
    tl.want()
    tl.push(at=5, device="wl-a1", metric="water_level", value=5.3)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=5))


def test_deadband_stops_flapping_around_a_bound(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("deadband: 0.2")))
    values = [5.05, 4.95, 5.02, 4.85, 5.56, 5.45, 5.52, 5.34, 5.4, 5.29, 4.9, 4.79]
    for t, v in enumerate(values):
        tl.push(at=t, device="wl-a1", metric="water_level", value=v)
    tl.want(
        fired("wl-high", "wl-a1", "yellow", at=0),
        fired("wl-high", "wl-a1", "orange", at=4),
        fired("wl-high", "wl-a1", "yellow", at=9),  # 5.34 holds orange; 5.29 < 5.5 - 0.2
        cleared("wl-high", "wl-a1", at=11),  # 4.79 < 5.0 - 0.2
    )


def test_without_hysteresis_the_same_values_flap(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    for t, v in enumerate([5.05, 4.95, 5.02, 4.85]):
        tl.push(at=t, device="wl-a1", metric="water_level", value=v)
    assert [e.firing for e in tl.events] == [True, False, True, False]


def test_clear_below_holds_the_lowest_level_until_the_clear_bound(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("clear_below: 4.5")))
    for t, v in [(0, 5.6), (1, 4.8), (2, 4.6), (3, 4.99)]:
        tl.push(at=t, device="wl-a1", metric="water_level", value=v)
    tl.want(
        fired("wl-high", "wl-a1", "orange", at=0),
        fired("wl-high", "wl-a1", "yellow", at=1),  # below yellow's bound, above the clear bound
    )
    tl.push(at=4, device="wl-a1", metric="water_level", value=4.5)
    tl.want(cleared("wl-high", "wl-a1", at=4))


def test_clear_after_s_clears_only_after_that_long_back_to_normal(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("clear_after_s: 600")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.1)
    tl.push(at=100, device="wl-a1", metric="water_level", value=4.0)
    tl.push(
        at=400, device="wl-a1", metric="water_level", value=5.05
    )  # back up: the period restarts
    tl.push(at=500, device="wl-a1", metric="water_level", value=4.0)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=0))
    tl.ticks(501, 1099, every=50)
    tl.want()
    tl.tick(at=1100)
    tl.want(cleared("wl-high", "wl-a1", at=1100))


def test_clear_after_s_also_clears_on_a_reading(registry: Registry) -> None:
    tl = Timeline(registry, rules(_water("clear_after_s: 600")))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.1)
    tl.push(at=100, device="wl-a1", metric="water_level", value=4.0)
    tl.push(at=700, device="wl-a1", metric="water_level", value=4.1)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=0), cleared("wl-high", "wl-a1", at=700))


def test_below_rules_and_clear_above(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(
            """
- id: pressure-low
  kind: threshold
  device_type: pipe_pressure
  metric: pressure
  direction: below
  levels: {yellow: 0.20, orange: 0.15, red: 0.10}
  clear_above: 0.22
"""
        ),
    )
    for t, v in [(0, 0.3), (1, 0.19), (2, 0.08), (3, 0.21), (4, 0.23)]:
        tl.push(at=t, device="pp-1", metric="pressure", value=v)
    tl.want(
        fired(
            "pressure-low",
            "pp-1",
            "yellow",
            at=1,
            summary_has="pressure 0.19 MPa below yellow 0.2 MPa",
        ),
        fired("pressure-low", "pp-1", "red", at=2),
        fired("pressure-low", "pp-1", "yellow", at=3),
        cleared("pressure-low", "pp-1", at=4),
    )


def test_one_rule_with_levels_in_both_directions(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(
            """
- id: pressure-abnormal
  kind: threshold
  device_type: pipe_pressure
  metric: pressure
  levels: {yellow: {below: 0.2}, red: {above: 0.8}}
"""
        ),
    )
    for t, v in [(0, 0.1), (1, 0.9), (2, 0.4)]:
        tl.push(at=t, device="pp-1", metric="pressure", value=v)
    tl.want(
        fired("pressure-abnormal", "pp-1", "yellow", at=0),
        fired("pressure-abnormal", "pp-1", "red", at=1),
        cleared("pressure-abnormal", "pp-1", at=2),
    )


def test_overrides_per_device_and_per_area_most_specific_wins(registry: Registry) -> None:
    tl = Timeline(
        registry,
        rules(
            _water(
                """
overrides:
  - area: demo/harbor
    levels: {yellow: 7.0, orange: 7.5, red: 8.0}
  - area: demo/riverside
    levels: {yellow: 4.0}
  - device: wl-a2
    levels: {yellow: 3.0, orange: 3.5}
  - device: wl-a3
    disabled: true
"""
            )
        ),
    )
    tl.push_many(
        at=0,
        readings=[
            ("wl-a1", "water_level", 4.2, 0, 0),  # riverside: yellow at 4.0
            ("wl-a2", "water_level", 3.6, 0, 0),  # its own: orange at 3.5
            ("wl-a3", "water_level", 9.9, 0, 0),  # disabled here
            ("wl-h1", "water_level", 6.5, 0, 0),  # harbour: below its 7.0
        ],
    )
    tl.want(
        fired("wl-high", "wl-a1", "yellow", summary_has="above yellow 4 m"),
        fired("wl-high", "wl-a2", "orange", summary_has="above orange 3.5 m"),
    )
    tl.push(at=1, device="wl-h1", metric="water_level", value=7.6)
    tl.want(fired("wl-high", "wl-h1", "orange"))


def test_late_and_duplicate_readings_never_fire_or_re_fire(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    tl.push(at=100, device="wl-a1", metric="water_level", value=5.1, ts=100)
    tl.want(fired("wl-high", "wl-a1", "yellow"))
    tl.push(at=101, device="wl-a1", metric="water_level", value=4.0, ts=50)  # late: ignored
    tl.push(at=102, device="wl-a1", metric="water_level", value=5.1, ts=100)  # redelivered
    tl.want()
    tl.push(at=200, device="wl-a1", metric="water_level", value=4.0, ts=200)
    tl.want(cleared("wl-high", "wl-a1"))
    tl.push(at=201, device="wl-a1", metric="water_level", value=6.5, ts=150)  # late: no re-fire
    tl.push(at=202, device="wl-a2", metric="water_level", value=6.5, ts=150)  # another series
    tl.want(fired("wl-high", "wl-a2", "red"))


def test_two_batches_breaching_for_one_device_give_one_event(registry: Registry) -> None:
    tl = Timeline(registry, rules(WATER))
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.2)
    tl.push(at=0.02, device="wl-a1", metric="water_level", value=5.3)
    tl.push(at=0.04, device="wl-a1", metric="water_level", value=5.25)
    tl.want(fired("wl-high", "wl-a1", "yellow", at=0))


def test_many_readings_of_one_device_in_one_batch_are_taken_in_time_order(
    registry: Registry,
) -> None:
    tl = Timeline(registry, rules(_water("repeat: 2")))
    # Out of order in the batch, with a duplicate time (the last received wins, as in the store).
    tl.push_many(
        at=10,
        readings=[
            ("wl-a1", "water_level", 5.6, 3, 0),
            ("wl-a1", "water_level", 5.1, 1, 0),
            ("wl-a2", "water_level", 4.0, 1, 0),
            ("wl-a1", "water_level", 4.0, 4, 0),
            ("wl-a1", "water_level", 5.2, 2, 0),
            ("wl-a1", "water_level", 6.1, 4, 0),
        ],
    )
    # 5.1, 5.2 -> yellow on the second; 5.6 -> orange needs two in a row; 6.1 (the later t=4) -> orange
    tl.want(
        fired("wl-high", "wl-a1", "yellow", at=10),
        fired("wl-high", "wl-a1", "orange", at=10),
    )
    assert tl.events[-1].evidence[0].value == 6.1


def test_non_numbers_are_ignored_and_out_of_range_only_when_the_rule_says(
    registry: Registry,
) -> None:
    tl = Timeline(registry, rules(_water("skip_out_of_range: true")))
    tl.push(
        at=0, device="wl-a1", metric="water_level", value=float("nan"), quality=Quality.NOT_A_NUMBER
    )
    tl.push(at=1, device="wl-a1", metric="water_level", value=99.0, quality=Quality.OUT_OF_RANGE)
    tl.want()
    tl2 = Timeline(registry, rules(WATER))
    tl2.push(at=1, device="wl-a1", metric="water_level", value=99.0, quality=Quality.OUT_OF_RANGE)
    tl2.want(fired("wl-high", "wl-a1", "red"))
