"""The registry on SQLite and PostgreSQL: dense stable indexes, filters, and changes made by another process."""

from __future__ import annotations

import pytest

from devices.errors import NotFoundError
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import DeviceQuery, Registry


@pytest.fixture
def url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL (tests/postgres.py), migrated by Alembic."""
    return db_url


def _bins(n: int, start: int = 0) -> list[Device]:
    return [
        Device(id=f"bin-{i:05d}", vendor="acme", profile="acme-bin", area=f"sh/d{i % 2}/s{i % 5}")
        for i in range(start, start + n)
    ]


def test_indexes_are_dense_and_stable_across_updates_and_reopening(url: str) -> None:
    reg = Registry(url)
    load_shipped(reg)
    assert reg.put_devices(_bins(100)) == 100
    first = {d: e.index for d, e in reg.interner.devices.items()}
    assert sorted(first.values()) == list(range(100))
    # Updating devices (a rename) and adding more never moves an index.
    assert reg.put_devices([d.model_copy(update={"name": "renamed"}) for d in _bins(50)]) == 0
    assert reg.put_devices(_bins(10, start=100)) == 10
    again = Registry(url)
    assert {d: again.interner.devices[d].index for d in first} == first
    assert again.interner.devices["bin-00105"].index == 105
    assert again.device("bin-00003").name == "renamed"
    metrics = dict(reg.interner.metrics)
    assert dict(again.interner.metrics) == metrics


def test_another_process_s_changes_are_picked_up_by_refresh(url: str) -> None:
    hub = Registry(url)
    load_shipped(hub)
    assert hub.refresh() is False
    importer = Registry(url)  # e.g. `hub devices import` in another process
    importer.put_devices(_bins(5))
    assert "bin-00004" not in hub.interner.devices
    version = hub.version
    assert hub.refresh() is True
    assert hub.version > version
    assert hub.interner.devices["bin-00004"].vendor == "acme"
    assert hub.refresh() is False


def test_queries_filter_and_page(url: str) -> None:
    reg = Registry(url)
    load_shipped(reg)
    reg.put_devices(_bins(20))
    items, total = reg.devices(DeviceQuery(area="sh/d1", limit=3))
    assert total == 10
    assert [d.id for d in items] == ["bin-00001", "bin-00003", "bin-00005"]
    assert reg.devices(DeviceQuery(type="bin_fill"))[1] == 20
    assert reg.devices(DeviceQuery(type="water_level"))[1] == 0
    with pytest.raises(NotFoundError):
        reg.device("bin-99999")


def test_a_device_with_an_unknown_profile_is_refused(url: str) -> None:
    reg = Registry(url)
    load_shipped(reg)
    with pytest.raises(NotFoundError, match="nope"):
        reg.put_devices([Device(id="x-1", vendor="acme", profile="nope")])
    assert "x-1" not in reg.interner.devices
