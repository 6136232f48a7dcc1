"""The feed benchmark's load: raw MQTT 3.1.1 packets out (the publisher) and in (the baseline relay).

Raw packets because the load generator and the baseline must cost little CPU on the machine that
also runs the hub: paho publishes about 35,000 msg/s at a full core and reads one packet per select.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import time
from typing import Any

import msgspec

DEVICES = 10_000
VENDOR = "bench"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _varint(len(body)) + body


def _string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def _drain(sock: socket.socket) -> None:
    """Read and drop what the broker sends (PUBACKs) until the socket closes."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def run_publisher(port: int, rate: int, seconds: float) -> None:
    """Publish ``rate`` msg/s for ``seconds``; PUBACKs are read and dropped by a thread."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connect = _string(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    sock.sendall(_packet(0x10, connect + _string(f"bench-feed-pub-{os.getpid()}".encode())))
    if sock.recv(4)[:2] != b"\x20\x02":
        raise SystemExit("publisher: no CONNACK")
    threading.Thread(target=_drain, args=(sock,), daemon=True).start()
    topics = [_string(f"sensors/{VENDOR}/d{i:06d}/up".encode()) for i in range(DEVICES)]
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            bt = math.floor(time.time() * 1000) / 1000  # the publish time, whole ms
            buf = bytearray()
            for k in range(sent, sent + due):
                d = k % DEVICES
                payload = b'[{"bn":"d%06d:","bt":%.3f,"n":"water_level","u":"m","v":%.2f}]' % (
                    d,
                    bt,
                    (k // DEVICES) % 500 / 10,
                )
                pid = (k % 65535 + 1).to_bytes(2, "big")
                buf += _packet(0x32, topics[d] + pid + payload)
            sock.sendall(buf)
            sent += due
        time.sleep(0.002)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


# -- the baseline: a minimal MQTT -> websocket relay ----------------------------------------------


class SenML(msgspec.Struct):
    bn: str
    bt: float
    n: str
    v: float


class Wire(msgspec.Struct, tag="delta", tag_field="type", kw_only=True):
    seq: int
    ts: int
    readings: list[tuple[str, str, float, int]]
    alerts: list[Any]
    status: list[Any]
    cameras: list[Any]


def subscribe(port: int, topic: str, on_payload: Any) -> None:  # noqa: ANN401 - a callback
    """A QoS 0 subscriber on raw MQTT 3.1.1 that reads many packets per recv (paho reads one per
    select, which made the first baseline measure paho rather than a relay), in a thread."""
    sock = socket.create_connection(("127.0.0.1", port))
    connect = _string(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    sock.sendall(_packet(0x10, connect + _string(b"bench-feed-relay")))
    sock.sendall(_packet(0x82, (1).to_bytes(2, "big") + _string(topic.encode()) + b"\x00"))

    def read() -> None:
        buf = b""
        while chunk := sock.recv(1 << 20):
            buf += chunk
            at = 0
            while True:
                if len(buf) - at < 2:
                    break
                size, shift, i = 0, 0, at + 1
                while i < len(buf):
                    size |= (buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not buf[i - 1] & 0x80:
                        break
                else:
                    break
                if i + size > len(buf):
                    break
                if buf[at] & 0xF0 == 0x30:  # PUBLISH at QoS 0: topic, payload
                    topic_len = int.from_bytes(buf[i : i + 2], "big")
                    on_payload(buf[i + 2 + topic_len : i + size])
                at = i + size
            buf = buf[at:]

    threading.Thread(target=read, daemon=True).start()


def run_relay(port: int, ws_port: int, interval_ms: int) -> None:
    """Subscribe, decode, keep the latest per series, broadcast one frame per interval to all."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    decoder = msgspec.json.Decoder(list[SenML])
    encoder = msgspec.json.Encoder()
    lock = threading.Lock()
    pending: list[tuple[str, str, float, int]] = []

    def on_payload(payload: bytes) -> None:
        rows = [(r.bn[:-1], r.n, r.v, round(r.bt * 1000)) for r in decoder.decode(payload)]
        with lock:
            pending.extend(rows)

    subscribe(port, "sensors/+/+/up", on_payload)
    screens: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        screens.add(ws)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        finally:
            screens.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", ws_port, compression=None, max_size=None):
            seq = 0
            while True:
                await asyncio.sleep(interval_ms / 1000)
                with lock:
                    rows, pending[:] = list(pending), []
                if not rows:
                    continue
                latest: dict[tuple[str, str], tuple[str, str, float, int]] = {}
                for r in rows:
                    old = latest.get((r[0], r[1]))
                    if old is None or r[3] >= old[3]:
                        latest[(r[0], r[1])] = r
                seq += 1
                frame = Wire(
                    seq=seq,
                    ts=int(time.time() * 1000),
                    readings=list(latest.values()),
                    alerts=[],
                    status=[],
                    cameras=[],
                )
                broadcast(screens, encoder.encode(frame).decode())

    asyncio.run(main())
