"""Device partitions: a district on one worker slot, every device on exactly one slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.loader import load_shipped
from devices.partitions import Slot, owned_device_ids, partition_key, partition_of
from devices.registry import Device, Registry


def test_partition_key_is_the_district() -> None:
    assert partition_key("demo/riverside/st01/g02", "x") == "demo/riverside"
    assert partition_key("/demo/riverside/", "x") == "demo/riverside"
    assert partition_key("demo", "x") == "demo"
    assert partition_key("", "x") == "device:x"
    assert partition_key(None, "x") == "device:x"


def test_partitions_are_stable_numbers() -> None:
    # CRC-32, not hash(): the same in every process and on every machine.
    assert partition_of("demo/riverside", 64) == partition_of("demo/riverside", 64)
    assert 0 <= partition_of("demo/riverside", 64) < 64
    assert [partition_of(f"d{i}", 64) for i in range(3)] == [
        partition_of(f"d{i}", 64) for i in range(3)
    ]


def test_a_slot_must_be_in_range() -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        Slot(2, 2)
    assert Slot(0, 1).alone
    assert Slot(0, 3).takes_strays
    assert not Slot(1, 3).takes_strays


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_every_device_has_exactly_one_slot_and_districts_stay_together(
    tmp_path: Path, workers: int
) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'hub.db'}")
    load_shipped(registry)
    districts = [f"city/d{k}" for k in range(12)]
    registry.put_devices(
        [
            Device(
                id=f"bin-{i:04d}",
                vendor="acme",
                profile="acme-bin",
                area=f"{districts[i % 12]}/st{i % 5}" if i % 17 else "",
            )
            for i in range(600)
        ]
    )
    owned = [owned_device_ids(registry, Slot(k, workers)) for k in range(workers)]
    assert sum(len(o) for o in owned) == 600
    assert set().union(*owned) == {f"bin-{i:04d}" for i in range(600)}
    for k, mine in enumerate(owned):
        slot = Slot(k, workers)
        for i in range(600):
            device = f"bin-{i:04d}"
            area = f"{districts[i % 12]}/st{i % 5}" if i % 17 else ""
            assert (device in mine) == slot.owns(area, device)
    # The devices of one district are all on the slot that owns the district.
    for district in districts:
        members = {f"bin-{i:04d}" for i in range(600) if i % 17 and districts[i % 12] == district}
        assert sum(1 for mine in owned if members <= mine) == 1
