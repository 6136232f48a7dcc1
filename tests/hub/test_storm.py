"""The demo's storm: rain and water rise in one district only, covers open, one street goes dark."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from devices.profiles import Device
from hub.democity import demo_devices
from hub.simulator import Simulator
from hub.storm import Storm

START = datetime(2026, 7, 15, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
DISTRICT = "demo/riverside"


@pytest.fixture(scope="module")
def city() -> list[Device]:
    return demo_devices(2000)


def _messages(city: list[Device], at: float, storm: Storm | None) -> dict[str, list[object]]:
    """device id -> payloads of one message from every sender at time ``at``."""
    sim = Simulator(city, seed=3, scenarios=[storm] if storm else [], clock=lambda: at)
    out: dict[str, list[object]] = defaultdict(list)
    sim.step(
        sim.senders, sim.moment(100.0), lambda t, p: out[t.split("/")[2]].append(json.loads(p))
    )
    return out


def _area(city: list[Device]) -> dict[str, str]:
    return {d.id: d.area for d in city}


def _water_level_cm(payload: object) -> float:
    assert isinstance(payload, list)
    return float(next(r["v"] for r in payload if r.get("n") == "water_level"))


def test_water_rises_in_the_district_only(city: list[Device]) -> None:
    storm = Storm(DISTRICT, START)
    at = START + 1800  # half an hour in: +3 m capped at max_rise_m
    calm, stormy = _messages(city, at, None), _messages(city, at, storm)
    areas = _area(city)
    levels = [d for d in stormy if d.startswith("wl-")]
    inside = [d for d in levels if areas[d].startswith(DISTRICT + "/")]
    outside = [d for d in levels if not areas[d].startswith(DISTRICT + "/")]
    assert inside
    assert outside
    for d in inside:
        assert _water_level_cm(stormy[d][0]) - _water_level_cm(calm[d][0]) == pytest.approx(
            300.0, abs=1e-6
        )
    for d in outside:
        assert _water_level_cm(stormy[d][0]) == _water_level_cm(calm[d][0])


def test_rain_climbs_covers_open_and_a_street_goes_dark(city: list[Device]) -> None:
    areas = _area(city)
    street = next(a for a in sorted(set(areas.values())) if a.startswith(DISTRICT + "/")).rsplit(
        "/", 1
    )[0]
    storm = Storm(DISTRICT, START, dark_street=street, dark_after_s=60)
    before, during = _messages(city, START - 10, storm), _messages(city, START + 600, storm)
    dark = {d for d, a in areas.items() if a.startswith(street + "/")}
    assert dark & set(before), "the street's devices report before the power cut"
    assert not dark & set(during), "and are silent after it"
    covers = [d for d in during if d.startswith("mc-") and areas[d].startswith(DISTRICT + "/")]
    opened = [d for d in covers if during[d][0]["open"] == 1]  # type: ignore[index]
    assert 0 < len(opened) < len(covers)
    gauges = [d for d in during if d.startswith("rg-") and areas[d].startswith(DISTRICT + "/")]
    assert gauges
    for d in gauges:
        rate = next(r["v"] for r in during[d][0] if r.get("n") == "rain_rate")  # type: ignore[union-attr]
        assert rate >= 80.0
