"""Topic conventions: devices publish on ``sensors/{vendor}/{device_id}/up`` and ``.../status``."""

from __future__ import annotations

import enum

import msgspec

PREFIX = "sensors"


class TopicKind(enum.StrEnum):
    """What a device topic carries."""

    UP = "up"  # telemetry
    STATUS = "status"  # online/offline (last will, retained)


class TopicParts(msgspec.Struct, frozen=True, gc=False):
    """The parts of a device topic (one per message: untracked by the collector, it holds no cycle)."""

    vendor: str
    device_id: str
    kind: TopicKind


_KINDS = {k.value: k for k in TopicKind}


def parse(topic: str) -> TopicParts | None:
    """The parts of ``topic``, or None when it is not a device topic."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    kind = _KINDS.get(parts[3])
    if kind is None:
        return None
    return TopicParts(parts[1], parts[2], kind)


def up(vendor: str, device_id: str) -> str:
    """The telemetry topic of a device."""
    return f"{PREFIX}/{vendor}/{device_id}/up"


def status(vendor: str, device_id: str) -> str:
    """The status topic of a device."""
    return f"{PREFIX}/{vendor}/{device_id}/status"


SUBSCRIPTIONS = (f"{PREFIX}/+/+/up", f"{PREFIX}/+/+/status")
