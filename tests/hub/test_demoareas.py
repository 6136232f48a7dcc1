"""The demo city's response set-up: a five-level tree covering every device path, units, shifts, accounts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from alerts._response_tables import ResponseDb
from alerts.roster import Roster
from alerts.units import UnitStore
from devices.areas import AreaLevel, AreaTree, inside
from devices.users import UserStore
from hub.demoareas import CREW, CREW_UNIT, RIVERSIDE_OFFICER, demo_tree, prepare_demo_response
from hub.democity import DISTRICTS, demo_devices
from hub.settings import HubSettings


def test_the_tree_names_every_path_devices_use() -> None:
    devices = demo_devices(1500)
    areas = {a.path: a for a in demo_tree(devices)}
    levels = Counter(a.level for a in areas.values())
    assert levels[AreaLevel.PROVINCE] == 1
    assert levels[AreaLevel.CITY] == 1
    assert levels[AreaLevel.COUNTY] == len(DISTRICTS)
    assert levels[AreaLevel.TOWN] == 6 * len(DISTRICTS)  # five streets and the embankment each
    for d in devices:
        parts = d.area.split("/")
        for depth in range(1, len(parts) + 1):
            assert "/".join(parts[:depth]) in areas, d.area
    # A grid is its 0.01-degree cell cut to its street: a box inside both.
    grid = next(a for a in areas.values() if a.level is AreaLevel.VILLAGE)
    ring = np.asarray(grid.boundary["coordinates"][0])  # type: ignore[index]
    street = np.asarray(areas[grid.parent].boundary["coordinates"][0])  # type: ignore[index, arg-type]
    centre = ring[:-1].mean(axis=0)
    assert inside(street, np.array([centre[1]]), np.array([centre[0]]))[0]
    assert np.ptp(ring[:, 0]) <= 0.01 + 1e-9


def test_prepare_twice_changes_nothing(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path)
    devices = demo_devices(300)
    users = UserStore(settings.registry)
    first = prepare_demo_response(settings, devices, users)
    second = prepare_demo_response(settings, devices, users)
    assert first == second  # the same passwords, kept with the demo's others
    assert {name for name, _, _ in first} == {RIVERSIDE_OFFICER, CREW}
    assert set(json.loads((tmp_path / "demo-users.json").read_text())) == {RIVERSIDE_OFFICER, CREW}
    assert users.user(RIVERSIDE_OFFICER).area == "demo/riverside"
    db = ResponseDb(settings.registry)
    units = UnitStore(db).units()
    assert len(units) == 4 * len(DISTRICTS)
    assert UnitStore(db).of_account(CREW).id == CREW_UNIT  # type: ignore[union-attr]
    shifts = Roster(db).shifts(limit=10_000)
    assert len(shifts) == 7 * 3 * 4  # a week of 8-hour shifts for four people, once
    tree = AreaTree(settings.registry)
    assert tree.covers("dp") == ("dp", "demo")
    db.dispose()
    tree.dispose()
    users.engine.dispose()
