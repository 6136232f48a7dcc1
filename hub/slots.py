"""This process's ingest worker slot, and the names that must differ from slot to slot.

With ``cluster.workers`` above 1, each ingest worker keeps its own broker session (the broker queues
a dead worker's messages under its client id until the worker's slot is restarted) and its own rule
state file (what its devices' pending windows and counters are). Both are named after the slot, so a
slot restarted on another machine resumes exactly where the dead one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from alerts.lifecycle import Alert
from devices.partitions import Slot
from hub.settings import HubSettings


def cluster_slot(settings: HubSettings) -> Slot | None:
    """The slot this process ingests for; None when it is the only ingest worker."""
    cluster = settings.cluster
    if cluster.workers == 1:
        return None
    return Slot(cluster.worker, cluster.workers, cluster.partitions)


def slot_client_id(client_id: str, slot: Slot | None) -> str:
    """The MQTT client id of the slot's persistent session (``hub-ingest-w1``).

    A client id that already names the slot (set per worker, as docker-compose.yml does) is kept.
    """
    if slot is None or client_id.endswith(f"-w{slot.worker}"):
        return client_id
    return f"{client_id}-w{slot.worker}"


def slot_file(name: str, slot: Slot | None) -> str:
    """A per-slot file name: ``rule-state.npz`` becomes ``rule-state-w1of4.npz`` (slot 1 of 4).

    The worker count is in the name so that, when it changes, the new slots' files never overwrite
    the old workers' before every new slot has read its share of them (hub/checkpoints.py).
    """
    if slot is None or slot.alone:
        return name
    path = PurePath(name)
    return str(path.with_name(f"{path.stem}-w{slot.worker}of{slot.workers}{path.suffix}"))


def alert_owner(slot: Slot | None) -> Callable[[Alert], bool] | None:
    """Whether an alert is this slot's to group, repeat and escalate (None: every alert is).

    A device's alert belongs to its device's slot, an area's to its district's; alerts of no device
    or area (the store, cameras, incidents) to slot 0.
    """
    if slot is None:
        return None

    def mine(alert: Alert) -> bool:
        if alert.device:
            return slot.owns(alert.area, alert.device)
        if alert.area:
            return slot.owns(alert.area, "")
        return slot.takes_strays

    return mine
