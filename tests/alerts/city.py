"""A small real registry (SQLite file, shipped profiles) with devices placed for the engine's tests.

Test modules import the fixture (``city_registry``, used as ``registry``) from here (not a conftest, which the lifecycle's tests in
the same directory may also want).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry

RIVERSIDE = "demo/riverside/s1/g0101"
HARBOR = "demo/harbor/s2/g0202"


def _dev(i: str, profile: str, vendor: str, area: str, lat: float, lon: float) -> Device:
    return Device(id=i, vendor=vendor, profile=profile, area=area, lat=lat, lon=lon)


def city() -> list[Device]:
    """Water gauges, rain gauges, pipes, covers (five close together), gas, bins and noise."""
    devices = [
        _dev(f"wl-a{i}", "hydrox-wl", "hydrox", RIVERSIDE, 30.27, 120.10 + i * 0.001)
        for i in range(1, 5)
    ]
    devices += [_dev("wl-h1", "hydrox-wl", "hydrox", HARBOR, 30.26, 120.25)]
    devices += [
        _dev(f"rg-{i}", "hydrox-rg", "hydrox", RIVERSIDE, 30.27, 120.11) for i in range(1, 3)
    ]
    devices += [_dev("rr-1", "rainco-rg", "rainco", HARBOR, 30.26, 120.25)]
    devices += [_dev("pp-1", "hydrox-pp", "hydrox", RIVERSIDE, 30.27, 120.12)]
    # Five covers along one street about 100 m apart, and one 5 km away.
    devices += [
        _dev(f"mc-{i}", "acme-mc", "acme", RIVERSIDE, 30.27, 120.100 + i * 0.001)
        for i in range(1, 6)
    ]
    devices += [_dev("mc-far", "acme-mc", "acme", HARBOR, 30.27, 120.150)]
    devices += [_dev("gs-1", "acme-gas", "acme", RIVERSIDE, 30.27, 120.13)]
    devices += [_dev("bn-1", "acme-bin", "acme", HARBOR, 30.26, 120.24)]
    devices += [_dev("nz-1", "acme-noise", "acme", HARBOR, 30.26, 120.23)]
    return devices


@pytest.fixture(name="registry")
def city_registry(tmp_path: Path) -> Registry:
    reg = Registry(f"sqlite:///{tmp_path / 'hub.db'}")
    load_shipped(reg)
    reg.put_devices(city())
    return reg
