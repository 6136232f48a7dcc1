"""Per-slot names and ownership of an ingest worker of several (hub/slots.py)."""

from __future__ import annotations

from alerts.events import Level
from alerts.lifecycle import Alert, State
from devices.partitions import Slot
from hub.settings import HubSettings
from hub.slots import alert_owner, cluster_slot, slot_client_id, slot_file


def test_one_worker_has_no_slot_and_keeps_its_names() -> None:
    assert cluster_slot(HubSettings()) is None
    assert slot_client_id("hub-ingest", None) == "hub-ingest"
    assert slot_file("rule-state.npz", None) == "rule-state.npz"
    assert alert_owner(None) is None


def test_a_worker_of_several_names_its_session_and_state_after_its_slot() -> None:
    settings = HubSettings(
        mqtt={"embedded": False},  # a cluster shares one broker
        cluster={"workers": 4, "worker": 3},
    )
    slot = cluster_slot(settings)
    assert slot == Slot(3, 4, 64)
    assert slot_client_id("hub-ingest", slot) == "hub-ingest-w3"
    assert slot_client_id("hub-ingest-w3", slot) == "hub-ingest-w3"  # set per worker already
    assert slot_file("rule-state.npz", slot) == "rule-state-w3of4.npz"
    assert slot_file("state/rules.npz", slot) == "state/rules-w3of4.npz"


def test_alerts_belong_to_their_device_s_or_area_s_slot_and_the_rest_to_slot_0() -> None:
    area = "demo/riverside/st01"
    owner = next(k for k in range(4) if Slot(k, 4).owns(area, ""))

    def alert(source: str = "x", device: str | None = None, area: str | None = None) -> Alert:
        return Alert(
            id=1,
            rule="r",
            source=source,
            kind="threshold",
            level=Level.RED,
            state=State.RAISED,
            firing=True,
            summary="",
            first_ms=0,
            last_ms=0,
            updated_ms=0,
            seq=1,
            state_ms=0,
            device=device,
            area=area,
        )

    for k in range(4):
        mine = alert_owner(Slot(k, 4))
        assert mine is not None
        assert mine(alert(device="wl-1", area=area)) == (k == owner)
        assert mine(alert(area=area)) == (k == owner)
        assert mine(alert(source="store:readings")) == (k == 0)
