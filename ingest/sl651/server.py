"""The SL 651-2014 station server: asyncio TCP in, frames checked and decoded in bulk, the pipeline, confirmations out.

Every ``flush_interval_s`` the frames received from all connections are CRC-checked together
(`frame.checksums_ok`), packets are joined into messages, and the messages are decoded together
(`decode.Decoder`) into one `ReadingBatch`. That batch and its dead letters go to the ingest pipeline
(``submit``: the MQTT readings' own path, with their range flags, live state, rules, store and
(device, metric, ts) key: a report sent twice is stored once). Only once they are durable is each
station sent the confirmation the standard asks for, so a station that resends until confirmed has
its readings stored exactly once.

Confirmations (SL 651-2014 transmission modes: M1 send/no answer, M2 send/confirm, M3 multi-packet
send/confirm, M4 query/answer; a station's mode is its own setting):

* link keep-alive (2FH): no answer. The keep-alive only holds the link open and the centre does not
  reply to it.
* test, even-interval, timed, addition and hourly reports (30H-34H): a downlink frame with the same
  function code, whose body is the report's serial number and the centre's send time, ending in EOT
  (04H, "transmission over, exit") or, with ``keep_online``, ESC (1BH, "transmission over, terminal
  stays online"). A station in mode M1 ignores it.
* a multi-packet message (SYN, M3): each packet that ends with ETB ("more follows") is answered at
  once with a downlink frame ending ACK (06H, "positive acknowledgement, continue sending"), echoing
  the packet's count and number; once every packet has arrived and the message is durable, the same
  confirmation as a single report (EOT/ESC), with the serial number of packet 1.
* a frame whose CRC fails is not confirmed, so the station sends it again; it is also a dead letter.

A frame cut short by the station hanging up, and packets of a message that never completed, become
dead letters (``truncated``) when the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from devices.registry import Registry
from ingest.codecs.base import DecodeReason
from ingest.columns import Rejection
from ingest.consumer import Taken
from ingest.sl651 import frame as fr
from ingest.sl651.decode import Decoder, dead_letter
from ingest.sl651.message import Message, Reassembler
from ingest.sl651.settings import Sl651Settings

logger = logging.getLogger(__name__)

Submit = Callable[[Taken], Awaitable[None]]
Clock = Callable[[], float]
REPORTS = frozenset(f.value for f in fr.Function)


@dataclass(slots=True)
class Sl651Counters:
    """What the server has done, for status and metrics."""

    connections: int = 0
    open_connections: int = 0
    frames: int = 0
    messages: int = 0
    keep_alives: int = 0
    readings: int = 0
    dead_letters: int = 0
    bad_checksums: int = 0
    confirmations: int = 0
    packet_acks: int = 0
    flushes: int = 0
    flush_errors: int = 0


class _Connection(asyncio.Protocol):
    """One station's (or DTU's) TCP connection: bytes in, frames to the server, confirmations out."""

    def __init__(self, server: Sl651Server) -> None:
        self.server = server
        self.reader = fr.FrameReader()
        self.packets = Reassembler()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.last_heard = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's transport (uvloop's is not an asyncio.Transport subclass, hence the cast).
        self.transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server.opened(self)

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        try:
            frames, problems = self.reader.feed(data)
        except Exception:  # a bug must not take the event loop's callback down: drop the link
            logger.exception("reading from %s failed; closing the connection", self.peer)
            if self.transport is not None:
                self.transport.abort()
            return
        self.server.received(self, frames, problems)

    def connection_lost(self, exc: Exception | None) -> None:
        left = [self.reader.pending(), *self.packets.incomplete()]
        self.server.closed(self, [b for b in left if b])

    def send(self, data: bytes) -> bool:
        """Write to the station unless it has gone; whether it was written."""
        t = self.transport
        if t is None or t.is_closing():
            return False
        t.write(data)
        return True


@dataclass(slots=True)
class _Pending:
    frames: list[bytes] = field(default_factory=list)
    conns: list[_Connection] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Sl651Server:
    """Accepts stations on TCP and hands their readings to ``submit`` (the ingest pipeline's)."""

    def __init__(
        self,
        settings: Sl651Settings,
        registry: Registry,
        submit: Submit,
        *,
        site_zone: str = "Asia/Shanghai",
        skew_flag_ms: int = 5 * 60_000,
        max_future_ms: int = 24 * 3600_000,
        clock: Clock = time.time,
    ) -> None:
        """Serve on ``settings.host:port`` once `run` starts."""
        self.settings = settings
        self._submit = submit
        self._clock = clock
        self._zone = ZoneInfo(site_zone)
        self._registry = registry
        self._decoder = Decoder(
            registry, site_zone=site_zone, skew_flag_ms=skew_flag_ms, max_future_ms=max_future_ms
        )
        self._pending = _Pending()
        self._paused: set[_Connection] = set()
        self._conns: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self.port = settings.port
        self.counters = Sl651Counters()

    # -- connection callbacks (on the event loop) ----------------------------------------------

    def opened(self, conn: _Connection) -> None:
        self._conns.add(conn)
        self.counters.connections += 1
        self.counters.open_connections = len(self._conns)

    def received(
        self, conn: _Connection, frames: list[bytes], problems: list[fr.FrameProblem]
    ) -> None:
        p = self._pending
        if frames or problems:
            self._wake.set()
        if frames:
            p.frames.extend(frames)
            p.conns.extend([conn] * len(frames))
        if problems:
            now = self._now_ms()
            for problem in problems:
                p.rejections.append(
                    self._dead_letter(
                        problem.data, DecodeReason(problem.reason), problem.detail, now
                    )
                )
        if len(p.frames) >= self.settings.max_pending_frames and conn.transport is not None:
            conn.transport.pause_reading()
            self._paused.add(conn)

    def closed(self, conn: _Connection, left: list[bytes]) -> None:
        self._conns.discard(conn)
        self._paused.discard(conn)
        self.counters.open_connections = len(self._conns)
        now = self._now_ms()
        if left:
            self._wake.set()
        for data in left:
            detail = f"{len(data)} bytes of an incomplete frame or message when {conn.peer} hung up"
            self._pending.rejections.append(
                self._dead_letter(data, DecodeReason.TRUNCATED, detail, now)
            )

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled; then stop accepting and close every station's connection."""
        loop = asyncio.get_running_loop()
        s = self.settings
        self._server = await loop.create_server(
            lambda: _Connection(self), s.host, s.port, backlog=4096, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("SL 651 station server listening on %s:%s", s.host, self.port)
        self.ready.set()
        try:
            next_idle = time.monotonic() + 1.0
            while True:
                # Flush when frames have come, after a short wait that gathers those arriving with
                # them: a station waits for its confirmation, so no fixed tick adds to its wait.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                if self._wake.is_set():
                    await asyncio.sleep(s.flush_interval_s)
                    self._wake.clear()
                    try:
                        await asyncio.shield(self.flush())
                    except Exception:  # a bug must not stop the server: those frames go unconfirmed
                        self.counters.flush_errors += 1
                        logger.exception("SL 651 flush failed; its stations will send again")
                if time.monotonic() >= next_idle:
                    next_idle = time.monotonic() + 1.0
                    self._drop_idle()
        finally:
            # What was received but not flushed is dropped unconfirmed: its stations send it again
            # (the pipeline may already have stopped, so a last flush could wait for ever).
            self._server.close()
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()

    async def flush(self) -> int:
        """Check, decode, store and confirm everything received; returns the readings submitted."""
        p = self._pending
        if not p.frames and not p.rejections:
            return 0
        self._pending = _Pending()
        now_ms = self._now_ms()
        # The bulk numpy work runs in a worker thread so the event loop (the HTTP API, the other
        # stations' sockets) is never held by a large flush; flushes run one at a time.
        ok = await asyncio.to_thread(fr.checksums_ok, p.frames)
        messages, owners, rejections = self._messages(p, ok, now_ms)
        decoded = await asyncio.to_thread(self._decoder.decode, messages, now_ms)
        rejections.extend(decoded.rejections)
        taken = Taken(decoded.batch, rejections, [], [], len(p.frames))
        try:
            await self._submit(taken)
        finally:
            for conn in self._paused:
                if conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.resume_reading()
            self._paused.clear()
        self._confirm(messages, owners)
        c = self.counters
        c.flushes += 1
        c.frames += len(p.frames)
        c.messages += len(messages)
        c.readings += len(decoded.batch)
        c.dead_letters += len(rejections)
        return len(decoded.batch)

    def _messages(
        self, p: _Pending, ok: NDArray[np.bool_], now_ms: int
    ) -> tuple[list[Message], list[_Connection], list[Rejection]]:
        """Frames whose CRC holds (``ok``), joined into messages; the others as dead letters."""
        rejections = p.rejections
        messages: list[Message] = []
        owners: list[_Connection] = []
        bad = np.flatnonzero(~ok)
        self.counters.bad_checksums += len(bad)
        for i in bad.tolist():
            data = p.frames[i]
            got = int.from_bytes(data[-2:], "big")
            detail = f"CRC in the frame is {got:04X}, the bytes give {fr.crc16(data[:-2]):04X}"
            rejections.append(self._dead_letter(data, DecodeReason.BAD_CHECKSUM, detail, now_ms))
        for i in np.flatnonzero(ok).tolist():
            data, conn = p.frames[i], p.conns[i]
            head = fr.header(data)
            problem = _refused(head)
            if problem is not None:
                rejections.append(self._dead_letter(data, DecodeReason.BAD_FRAME, problem, now_ms))
                continue
            if head.function == fr.Function.KEEP_ALIVE:
                self.counters.keep_alives += 1
                continue
            message = conn.packets.add(head, data)
            if message is not None:
                messages.append(message)
                owners.append(conn)
            elif head.end == fr.ETB:
                self._ack_packet(conn, head)
        return messages, owners, rejections

    def _ack_packet(self, conn: _Connection, head: fr.Header) -> None:
        """Confirm one packet of a multi-packet message at once: ACK, "received, send the next".

        The packet is confirmed as received, not as stored (the message is stored, and confirmed
        with EOT/ESC, once its last packet is in). The frame echoes the packet's count and number
        after SYN, then the message's serial and the centre's time.
        """
        body = conn.packets.serial(head) + fr.bcd_time(self._clock(), self._zone)
        reply = fr.build(
            station=head.station,
            function=head.function,
            body=body,
            centre=head.centre,
            password=head.password,
            downlink=True,
            end=fr.ACK,
            packet=(head.packets, head.packet),
        )
        if conn.send(reply):
            self.counters.packet_acks += 1

    def _confirm(self, messages: list[Message], owners: list[_Connection]) -> None:
        """The confirmation frame of each message, sent once its readings are durable."""
        end = fr.ESC if self.settings.keep_online else fr.EOT
        sent = fr.bcd_time(self._clock(), self._zone)
        for m, conn in zip(messages, owners, strict=True):
            h = m.head
            body = m.body[:2] + sent
            reply = fr.build(
                station=h.station,
                function=h.function,
                body=body,
                centre=h.centre,
                password=h.password,
                downlink=True,
                end=end,
            )
            if conn.send(reply):
                self.counters.confirmations += 1

    def _drop_idle(self) -> None:
        limit = time.monotonic() - self.settings.idle_timeout_s
        for conn in list(self._conns):
            if conn.last_heard < limit and conn.transport is not None:
                conn.transport.close()

    def _dead_letter(
        self, data: bytes, reason: DecodeReason, detail: str, now_ms: int
    ) -> Rejection:
        """A frame-level rejection, filed under the station (and its vendor) when it is known."""
        station = _station_of(data)
        entry = self._registry.interner.devices.get(station) if station else None
        return dead_letter(station, entry.vendor if entry else "", data, reason, detail, now_ms)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _refused(head: fr.Header) -> str | None:
    if head.downlink:
        return "a downlink (centre-to-station) frame was sent to the centre"
    if head.function not in REPORTS:
        return (
            f"function code {head.function:02X} is not a report the hub takes "
            "(2F keep-alive, 30 test, 31 even-interval, 32 timed, 33 addition, 34 hourly)"
        )
    return None


def _station_of(data: bytes) -> str:
    """The station address of bytes that start like an uplink frame, else ""."""
    if len(data) >= 8 and data[:2] == fr.SOH:
        return data[3:8].hex().upper()
    return ""
