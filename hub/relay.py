"""The live-state relay: ingest workers publish what changed, api nodes apply it (issue 12, roles).

An api node runs no ingest pipeline, yet its live state (what REST "latest" and the feed's snapshots
read) and its situation feed must move with the city. Ingest workers therefore publish, per flush:

* ``hub/state/readings/w{k}``: the batch's newest reading per (device, metric) as one columnar frame
  (msgpack of the raw little-endian numpy columns: a 5,000-reading flush of 1,000 series is one
  ~23 kB message, not 5,000), QoS 0. A lost frame is superseded by the next one of those series,
  and an api node starting (or reconnecting) reads the store's latest values anyway.
* ``hub/state/status/w{k}``: devices' own online/offline messages of the flush, QoS 1 (rare, and a
  missed one would leave a device's status wrong until its next).

The video node (it alone runs the camera patrol) publishes its cameras' standing the same way:

* ``hub/state/cameras/v{k}``: the cameras whose state (``ok``, ``fault``, ``lost``...) or confirmed
  findings changed, as one msgpack array of ``[id, state, [finding, ...], since_ms]`` rows
  (`CameraRow`; ~40 bytes a camera), QoS 1: sent at most every ``CameraPublisher.EVERY_S``, the
  latest row per camera (a power cut taking 500 cameras down is one frame). The rest of a camera
  (name, place, area) the api node has in the shared camera registry, and its full status (measures,
  snapshot) in the shared status table, which the video node wrote before it published; the api
  node reads both for the frame's cameras (hub/camera_relay.py) and queues a camera delta for its
  feed, as the video node's own fleet does for an ``all`` hub.

Alert changes need no frame of their own: every process that commits one publishes it on
``hub/alerts/{level}/{id}`` (alerts/notify.py), and the api node rebuilds the `AlertChange` from that
JSON. Its own changes (a person acknowledging on this node) reach its feed in-process at once and
come back from the broker a moment later: `StateRelay` drops that echo by (alert id, seq).

The api side (`StateRelay`) hands each frame to the same hooks the one-process hub gives a batch
(hub/app.py ``_to_state``/``_to_feed``/``_status_to_state``/``_status_to_feed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec
import numpy as np

from alerts.events import Level
from alerts.lifecycle import Action, Alert, AlertChange, AuditEntry, State
from ingest.batch import ReadingBatch
from ingest.consumer import StatusChange

logger = logging.getLogger(__name__)

STATE_PREFIX = "hub/state"
STATE_FILTER = f"{STATE_PREFIX}/#"

BatchHook = Callable[[ReadingBatch], Awaitable[None]]
StatusHook = Callable[[Sequence[StatusChange]], Awaitable[None]]

# Little-endian on the wire whatever the host, so a frame reads the same on any api node.
_WIRE: dict[str, np.dtype[Any]] = {
    "device": np.dtype("<i4"),
    "metric": np.dtype("<i2"),
    "ts": np.dtype("<i8"),
    "value": np.dtype("<f8"),
    "quality": np.dtype("u1"),
}


def readings_topic(worker: int) -> str:
    """``hub/state/readings/w{worker}``."""
    return f"{STATE_PREFIX}/readings/w{worker}"


def status_topic(worker: int) -> str:
    """``hub/state/status/w{worker}``."""
    return f"{STATE_PREFIX}/status/w{worker}"


def rules_topic(worker: int) -> str:
    """``hub/state/rules/w{worker}``: the worker's rule evaluation errors by rule id (retained)."""
    return f"{STATE_PREFIX}/rules/w{worker}"


def cameras_topic(node: int) -> str:
    """``hub/state/cameras/v{node}``."""
    return f"{STATE_PREFIX}/cameras/v{node}"


class ReadingsFrame(msgspec.Struct, array_like=True, frozen=True):
    """One flush's newest reading per series, column by column (raw little-endian arrays)."""

    device: bytes
    metric: bytes
    ts: bytes
    value: bytes
    quality: bytes


class StatusRow(msgspec.Struct, array_like=True, frozen=True):
    """One device's online/offline message."""

    vendor: str
    device: str
    online: bool
    ts_ms: int


class CameraRow(msgspec.Struct, array_like=True, frozen=True):
    """One camera's standing: its state, its confirmed findings (sorted) and since when."""

    id: str
    state: str
    findings: list[str]
    since_ms: int | None


CameraHook = Callable[[Sequence[CameraRow]], Awaitable[None]]

_readings_decoder = msgspec.msgpack.Decoder(ReadingsFrame)
_status_decoder = msgspec.msgpack.Decoder(list[StatusRow])
_cameras_decoder = msgspec.msgpack.Decoder(list[CameraRow])
_encoder = msgspec.msgpack.Encoder()


def newest_per_series(batch: ReadingBatch) -> ReadingBatch:
    """The batch's newest reading of each (device, metric), as LiveState would keep it."""
    if len(batch) == 0:
        return batch
    key = batch.device.astype(np.int64) << 16 | batch.metric.astype(np.int64) & 0xFFFF
    order = np.lexsort((batch.ts, key))
    k = key[order]
    last = np.ones(len(order), dtype=np.bool_)
    last[:-1] = k[1:] != k[:-1]
    rows = order[last]
    return ReadingBatch(
        device=batch.device[rows],
        metric=batch.metric[rows],
        ts=batch.ts[rows],
        value=batch.value[rows],
        quality=batch.quality[rows],
    )


def encode_readings(batch: ReadingBatch) -> bytes:
    """The frame of ``batch`` (already coalesced, or not: it is sent as given)."""
    cols = {
        name: getattr(batch, name).astype(dt, copy=False).tobytes() for name, dt in _WIRE.items()
    }
    return _encoder.encode(ReadingsFrame(**cols))


def decode_readings(payload: bytes) -> ReadingBatch:
    """A frame back into a `ReadingBatch` (raises `msgspec.DecodeError`/`ValueError` when damaged)."""
    frame = _readings_decoder.decode(payload)
    cols: dict[str, Any] = {
        name: np.frombuffer(getattr(frame, name), dtype=dt).astype(dt.newbyteorder("="))
        for name, dt in _WIRE.items()
    }
    return ReadingBatch(**cols)


def encode_status(statuses: Sequence[StatusChange]) -> bytes:
    """Devices' status messages as one frame."""
    return _encoder.encode([StatusRow(s.vendor, s.device_id, s.online, s.ts_ms) for s in statuses])


def decode_status(payload: bytes) -> list[StatusChange]:
    """A status frame back into `StatusChange` records."""
    return [
        StatusChange(vendor=r.vendor, device_id=r.device, online=r.online, ts_ms=r.ts_ms)
        for r in _status_decoder.decode(payload)
    ]


def encode_cameras(rows: Sequence[CameraRow]) -> bytes:
    """Cameras' standing as one frame."""
    return _encoder.encode(list(rows))


def decode_cameras(payload: bytes) -> list[CameraRow]:
    """A camera frame back into its rows."""
    return _cameras_decoder.decode(payload)


def _ms(iso: str | None) -> int | None:
    if iso is None:
        return None
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def change_from_wire(body: dict[str, Any], vendor_of: Callable[[str], str | None]) -> AlertChange:
    """The `AlertChange` an ``hub/alerts/...`` message carries (alerts/wire.py ``change_body``).

    The wire leaves out what is the hub's business: the vendor (looked up in this node's registry,
    as the alert store does when it raises an alert), when the alert entered its state and whether
    it was escalated (taken as the change's time and unknown: the feed shows neither).
    """
    a = body["alert"]
    at_ms = _ms(body["at"]) or 0
    first_ms = _ms(a["first_at"]) or at_ms
    device = a["device"]
    alert = Alert(
        id=int(a["id"]),
        rule=a["rule"],
        source=a["source"],
        kind=a["kind"],
        level=Level.parse(a["level"]),
        state=State(a["state"]),
        firing=a["condition"] == "firing",
        summary=a["summary"],
        first_ms=first_ms,
        last_ms=_ms(a["last_at"]) or first_ms,
        updated_ms=at_ms,
        seq=int(body["seq"]),
        state_ms=at_ms,
        device=device,
        area=a["area"],
        vendor=vendor_of(device) if device else None,
        metric=a["metric"],
        value=a["value"],
        cleared_ms=_ms(a["cleared_at"]),
        acknowledged_ms=_ms(a["acknowledged_at"]),
        closed_ms=_ms(a["closed_at"]),
        assignee=a["assignee"],
        unit=a["unit"],
    )
    entry = AuditEntry(
        alert_id=alert.id,
        seq=alert.seq,
        at_ms=at_ms,
        actor=body["actor"],
        action=Action(body["action"]),
        from_state=State(body["from_state"]) if body["from_state"] is not None else None,
        to_state=State(body["to_state"]),
        from_level=Level.parse(body["from_level"]) if body["from_level"] is not None else None,
        to_level=Level.parse(body["to_level"]),
        note=body["note"] or "",
        target=body["target"],
    )
    return AlertChange(alert=alert, entry=entry)


class LiveSink(Protocol):
    """Where a process's live changes go: its screens (``hub.feed.SituationFeed``) or the relay."""

    async def on_batch(self, batch: ReadingBatch) -> None:
        """Take a flush's readings."""
        ...

    async def on_status(self, statuses: Sequence[StatusChange]) -> None:
        """Take devices' status messages."""
        ...


class Publisher(Protocol):
    """What the relay publishes with (``ingest.mqtt.MqttTransport``)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Queue ``payload`` for ``topic`` without blocking."""
        ...


@dataclass(slots=True)
class RelayOutStats:
    """What an ingest worker's relay sent."""

    frames: int = 0
    readings_in: int = 0
    series_out: int = 0
    status_frames: int = 0


class StatePublisher:
    """An ingest worker's live changes, published for the api nodes (its pipeline hooks)."""

    def __init__(
        self,
        publisher: Callable[[], Publisher],
        worker: int,
        rule_failures: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Publish through ``publisher()`` (the pipeline's transport, made after this) as slot ``worker``.

        ``rule_failures`` (the worker's engine's error counts by rule) is published, retained, when
        it changes, so that api nodes show them in the rules' views.
        """
        self._publisher = publisher
        self.readings_topic = readings_topic(worker)
        self.status_topic = status_topic(worker)
        self.rules_topic = rules_topic(worker)
        self._rule_failures = rule_failures
        self._failures_sent: dict[str, int] | None = None  # None: not yet (a retained one is stale)
        self.stats = RelayOutStats()

    async def on_batch(self, batch: ReadingBatch) -> None:
        """Publish a flush's newest value per series (an ``on_received`` hook, once per flush)."""
        if len(batch) == 0:
            return
        latest = newest_per_series(batch)
        self._publisher().publish(self.readings_topic, encode_readings(latest), 0)
        self.stats.frames += 1
        self.stats.readings_in += len(batch)
        self.stats.series_out += len(latest)
        if self._rule_failures is not None:
            # Errors only happen while evaluating: checked once a flush, sent only when they change.
            failures = self._rule_failures()
            if failures != self._failures_sent:
                self._failures_sent = dict(failures)
                body = msgspec.json.encode(self._failures_sent)
                self._publisher().publish(self.rules_topic, body, 1, retain=True)

    async def on_status(self, statuses: Sequence[StatusChange]) -> None:
        """Publish a flush's device status messages (an ``on_status`` hook)."""
        if not statuses:
            return
        self._publisher().publish(self.status_topic, encode_status(statuses), 1)
        self.stats.status_frames += 1


class CameraPublisher:
    """The video node's camera standing, published for the api nodes (a fleet listener).

    `note` runs on whatever thread changed the camera (the patrol's writer, a request's) and
    only notes the row; `run` publishes what is noted, the latest row per camera, as one frame at
    most every `EVERY_S`: a screen sees a camera fall within a fraction of a second, and a district
    going dark at once costs one message.
    """

    EVERY_S = 0.2

    def __init__(self, publisher: Callable[[], Publisher], node: int) -> None:
        """Publish through ``publisher()`` (the node's MQTT link, made after this) as video node ``node``."""
        self._publisher = publisher
        self.topic = cameras_topic(node)
        self._pending: dict[str, CameraRow] = {}
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames = 0
        self.cameras = 0

    def note(self, row: CameraRow) -> None:
        """Queue a camera's new standing (any thread)."""
        with self._lock:
            self._pending[row.id] = row
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Publish noted rows until cancelled (what is noted by then still goes out)."""
        self._loop = asyncio.get_running_loop()
        self._wake.set()  # what was noted before the loop was known (cameras changed at start)
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._flush()
                await asyncio.sleep(self.EVERY_S)  # coalesce a burst into the next frame
        finally:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            self._publisher().publish(self.topic, encode_cameras(rows), 1)
            self.frames += 1
            self.cameras += len(rows)


@dataclass(slots=True)
class RelayInStats:
    """What an api node's relay took in."""

    reading_frames: int = 0
    readings: int = 0
    status_frames: int = 0
    camera_frames: int = 0
    alert_changes: int = 0
    echoes: int = 0  # this node's own alert changes coming back from the broker
    resyncs: int = 0  # live state read again from the store after the broker came back
    dropped: int = 0  # reading frames dropped while the loop was behind
    bad: int = 0  # frames that did not decode


class Acker(Protocol):
    """Acknowledges a delivered message and counts its connections (``ingest.mqtt.MqttTransport``)."""

    connects: int

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge message ``mid``."""
        ...


class StateRelay:
    """An api node's intake of the ingest workers' state frames and every node's alert changes.

    An ingest worker uses one for alert changes only (``subscriptions(state=False)``): what people
    did on api nodes reaches its notification router.

    `handle` runs on the MQTT network thread and only queues (and acknowledges: the node's session is
    clean, nothing would be redelivered to it anyway); `run` applies the queue on the event loop, in
    arrival order, through the same hooks a one-process hub gives its pipeline's batches.
    """

    SEEN_MAX = 50_000  # (alert id, seq) pairs kept to spot the echo of this node's own changes
    QUEUE_MAX = 10_000  # reading frames queued at most (the newer ones supersede the dropped)

    def __init__(
        self,
        *,
        on_batch: Sequence[BatchHook],
        on_status: Sequence[StatusHook],
        on_alert: Callable[[AlertChange], None],
        vendor_of: Callable[[str], str | None],
        alerts_prefix: str = "hub/alerts",
        on_resync: Callable[[], Awaitable[None]] | None = None,
        on_cameras: Sequence[CameraHook] = (),
        on_rules: Callable[[str, dict[str, int]], None] | None = None,
    ) -> None:
        """Hand frames to ``on_batch``/``on_status``/``on_cameras``, remote alert changes to ``on_alert``.

        ``on_resync`` is awaited when the session connects again after a loss: the frames sent
        meanwhile are gone (the session is clean; readings frames are QoS 0), so the node reads
        the latest values from the store again.
        """
        self._on_resync = on_resync
        self._connects_seen = 0
        self.alerts_prefix = alerts_prefix.rstrip("/") + "/"
        self._on_batch = list(on_batch)
        self._on_status = list(on_status)
        self._on_cameras = list(on_cameras)
        self._on_rules = on_rules
        self._on_alert = on_alert
        self._vendor_of = vendor_of
        self._queue: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acker: Acker | None = None
        self.stats = RelayInStats()

    def subscriptions(self, *, state: bool = True) -> list[tuple[str, int]]:
        """The topic filters (and QoS) to take: alert changes, and (an api node) the state frames."""
        alerts = [(self.alerts_prefix + "#", 1)]
        return [*alerts, (STATE_FILTER, 1)] if state else alerts

    def attach(self, acker: Acker) -> None:
        """Acknowledge deliveries through ``acker`` (the transport whose handler `handle` is)."""
        self._acker = acker

    # -- the network thread ----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Queue a delivered message (``ingest.mqtt.MessageHandler``)."""
        with self._lock:
            if len(self._queue) >= self.QUEUE_MAX and topic.startswith(STATE_PREFIX + "/readings"):
                self.stats.dropped += 1
            else:
                self._queue.append((topic, payload))
        if self._acker is not None:
            self._acker.ack(mid, qos)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def local_change(self, change: AlertChange) -> None:
        """Note a change this node committed (an ``AlertFeed`` subscriber), so its echo is dropped."""
        with self._lock:
            self._remember((change.alert.id, change.entry.seq))

    def _remember(self, key: tuple[int, int]) -> bool:
        """Whether ``key`` was new (and remember it); under ``_lock``."""
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    # -- the event loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Apply queued messages until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                items = list(self._queue)
                self._queue.clear()
                self._wake.clear()
            for topic, payload in items:
                try:
                    await self._apply(topic, payload)
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError) as exc:
                    self.stats.bad += 1
                    logger.warning("relay message on %s did not decode: %s", topic, exc)
            await self._resync_if_reconnected()
            if not items:
                # Woken by a message, or each second to notice a reconnection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _resync_if_reconnected(self) -> None:
        connects = self._acker.connects if self._acker is not None else 0
        if connects == self._connects_seen:
            return
        again = self._connects_seen > 0
        self._connects_seen = connects
        if again and self._on_resync is not None:
            self.stats.resyncs += 1
            try:
                await self._on_resync()
            except Exception:  # a store outage now must not stop the relay: frames keep coming
                logger.exception("reading the live state again after a reconnection failed")

    async def _apply(self, topic: str, payload: bytes) -> None:
        if topic.startswith(STATE_PREFIX + "/readings/"):
            batch = decode_readings(payload)
            self.stats.reading_frames += 1
            self.stats.readings += len(batch)
            for hook in self._on_batch:
                await hook(batch)
        elif topic.startswith(STATE_PREFIX + "/status/"):
            statuses = decode_status(payload)
            self.stats.status_frames += 1
            for status_hook in self._on_status:
                await status_hook(statuses)
        elif topic.startswith(STATE_PREFIX + "/rules/"):
            failures = msgspec.json.decode(payload, type=dict[str, int])
            if self._on_rules is not None:
                self._on_rules(topic.rpartition("/")[2], failures)
        elif topic.startswith(STATE_PREFIX + "/cameras/"):
            rows = decode_cameras(payload)
            self.stats.camera_frames += 1
            for camera_hook in self._on_cameras:
                await camera_hook(rows)
        elif topic.startswith(self.alerts_prefix):
            change = change_from_wire(msgspec.json.decode(payload), self._vendor_of)
            with self._lock:
                new = self._remember((change.alert.id, change.entry.seq))
            if not new:
                self.stats.echoes += 1
                return
            self.stats.alert_changes += 1
            self._on_alert(change)

    def status(self) -> dict[str, int]:
        """The relay's counters (for /api/v1/status)."""
        return {
            "reading_frames": self.stats.reading_frames,
            "readings": self.stats.readings,
            "status_frames": self.stats.status_frames,
            "camera_frames": self.stats.camera_frames,
            "alert_changes": self.stats.alert_changes,
            "echoes": self.stats.echoes,
            "dropped": self.stats.dropped,
            "resyncs": self.stats.resyncs,
            "bad": self.stats.bad,
        }
