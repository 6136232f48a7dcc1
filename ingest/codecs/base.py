"""The codec contract: raw message in, columns out, or a `DecodeError` that a vendor can read."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray

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
    RATE_LIMITED = "rate_limited"  # far above its profile's rate (ingest.ratelimit)
    # Binary telemetry frames (ingest.sl651): a frame check that fails, a frame cut short, a layout
    # that is not the standard's.
    BAD_CHECKSUM = "bad_checksum"
    TRUNCATED = "truncated"
    BAD_FRAME = "bad_frame"


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

    def __reduce__(self) -> tuple[type[DecodeError], tuple[DecodeReason, str, str | None]]:
        # Rejections cross process boundaries (ingest/decodepool.py); Exception's own pickling
        # would call the constructor with the one formatted message only.
        return (type(self), (self.reason, self.detail, self.device_id))


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


Fields = tuple[tuple[str, str | None], ...]
"""``(metric, unit as sent)`` of each field of a batch given to `Sink.add_columns`."""


class Sink(Protocol):
    """Where a codec writes what it decodes: one call per reading, a rejection per bad part.

    Codecs never intern ids or check readings themselves: the sink (`ingest.columns.ColumnBuilder`)
    owns that, so decoding goes straight into columns with no per-reading objects. A codec that has a
    batch of regular records may offer them as whole columns first (`add_columns`), and add them one
    by one when the sink declines.
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

    def add_columns(
        self,
        device: Sequence[str],
        ts: NDArray[np.int64] | None,
        fields: Fields,
        value: NDArray[np.float64],
        present: NDArray[np.bool_] | None = None,
        *,
        latest: int | None = None,
    ) -> bool:
        """Add the readings of N records at once, exactly as `add` would add them one by one, or nothing.

        Args:
            device: each record's device id (N), as the payload gives it: anything that is not a
                registered id (a number, an empty string, null...) makes the call add nothing.
            ts: each record's time in epoch ms (N); None means "use the receive time" for every one.
            fields: ``(metric, unit as sent)`` of each of the F fields; unit None means canonical.
            value: ``value[i, j]`` is record i's value of field j, (N, F).
            present: which values the records hold (N, F); None: all of them. Absent ones are skipped.
            latest: the largest of ``ts``, when the caller knows it (it saves a reduction per call).

        The sink may keep the arrays until it hands its readings over: the caller gives them away.

        Returns:
            True when every present value was added, record by record in field order. False, having
            added nothing, when `add` would have refused any of them: the caller then adds them one by
            one with `add`, so that each refusal is rejected exactly as usual.
        """
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
