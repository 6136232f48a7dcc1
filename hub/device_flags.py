"""Ingestion's device flags (flooding, a wrong clock) as alerts: one per device and kind, raised once.

`ingest` cannot import `alerts`; it hands `DeviceFlag`s to the hub, which turns them into condition
events on the rule engine's alert path. Their source is ``ingest:<device>``, not ``device:<device>``:
the engine's restart reconciliation clears ``device:`` conditions it does not hold itself, and these
are not the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.events import ConditionEvent, Level
from devices.errors import NotFoundError
from devices.registry import Registry
from ingest.flags import DeviceFlag

SOURCE_PREFIX = "ingest:"
RULE_PREFIX = "ingest."
KIND = "ingest"
LEVEL = Level.BLUE  # the device needs looking after; the city is not in danger


def flag_events(flags: Sequence[DeviceFlag], registry: Registry) -> list[ConditionEvent]:
    """One condition event per flag change, with the device's area when the registry knows it."""
    events: list[ConditionEvent] = []
    for flag in flags:  # per flag change (rare), never per reading
        try:
            area = registry.device(flag.device).area or None
        except NotFoundError:
            area = None
        events.append(
            ConditionEvent(
                rule=RULE_PREFIX + flag.kind.value,
                source=SOURCE_PREFIX + flag.device,
                kind=KIND,
                level=LEVEL,
                firing=flag.raised,
                at_ms=flag.at_ms,
                summary=flag.summary,
                device=flag.device,
                area=area,
            )
        )
    return events
