"""HTTP uplinks: a payload POSTed by a device is decoded and stored exactly as if it came over MQTT.

The payload is decoded by the live consumer's own code (`Consumer.sandbox`: the same topic checks,
size limit, codec of the device's profile, unit conversion and time checks), as one message on the
device's MQTT topic, so a rejection carries the very reason and sentence MQTT ingestion would write.
What it decoded then joins the pipeline's next flush (`IngestPipeline.submit`): range flags, live
state, rules and the situation feed, the store (whose (device, metric, ts) key makes a repeated POST
store its readings once), dead letters. The sender is answered only once all that is durable: the
HTTP answer plays the part of the MQTT acknowledgement, so a client that retries until it gets one
has at-least-once delivery stored exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import msgspec

from ingest import topics
from ingest.batch import ReadingBatch
from ingest.codecs.base import RawMessage
from ingest.columns import Rejection
from ingest.consumer import Taken, oversized
from ingest.errors import IngestError
from ingest.pipeline import IngestPipeline

PATH = "/api/v1/uplink/{vendor}/{device_id}"


class UplinkTimeoutError(IngestError):
    """The pipeline did not make a submitted payload durable in time (the sender should retry)."""


@dataclass(slots=True)
class UplinkCounters:
    """What the HTTP uplink has done, for status and metrics."""

    requests: int = 0
    readings: int = 0
    rejected: int = 0  # requests of which nothing was stored
    timeouts: int = 0


@dataclass(frozen=True, slots=True)
class UplinkResult:
    """What became of one POSTed payload, once durable."""

    readings: int
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """Nothing of it was stored, and the hub said why (a 422 for the sender)."""
        return self.readings == 0 and bool(self.rejections)


class HttpUplink:
    """Decodes POSTed payloads with the live consumer's code and hands them to the pipeline."""

    def __init__(self, pipeline: IngestPipeline, *, timeout_s: float = 10.0) -> None:
        """Post into ``pipeline``; a payload not durable within ``timeout_s`` answers 503."""
        self._pipeline = pipeline
        # A consumer of its own (builder, codec cache): what it decodes is this payload alone.
        self._consumer = pipeline.consumer.sandbox(pipeline.registry.interner)
        self._lock = threading.Lock()  # decode-then-take must not interleave two requests
        self._timeout_s = timeout_s
        self.counters = UplinkCounters()

    @property
    def max_payload(self) -> int:
        """The largest payload accepted, in bytes (the MQTT limit)."""
        return self._consumer.max_payload

    def decode(self, vendor: str, device_id: str, payload: bytes, *, size: int) -> Taken:
        """Decode one payload as a message on the device's topic (a worker thread may call this).

        ``payload`` may be cut at ``max_payload + 1`` bytes; ``size`` is how many were sent.
        """
        path = PATH.format(vendor=vendor, device_id=device_id)
        too_big = oversized(size, self._consumer.max_payload)
        if too_big is not None:
            raw = RawMessage(
                topic=path,
                payload=payload,
                vendor=vendor,
                device_id=device_id,
                received_ms=time.time_ns() // 1_000_000,
            )
            return Taken(ReadingBatch.empty(), [Rejection(raw, too_big)], [], [], 1)
        with self._lock:
            self._consumer.handle(topics.up(vendor, device_id), payload, 0, 0)
            taken = self._consumer.take()
        # Dead letters name the route it came by, not an MQTT topic it never used.
        taken.rejections = [
            Rejection(msgspec.structs.replace(r.raw, topic=path), r.error) for r in taken.rejections
        ]
        taken.acks = []  # nothing to acknowledge to the broker
        return taken

    async def post(self, vendor: str, device_id: str, payload: bytes, *, size: int) -> UplinkResult:
        """Decode, store through the pipeline, and return once durable.

        Raises:
            UplinkTimeoutError: the pipeline did not store it within the timeout (it may still).
        """
        self.counters.requests += 1
        taken = await asyncio.to_thread(self.decode, vendor, device_id, payload, size=size)
        done = self._pipeline.submit(taken)
        try:
            await asyncio.wait_for(asyncio.shield(done), self._timeout_s)
        except TimeoutError as exc:
            self.counters.timeouts += 1
            msg = f"the readings were not stored within {self._timeout_s:g} s: retry"
            raise UplinkTimeoutError(msg) from exc
        result = UplinkResult(len(taken.batch), taken.rejections)
        self.counters.readings += result.readings
        self.counters.rejected += result.refused
        return result
