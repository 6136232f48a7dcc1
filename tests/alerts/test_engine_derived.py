"""Composite rules (all of several rules in one area) and clusters (many conditions close together)."""

from __future__ import annotations

from devices.registry import Registry
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.timeline import Timeline, cleared, fired, rules

FLOOD = """
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
"""

COVERS = """
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
"""


def test_composite_fires_while_all_rules_hold_in_one_area(registry: Registry) -> None:
    tl = Timeline(registry, rules(FLOOD))
    tl.push(at=0, device="rg-1", metric="rainfall", value=35.0)
    tl.want(fired("rain-1h", "rg-1", "yellow", at=0))
    tl.push(at=0, device="wl-h1", metric="water_level", value=3.0)  # rising, but in the harbour
    tl.push(at=300, device="wl-h1", metric="water_level", value=3.5)
    tl.want(fired("wl-rising", "wl-h1", "yellow", at=300))
    tl.push(at=0, device="wl-a1", metric="water_level", value=3.0)
    tl.push(at=600, device="wl-a1", metric="water_level", value=3.4)
    tl.want(
        fired("wl-rising", "wl-a1", "yellow", at=600),
        fired(
            "flood-risk",
            "area:demo/riverside",
            "orange",
            at=600,
            summary_has="rain-1h on 1, wl-rising on 1",
        ),
    )
    tl.push(at=4000, device="rg-1", metric="rainfall", value=0.0)  # the rain left the window
    tl.want(
        cleared("rain-1h", "rg-1", at=4000),
        cleared("flood-risk", "area:demo/riverside", at=4000),
    )


def test_cluster_of_open_covers_close_together_is_one_condition(registry: Registry) -> None:
    tl = Timeline(registry, rules(COVERS))
    tl.push(at=0, device="mc-1", metric="cover_open", value=1)
    tl.push(at=60, device="mc-far", metric="cover_open", value=1)  # 5 km away
    tl.push(at=120, device="mc-3", metric="cover_open", value=1)
    tl.want(
        fired("cover-open", "mc-1", "orange"),
        fired("cover-open", "mc-far", "orange"),
        fired("cover-open", "mc-3", "orange"),
    )
    tl.push(at=180, device="mc-2", metric="cover_open", value=1)
    tl.want(
        fired("cover-open", "mc-2", "orange", at=180),
        fired(
            "covers-cluster",
            "cluster:cover-open:mc-1",
            "red",
            at=180,
            summary_has="3 cover-open conditions within 500 m",
        ),
    )
    tl.push(at=240, device="mc-4", metric="cover_open", value=1)  # joins: no second cluster event
    tl.want(fired("cover-open", "mc-4", "orange", at=240))
    # Four members; the cluster ends when fewer than three are still open.
    for t, d in ((300, "mc-1"), (310, "mc-2")):
        tl.push(at=t, device=d, metric="cover_open", value=0)
    tl.want(
        cleared("cover-open", "mc-1", at=300),
        cleared("cover-open", "mc-2", at=310),
        cleared("covers-cluster", "cluster:cover-open:mc-1", at=310),
    )
    assert "2 cover-open conditions still active" in tl.events[-1].summary


def test_conditions_too_far_apart_in_time_do_not_cluster(registry: Registry) -> None:
    tl = Timeline(registry, rules(COVERS))
    for t, d in ((0, "mc-1"), (600, "mc-2"), (1200, "mc-3")):
        tl.push(at=t, device=d, metric="cover_open", value=1)
    assert {e.rule for e in tl.events} == {"cover-open"}
