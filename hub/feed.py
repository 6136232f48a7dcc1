"""The situation feed behind ``/ws/situation``: snapshot, then coalesced deltas with sequence numbers.

Data comes in from the pipeline (``on_batch``, ``on_status``, awaited by it and returning at once),
from the alert feed (``on_alert``, any thread) and from the camera source (``on_camera``, any
thread): each only appends to a pending list. Incidents, units and warnings come from the response
service through `hub.feed_response.FeedResponse` (``use_response``), read in a worker thread. One task, `SituationFeed.run`, turns what is pending
into frames at most every ``interval_ms`` (sooner when the stream was quiet): readings coalesced to
the latest per series, then, for each filter group (a `Stream`), one mask over the device column,
one encoding, and a reference to the shared text queued for each of its screens (`FeedClient`).

A stream keeps its last ``replay_frames`` frames, so a screen reconnecting with ``since`` gets what
it missed, and a cached snapshot, so a room of screens connecting at once costs one snapshot. The
wire protocol is in notes/feed-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alerts.events import Level
from alerts.lifecycle import AlertChange
from alerts.wire import change_body
from devices.registry import Registry
from hub.feed_clients import FeedClient, Frame
from hub.feed_devices import FeedDevices
from hub.feed_frames import DeltaFrame, Filter, Readings, SnapshotFrame
from hub.feed_response import Changes, FeedResponse
from hub.feed_snapshot import Capture, capture, render
from hub.feed_sources import ActiveAlerts, CameraSource, NoCameras
from hub.feed_streams import Stream, Tick
from hub.settings import FeedSettings
from hub.state import LiveState
from ingest.batch import ReadingBatch
from ingest.consumer import StatusChange

__all__ = ["CameraSource", "NoCameras", "SituationFeed"]

logger = logging.getLogger(__name__)

MERGE_AFTER = 8
"""Deltas a screen may be behind and still get them one by one (shared text, no work)."""

SNAPSHOT_REUSE_FRAMES = 8
"""A cached snapshot serves new screens while its stream moved on by at most this many frames."""

IDLE_STREAM_S = 60.0
"""A stream without screens is kept this long, for screens reconnecting with ``since``."""

MAX_STREAMS = 200
"""Beyond this many streams, those without screens are dropped at once."""


@dataclass(slots=True)
class _Pending:
    """What arrived since the last frame."""

    readings: list[Readings] = field(default_factory=list)
    status: list[tuple[int, bool, int]] = field(default_factory=list)
    alerts: list[AlertChange] = field(default_factory=list)
    cameras: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.readings or self.status or self.alerts or self.cameras)


@dataclass(slots=True)
class FeedStats:
    """What the feed has done, for ``GET /api/v1/feed/status``."""

    frames: int = 0
    snapshots: int = 0
    snapshot_ms: float = 0.0
    tick_ms: float = 0.0
    closed_slow: int = 0
    errors: int = 0


class SituationFeed:
    """The hub's live picture, streamed: intake hooks, the frame task, streams and their screens."""

    def __init__(
        self,
        settings: FeedSettings,
        registry: Registry,
        state: LiveState,
        alerts: ActiveAlerts,
        cameras: CameraSource | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wire to the hub's components; nothing runs until `run`."""
        self.settings = settings
        self._registry = registry
        self._state = state
        self._alerts = alerts
        self._cameras = cameras or NoCameras()
        self._response: FeedResponse | None = None
        self._clock = clock
        self._lock = threading.Lock()  # alert and camera changes arrive on other threads
        self._pending = _Pending()
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._devices: FeedDevices | None = None
        self._streams: dict[Filter, Stream] = {}
        self._last_seq_start = 0
        self.stats = FeedStats()

    def use_cameras(self, cameras: CameraSource) -> None:
        """Take cameras from ``cameras`` (before `run`; the video package's source, once wired)."""
        self._cameras = cameras

    def use_response(self, response: FeedResponse) -> None:
        """Carry incidents, units and warnings from ``response`` (before `run`)."""
        self._response = response

    # -- intake: never waits, never raises into the caller -------------------------------------

    async def on_batch(self, batch: ReadingBatch) -> None:
        """Take a stored batch (a pipeline hook, after live state took it)."""
        readings = Readings(batch.device, batch.metric, batch.ts, batch.value)
        with self._lock:
            self._pending.readings.append(readings)
        self._dirty.set()

    async def on_status(self, statuses: Sequence[StatusChange]) -> None:
        """Take devices' own online/offline messages (a pipeline hook)."""
        devices = self._registry.interner.devices
        found = []
        for s in statuses:
            entry = devices.get(s.device_id)
            if entry is not None and entry.vendor == s.vendor:
                found.append((entry.index, s.online, s.ts_ms))
        if found:
            with self._lock:
                self._pending.status.extend(found)
            self._dirty.set()

    def on_alert(self, change: AlertChange) -> None:
        """Take an alert change (an `alerts.notify.AlertFeed` subscriber; any thread)."""
        with self._lock:
            self._pending.alerts.append(change)
        self._wake_threadsafe()

    def on_camera(self, change: dict[str, Any]) -> None:
        """Take a camera status change (the camera source's subscriber; any thread)."""
        with self._lock:
            self._pending.cameras.append(change)
        self._wake_threadsafe()

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._dirty.set()
        else:
            loop.call_soon_threadsafe(self._dirty.set)

    # -- the frame task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Make frames until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._devices = await asyncio.to_thread(FeedDevices.from_registry, self._registry)
        unsubscribe = self._cameras.subscribe(self.on_camera)
        response = self._response
        unfollow = response.attach(self._wake_threadsafe) if response is not None else None
        interval = self.settings.interval_ms / 1000
        last = 0.0
        try:
            while True:
                with contextlib.suppress(TimeoutError):  # wake now and then to drop idle streams
                    await asyncio.wait_for(self._dirty.wait(), timeout=1.0)
                wait = last + interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                # Frames are an interval apart from start to start: counting from the end of the
                # last one would add its build (and any wait for the interpreter) to every reading's
                # wait for the next frame (protocol, item 10).
                last = time.monotonic()
                self._dirty.clear()
                if self._registry.version != self.devices.version:
                    await self._reload_devices()
                try:
                    changes = None
                    if response is not None and response.pending:
                        streams = list(self._streams)  # prepare reads dispatches and the tree
                        changes = await asyncio.to_thread(response.prepare, streams)
                    self._tick(changes)
                except Exception:
                    self.stats.errors += 1
                    logger.exception("the situation feed failed to make a frame")
                self._drop_idle_streams(time.monotonic())
        finally:
            unsubscribe()
            if unfollow is not None:
                unfollow()

    @property
    def devices(self) -> FeedDevices:
        """The device table (built when `run` starts)."""
        if self._devices is None:
            self._devices = FeedDevices.from_registry(self._registry)
        return self._devices

    async def _reload_devices(self) -> None:
        """Registry changed: new table, new masks, and a fresh snapshot for every screen."""
        self._devices = await asyncio.to_thread(FeedDevices.from_registry, self._registry)
        logger.info("situation feed: device table rebuilt (%s indexes)", self._devices.size)
        for stream in list(self._streams.values()):
            stream.mask = self.devices.mask(stream.filter.scope)
            stream.snapshot = None
            if stream.clients:
                start = await self._start(stream)
                for client in stream.clients:
                    client.restart(start)

    def _take(self) -> _Pending:
        with self._lock:
            pending, self._pending = self._pending, _Pending()
        return pending

    def _tick(self, response: Changes | None = None) -> None:
        """Turn what is pending into one frame per stream that has something to show."""
        pending = self._take()
        if not (pending or response) or not self._streams:
            return
        started = time.perf_counter()
        devices = self.devices
        readings = Readings.concat(pending.readings).latest()
        if len(readings):
            # A late reading that live state did not take (it holds a newer one) changes nothing.
            _, state_ts = self._state.series(
                readings.device.astype(np.intp), readings.metric.astype(np.intp)
            )
            readings = readings.take(readings.ts >= state_ts)
        tick = Tick(
            devices=devices,
            readings=readings,
            status_device=np.fromiter((d for d, _, _ in pending.status), np.intp),
            status=[
                {"id": str(devices.ids[d]) if d < devices.size else "", "online": on, "ts": ts}
                for d, on, ts in pending.status
            ],
            alerts=[(c.alert, _label(c.entry.from_level), change_body(c)) for c in pending.alerts],
            cameras=pending.cameras,
            now_ms=int(self._clock() * 1000),
            response=response,
        )
        for stream in self._streams.values():
            frame = stream.delta(tick)
            if frame is not None:
                stream.push(frame)
                self.stats.frames += 1
        self.stats.tick_ms = (time.perf_counter() - started) * 1000

    # -- screens ---------------------------------------------------------------------------------

    def merge(self, frames: Sequence[DeltaFrame]) -> DeltaFrame:
        """Consecutive frames of a stream as one (what a screen that fell behind gets)."""
        return DeltaFrame.merge(frames, self.devices)

    def client(self, user: str) -> FeedClient:
        """A new screen's queue, with this feed's limits."""
        return FeedClient(
            user,
            max_queue=self.settings.max_client_queue,
            merge_after=MERGE_AFTER,
            merger=self.merge,
        )

    async def join(self, client: FeedClient, filt: Filter, since: int | None) -> None:
        """Put ``client`` on the stream of ``filt`` and queue its start.

        A ``since`` inside the stream's replay window gets the frames after it (merged when many);
        anything else gets a snapshot (the stream's cached one when recent) and the frames after
        it. The screen joins the stream only once its start is queued, in one step on the event
        loop, so no frame falls between its start and the live frames.
        """
        self.leave(client)
        stream = self._streams.get(filt) or self._open(filt)
        stream.idle_since = None
        start = await self._resume(stream, since) if since is not None else None
        if start is None:
            start = await self._start(stream)
        client.restart(start)
        stream.clients.add(client)
        client.stream = stream

    async def _resume(self, stream: Stream, since: int) -> list[Frame] | None:
        """The frames after ``since`` (merged when many), or None when it is out of the window."""
        missed = stream.after(since)
        if missed is None or len(missed) <= MERGE_AFTER:
            return list(missed) if missed is not None else None
        merged = await asyncio.to_thread(self.merge, missed)
        rest = stream.after(merged.seq)  # what came while merging
        return [merged, *rest] if rest is not None else None

    async def _start(self, stream: Stream) -> list[Frame]:
        """A snapshot and the frames after it."""
        for _ in range(3):
            snap = stream.snapshot
            follow = stream.after(snap.seq) if snap is not None else None
            if snap is None or follow is None or len(follow) > SNAPSHOT_REUSE_FRAMES:
                snap = await self._snapshot(stream)
                follow = stream.after(snap.seq)
            if follow is not None:
                return [snap, *follow]
        # The stream outran its replay window three times: the screen sees a gap and resyncs.
        return [await self._snapshot(stream)]

    def leave(self, client: FeedClient) -> None:
        """Take ``client`` off its stream (it disconnected or changes filter)."""
        stream = client.stream
        if stream is not None:
            stream.clients.discard(client)
            if not stream.clients:
                stream.idle_since = time.monotonic()
            client.stream = None

    def too_slow(self, client: FeedClient) -> None:
        """Count a screen closed as too slow."""
        self.stats.closed_slow += 1
        logger.warning(
            "situation feed: screen %s of %s fell %s frames behind: closing it (4408)",
            client.id,
            client.user,
            self.settings.max_client_queue,
        )

    def _open(self, filt: Filter) -> Stream:
        # A new stream starts at the epoch ms, so its seqs never meet those of an earlier stream of
        # the same filter (or of an earlier hub process): a stale ``since`` gets a snapshot.
        start = max(int(self._clock() * 1000), self._last_seq_start + 1)
        self._last_seq_start = start
        stream = Stream(filt, start, self.settings.replay_frames)
        stream.mask = self.devices.mask(filt.scope)
        self._streams[filt] = stream
        return stream

    async def _snapshot(self, stream: Stream) -> SnapshotFrame:
        """A fresh snapshot of ``stream``; screens asking while one is built share it."""
        if stream.building is None:
            stream.building = asyncio.ensure_future(self._build(stream))
        return await asyncio.shield(stream.building)

    async def _build(self, stream: Stream) -> SnapshotFrame:
        try:
            started = time.perf_counter()
            cap = capture(
                seq=stream.seq,
                now_ms=int(self._clock() * 1000),
                filt=stream.filter,
                devices=self.devices,
                mask=stream.mask,
                state=self._state,
            )
            text = await asyncio.to_thread(self._render, cap)
            stream.snapshot = SnapshotFrame(cap.seq, text)
            self.stats.snapshots += 1
            self.stats.snapshot_ms = (time.perf_counter() - started) * 1000
            return stream.snapshot
        finally:
            stream.building = None

    def _render(self, cap: Capture) -> str:
        """The text of a captured snapshot (in a worker thread: the store and source are read here)."""
        parts = self._response.snapshot(cap.filt) if self._response is not None else None
        return render(cap, self._alerts.active_alerts(), self._cameras.cameras(), parts)

    def _drop_idle_streams(self, now: float) -> None:
        # Past MAX_STREAMS (screens trying many filters), idle streams go at once: each costs
        # every tick a mask and maybe an encoding.
        keep_s = IDLE_STREAM_S if len(self._streams) <= MAX_STREAMS else 0.0
        idle = [
            f
            for f, s in self._streams.items()
            if s.idle_since is not None and now - s.idle_since >= keep_s
        ]
        for f in idle:
            del self._streams[f]

    def status(self) -> dict[str, Any]:
        """Streams, screens and counters, for operators."""
        streams = [stream.describe() for stream in self._streams.values()]
        s = self.stats
        return {
            "screens": sum(len(x.clients) for x in self._streams.values()),
            "streams": streams,
            "frames": s.frames,
            "snapshots": s.snapshots,
            "last_snapshot_ms": round(s.snapshot_ms, 2),
            "last_tick_ms": round(s.tick_ms, 2),
            "closed_slow": s.closed_slow,
            "errors": s.errors,
            "interval_ms": self.settings.interval_ms,
        }


def _label(level: Level | None) -> str | None:
    return level.label if level is not None else None
