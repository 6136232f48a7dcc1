"""A lean MQTT 3.1.1 QoS 1 publisher for load generation: pre-encoded packets, one socket write per slice.

paho-mqtt spends tens of microseconds per publish in Python and its network thread competes with the
caller for the GIL, so on this 2-core machine a paho load generator falls behind before the hub does.
This writes PUBLISH packets straight to the socket and counts the broker's PUBACKs in a reader
thread; ``acked`` is what the broker really took, the figure the benchmark reports.
"""

from __future__ import annotations

import socket
import struct
import threading


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


class RawPublisher:
    """One MQTT connection publishing QoS 1; `acked` counts PUBACKs."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((host, port))
        try:
            self._connect(client_id)
        except BaseException:
            # A broker going down mid-handshake (the fault suite restarts it): no socket left open.
            self.sock.close()
            raise
        self.acked = 0
        self._mid = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="rawpub-acks", daemon=True)
        self._reader.start()

    def _connect(self, client_id: str) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        var = _utf8(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)  # v3.1.1, clean, keepalive
        body = var + _utf8(client_id.encode())
        self.sock.sendall(b"\x10" + _remaining(len(body)) + body)
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[3] != 0:
            msg = f"broker refused the connection: {connack!r}"
            raise ConnectionError(msg)

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        """A QoS 1 PUBLISH packet with the next packet id."""
        self._mid = self._mid % 65535 + 1
        var = _utf8(topic) + struct.pack("!H", self._mid)
        return b"\x32" + _remaining(len(var) + len(payload)) + var + payload

    def send(self, packets: list[bytes]) -> None:
        """Write packets in one go."""
        if packets:
            self.sock.sendall(b"".join(packets))

    def _read(self) -> None:
        buf = b""
        while not self._closed:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            # PUBACKs are 4 bytes (0x40 0x02 id id); a PINGRESP (2 bytes) may come too.
            i = 0
            while i + 2 <= len(buf):
                kind, length = buf[i], buf[i + 1]
                if i + 2 + length > len(buf):
                    break
                if kind == 0x40:
                    self.acked += 1
                i += 2 + length
            buf = buf[i:]

    def close(self) -> None:
        """Disconnect cleanly."""
        self._closed = True
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass  # the broker is gone: the socket is closed all the same
        finally:
            self.sock.close()
