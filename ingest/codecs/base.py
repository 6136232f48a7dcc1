"""The codec contract: raw message in, columns out, or a `DecodeError` that a vendor can read."""

from __future__ import annotations

import enum
from typing import Protocol

import msgspec

from ingest.errors import IngestError


class DecodeReason(enum.StrEnum):
    """Why a payload (or one reading in it) was rejected. Stable codes: vendors filter on them."""

    MALFORMED_JSON = "malformed_json"
    WRONG_TYPE = "wrong_type"
    MISSING_FIELD = "missing_field"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_UNIT = "unknown_unit"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    OVERSIZED = "oversized"
    WRONG_VENDOR = "wrong_vendor"
    DECOMMISSIONED = "decommissioned"
    BAD_TOPIC = "bad_topic"
    NOT_A_NUMBER = "not_a_number"


class DecodeError(IngestError):
    """A payload, or a part of it, that cannot become readings.

    Attributes:
        reason: the stable reason code.
        detail: a sentence for the vendor: what was wrong and where.
        device_id: the device the rejected part names, when known.
    """

    def __init__(self, reason: DecodeReason, detail: str, device_id: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.device_id = device_id
        super().__init__(f"{reason}: {detail}")


class RawMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message as the transport received it, before decoding.

    Attributes:
        topic: the MQTT topic (or the HTTP uplink path).
        payload: the bytes the device sent.
        vendor: the vendor segment of the topic.
        device_id: the device segment of the topic (for a gateway, the gateway's own id).
        received_ms: when the hub received it, epoch ms UTC (used when the payload has no time).
    """

    topic: str
    payload: bytes
    vendor: str
    device_id: str
    received_ms: int


class Sink(Protocol):
    """Where a codec writes what it decodes: one call per reading, a rejection per bad part.

    Codecs never intern ids or convert to arrays themselves: the sink (`ingest.columns.ColumnBuilder`)
    owns that, so decoding goes straight into columns with no per-reading objects.
    """

    def add(
        self, device_id: str, metric: str, ts_ms: int | None, value: float, unit: str | None
    ) -> None:
        """Add one reading. ``ts_ms`` None means "use the receive time"; ``unit`` None means canonical.

        Raises:
            DecodeError: when the device, metric or unit is unknown (the caller may catch it to reject
                just that reading and keep the rest of the message).
        """
        ...

    def reject(self, error: DecodeError) -> None:
        """Record that one part of the message was rejected while the rest is kept."""
        ...


class Codec(Protocol):
    """A vendor payload format. ``decode`` is total: it returns or raises `DecodeError`, nothing else."""

    name: str

    def decode(self, raw: RawMessage, sink: Sink) -> None:
        """Decode ``raw`` into ``sink``.

        Raises:
            DecodeError: the whole message is rejected (the sink is rolled back by the caller).
        """
        ...
