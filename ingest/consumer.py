"""The receive-and-decode stage: raw MQTT messages become columns, with in-flight acknowledgements tracked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from devices.intern import Interner
from devices.partitions import Slot, owned_device_ids
from devices.registry import Registry
from ingest import codecs, topics
from ingest.batch import ReadingBatch
from ingest.codecs.base import Codec, DecodeError, DecodeReason, RawMessage
from ingest.columns import ColumnBuilder, Rejection

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(slots=True)
class IngestCounters:
    """Running totals, read by health and metrics endpoints."""

    messages: int = 0
    readings: int = 0
    rejected_messages: int = 0
    dead_letters: int = 0  # whole messages and parts of messages
    status_messages: int = 0
    codec_bugs: int = 0
    foreign: int = 0  # messages of devices another ingest worker owns: acknowledged, not decoded


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device said it is online or offline on its status topic."""

    vendor: str
    device_id: str
    online: bool
    ts_ms: int


@dataclass(slots=True)
class Taken:
    """What the consumer decoded since the last take: readings, rejections and the acks they owe."""

    batch: ReadingBatch
    rejections: list[Rejection]
    acks: list[tuple[int, int]]
    statuses: list[StatusChange] = field(default_factory=list)
    messages: int = 0


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How messages are decoded, beyond the registry: one value the hub builds from its settings.

    Picklable, so that decode worker processes (`ingest.decodepool`) decode exactly as the hub's
    own consumer does, and the decode preview's sandbox copies it rather than each of its fields.
    """

    site_zone: str = "Asia/Shanghai"  # the zone of vendors' zone-less local times
    max_payload: int = 256 * 1024  # bytes; a larger payload is rejected as OVERSIZED
    skew_flag_ms: int = 5 * 60_000  # a reading this far ahead of the receive time: CLOCK_SKEW
    max_future_ms: int = 24 * 3600_000  # this far ahead: rejected as FUTURE_TIMESTAMP
    # One ingest worker of several (devices/partitions.py): other slots' devices are left alone.
    slot: Slot | None = None


def oversized(size: int, limit: int) -> DecodeError | None:
    """The rejection of a payload of ``size`` bytes when it is over ``limit``, else None.

    A function of its own so that the decode preview, which may not even read a huge body, rejects it
    with the very sentence live ingestion writes into the dead letter.
    """
    if size <= limit:
        return None
    msg = f"payload of {size} bytes is over the {limit}-byte limit"
    return DecodeError(DecodeReason.OVERSIZED, msg)


class Consumer:
    """Decodes each message on arrival into a shared `ColumnBuilder`; `take` hands everything over at once.

    Decoding happens on the transport's network thread (cheap per message, and one hand-over fewer);
    everything after that works on whole batches.
    """

    def __init__(
        self,
        registry: Registry,
        options: DecodeOptions | None = None,
        *,
        clock: Clock = time.time,
        interner: Interner | None = None,
    ) -> None:
        """Decode messages for devices in ``registry``, as ``options`` say (default: `DecodeOptions`).

        ``interner`` replaces the registry's own for device lookups (see `sandbox`); profiles and
        metrics still come from ``registry``. With a slot of several ingest workers, messages of
        devices other slots own are acknowledged without being decoded (devices/partitions.py);
        unregistered devices and bad topics are left to slot 0, which dead-letters them.
        """
        options = options if options is not None else DecodeOptions()
        self.registry = registry
        self.options = options
        self.clock = clock
        self._interner = interner if interner is not None else registry.interner
        self._lock = threading.Lock()
        self._builder = ColumnBuilder(
            self._interner,
            registry.profile,
            skew_flag_ms=options.skew_flag_ms,
            max_future_ms=options.max_future_ms,
        )
        self._codecs: dict[str, Codec] = {}
        self._codec_version = -1
        self._acks: list[tuple[int, int]] = []
        self._statuses: list[StatusChange] = []
        self._messages = 0
        self.counters = IngestCounters()
        slot = options.slot
        self._slot = slot if slot is not None and not slot.alone else None
        self._owned: frozenset[str] = frozenset()
        self._owned_version = -1

    def sandbox(self, interner: Interner, *, clock: Clock | None = None) -> Consumer:
        """A new consumer with this one's zone and limits that looks devices up in ``interner``.

        What the decode preview runs: the same topic parsing, size limit, codec choice, codec and
        column checks as live ingestion, over an interner that may hold a device the registry does not
        know yet. It shares nothing mutable with this consumer (its own builder, codecs and counters),
        and has no slot: a preview decodes whichever worker would own the device.
        """
        return Consumer(
            self.registry,
            replace(self.options, slot=None),
            clock=clock or self.clock,
            interner=interner,
        )

    @property
    def max_payload(self) -> int:
        """The largest payload accepted, in bytes."""
        return self.options.max_payload

    @property
    def pending(self) -> int:
        """Messages decoded but not yet taken (and so not yet acknowledged)."""
        return len(self._acks)

    def handle(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Decode one message (called on the transport's thread). Never raises."""
        self.handle_at(topic, payload, mid, qos, int(self.clock() * 1000))

    def handle_at(self, topic: str, payload: bytes, mid: int, qos: int, now_ms: int) -> None:
        """Decode one message received at ``now_ms`` (epoch ms); a decode worker's way in."""
        parts = topics.parse(topic)
        if self._slot is not None and not self._mine(parts):
            with self._lock:  # acknowledged with this flush's others, in arrival order
                self._acks.append((mid, qos))
                self.counters.foreign += 1
            return
        with self._lock:
            self._messages += 1
            self._acks.append((mid, qos))
            if parts is None:
                raw = RawMessage(
                    topic=topic, payload=payload, vendor="", device_id="", received_ms=now_ms
                )
                msg = f"topic {topic!r} is not sensors/{{vendor}}/{{device}}/up"
                self._reject(raw, DecodeError(DecodeReason.BAD_TOPIC, msg))
                return
            raw = RawMessage(
                topic=topic,
                payload=payload,
                vendor=parts.vendor,
                device_id=parts.device_id,
                received_ms=now_ms,
            )
            if parts.kind is topics.TopicKind.STATUS:
                self._status(raw)
                return
            self._decode(raw)

    def _mine(self, parts: topics.TopicParts | None) -> bool:
        """Whether this worker slot handles a message with this topic (see `__init__`)."""
        slot = self._slot
        assert slot is not None  # noqa: S101 - only called with a slot
        if parts is None:
            return slot.takes_strays
        if self._owned_version != self.registry.version:
            # Registry changes are rare (a device registered, moved or retired): one narrow query.
            self._owned_version = self.registry.version
            self._owned = owned_device_ids(self.registry, slot)
        if parts.device_id in self._owned:
            return True
        return slot.takes_strays and parts.device_id not in self._interner.devices

    def _decode(self, raw: RawMessage) -> None:
        builder = self._builder
        builder.begin(raw)
        try:
            self._check_size(raw)
            self._codec_for(raw).decode(raw, builder)
        except DecodeError as exc:
            builder.rollback(exc)
            self.counters.rejected_messages += 1
            return
        except Exception:  # a codec bug must not stop ingestion: count it, log it, dead-letter it
            logger.exception("codec failed on %s", raw.topic)
            self.counters.codec_bugs += 1
            builder.rollback(
                DecodeError(DecodeReason.WRONG_TYPE, "the hub could not decode this payload")
            )
            self.counters.rejected_messages += 1
            return
        self.counters.readings += builder.commit()

    def _check_size(self, raw: RawMessage) -> None:
        error = oversized(len(raw.payload), self.options.max_payload)
        if error is not None:
            raise error

    def _reject(self, raw: RawMessage, error: DecodeError) -> None:
        self._builder.begin(raw)
        self._builder.rollback(error)
        self.counters.rejected_messages += 1

    def _codec_for(self, raw: RawMessage) -> Codec:
        entry = self._interner.devices.get(raw.device_id)
        if entry is None:
            msg = f"device {raw.device_id!r} is not registered"
            raise DecodeError(DecodeReason.UNKNOWN_DEVICE, msg, raw.device_id)
        if entry.vendor != raw.vendor:
            msg = f"device {raw.device_id!r} is not registered to vendor {raw.vendor!r}"
            raise DecodeError(DecodeReason.WRONG_VENDOR, msg, raw.device_id)
        if self._codec_version != self.registry.version:
            self._codecs.clear()
            self._builder.forget_profiles()
            self._codec_version = self.registry.version
        codec = self._codecs.get(entry.profile)
        if codec is None:
            profile = self.registry.profile(entry.profile)
            codec = codecs.build(profile.codec, site_zone=self.options.site_zone)
            self._codecs[entry.profile] = codec
        return codec

    def _status(self, raw: RawMessage) -> None:
        self.counters.status_messages += 1
        text = raw.payload.strip().lower()
        if text in (b"online", b"1", b"true", b'{"state":"online"}'):
            online = True
        elif text in (b"offline", b"0", b"false", b'{"state":"offline"}', b""):
            online = False
        else:
            self._reject(
                raw, DecodeError(DecodeReason.WRONG_TYPE, "status must be 'online' or 'offline'")
            )
            return
        self._statuses.append(StatusChange(raw.vendor, raw.device_id, online, raw.received_ms))

    def take(self) -> Taken:
        """Everything decoded since the last call, and the acknowledgements it owes."""
        with self._lock:
            detached = self._builder.detach()
            acks, self._acks = self._acks, []
            statuses, self._statuses = self._statuses, []
            messages, self._messages = self._messages, 0
        # Assembled outside the lock: the transport thread goes on decoding meanwhile.
        batch, rejections = detached.assemble()
        self.counters.messages += messages
        self.counters.dead_letters += len(rejections)
        return Taken(batch, rejections, acks, statuses, messages)
