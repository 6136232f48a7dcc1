"""Device flags raised by ingestion itself (flooding, a wrong clock): plain data the hub turns into alerts.

`ingest` may not import `alerts`, so the limiter (`ingest.ratelimit`) and the clock watch
(`ingest.skew`) describe what they found as `DeviceFlag`s; the hub maps them to condition events on
the alert path (one alert per device and kind, raised once and cleared once).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


class FlagKind(enum.StrEnum):
    """What ingestion flags a device for. Stable codes: alert rules are named after them."""

    RATE_LIMIT = "rate_limit"
    CLOCK_SKEW = "clock_skew"


@dataclass(frozen=True, slots=True)
class DeviceFlag:
    """A device's flag went up (``raised``) or came down.

    Attributes:
        kind: what the flag is about.
        device: the device's id.
        raised: True when the flag went up, False when it cleared.
        at_ms: when ingestion decided, epoch ms UTC.
        summary: one sentence for the people who look after devices.
    """

    kind: FlagKind
    device: str
    raised: bool
    at_ms: int
    summary: str


FlagHandler = Callable[[Sequence[DeviceFlag]], Awaitable[None]]
