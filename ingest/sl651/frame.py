"""SL 651-2014 HEX/BCD frames: the byte layout, CRC16, splitting a TCP stream into frames, building frames.

Layout of a HEX/BCD frame (SL 651-2014, the "HEX/BCD 编码报文帧结构" table), uplink (station to centre)::

    7E 7E | centre 1 | station 5 | password 2 | function 1 | dir+length 2 | STX/SYN 1 |
    [packet info 3, after SYN only] | body | end 1 (ETX/ETB/ENQ/EOT/ACK/NAK/ESC) | CRC 2

A downlink frame (centre to station) swaps the two addresses: station 5 first, then centre 1.
``dir+length``: the high nibble is 0 upstream and 8 downstream, the low 12 bits count the bytes between
the start character and the end character (packet info included). The CRC covers every byte from the
first 7E up to and including the end character; it is CRC-16 with polynomial X16+X15+X2+1 (0x8005,
computed reflected as 0xA001), initial value 0xFFFF, no final XOR (the "CRC-16/MODBUS" parameters), and
is sent high byte first, as station firmware sends it.

Not supported: the standard's ASCII encoding (start SOH 01, identifiers as letters such as "PJ"). Frames
of the HEX/BCD encoding are accepted as bytes and also as their hexadecimal text ("7E7E0012..."), which
some DTUs send.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

SOH = b"\x7e\x7e"
SOH_TEXT = b"7E7E"
STX, SYN = 0x02, 0x16
ETX, ETB, ENQ, EOT, ACK, NAK, ESC = 0x03, 0x17, 0x05, 0x04, 0x06, 0x15, 0x1B
END_CHARS = frozenset((ETX, ETB, ENQ, EOT, ACK, NAK, ESC))
HEADER = 14  # 7E7E .. start character, inclusive
TRAILER = 3  # end character + CRC
PACKET_INFO = 3  # after SYN: total packets (12 bits) and this packet's number (12 bits, from 1)
MAX_LENGTH = 0x0FFF  # 12 bits
DOWN = 0x8


class Function(enum.IntEnum):
    """Function codes of the uplink reports the hub takes (SL 651-2014 function code table)."""

    KEEP_ALIVE = 0x2F  # 链路维持报
    TEST = 0x30  # 测试报
    EVEN_INTERVAL = 0x31  # 均匀时段水文信息报
    TIMED = 0x32  # 遥测站定时报
    ADDITION = 0x33  # 遥测站加报报
    HOURLY = 0x34  # 遥测站小时报


class Problem(enum.StrEnum):
    """Why bytes are not a frame; the values are the ingest dead-letter reasons of the same name."""

    BAD_CHECKSUM = "bad_checksum"
    TRUNCATED = "truncated"
    BAD_FRAME = "bad_frame"


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """Bytes rejected by the splitter, with a sentence a station's maintainer can act on."""

    reason: Problem
    detail: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Header:
    """The fixed part of a frame, decoded."""

    centre: int
    station: str  # the 5 address bytes as 10 upper-case hex digits (BCD addresses read as digits)
    password: int
    function: int
    downlink: bool
    length: int
    start: int  # STX or SYN
    end: int
    packets: int  # total packets of the message (1 for STX)
    packet: int  # this packet's number, from 1

    @property
    def body_start(self) -> int:
        """Offset of the body in the frame (after the packet info for SYN)."""
        return HEADER + (PACKET_INFO if self.start == SYN else 0)


# -- CRC --------------------------------------------------------------------------------------------


def _crc_table() -> NDArray[np.uint16]:
    table = np.zeros(256, dtype=np.uint16)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table[i] = crc
    return table


CRC_TABLE = _crc_table()
_TABLE = [int(x) for x in CRC_TABLE]


def crc16(data: bytes) -> int:
    """The frame check of ``data`` (see the module docstring for the parameters)."""
    crc = 0xFFFF
    table = _TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def crc16_rows(rows: NDArray[np.uint8]) -> NDArray[np.uint16]:
    """`crc16` of every row of an (n, L) byte matrix at once: one numpy step per byte column."""
    crc = np.full(rows.shape[0], 0xFFFF, dtype=np.uint16)
    table = CRC_TABLE
    for j in range(rows.shape[1]):
        crc = (crc >> np.uint16(8)) ^ table[(crc ^ rows[:, j]) & 0xFF]
    return crc


def checksums_ok(frames: list[bytes]) -> NDArray[np.bool_]:
    """Whether each frame's CRC matches its bytes; frames of equal length are checked together."""
    ok = np.zeros(len(frames), dtype=np.bool_)
    by_length: dict[int, list[int]] = {}
    for i, f in enumerate(frames):
        by_length.setdefault(len(f), []).append(i)
    for length, idx in by_length.items():
        if length < HEADER + TRAILER:
            continue
        rows = np.frombuffer(b"".join(frames[i] for i in idx), dtype=np.uint8).reshape(-1, length)
        got = (rows[:, -2].astype(np.uint16) << np.uint16(8)) | rows[:, -1]
        ok[idx] = crc16_rows(rows[:, :-2]) == got
    return ok


# -- reading ----------------------------------------------------------------------------------------


def header(frame: bytes) -> Header:
    """The fixed part of a frame whose length and start were checked by `FrameReader`."""
    downlink = frame[11] >> 4 == DOWN
    if downlink:
        station, centre = frame[2:7].hex().upper(), frame[7]
    else:
        centre, station = frame[2], frame[3:8].hex().upper()
    start = frame[13]
    packets = packet = 1
    if start == SYN:
        info = int.from_bytes(frame[14:17], "big")
        packets, packet = info >> 12, info & 0xFFF
    return Header(
        centre=centre,
        station=station,
        password=int.from_bytes(frame[8:10], "big"),
        function=frame[10],
        downlink=downlink,
        length=((frame[11] & 0x0F) << 8) | frame[12],
        start=start,
        end=frame[-3],
        packets=packets,
        packet=packet,
    )


@dataclass(slots=True)
class FrameReader:
    """Splits one connection's byte stream into frames, whatever the TCP reads cut or join.

    `feed` returns the complete frames found so far (CRC not yet checked: `checksums_ok` checks many
    at once) and the problems met; an incomplete frame waits for the next read. Garbage before a
    start is reported once per run of it. A stream that opens with hexadecimal text ("7E7E...") is
    read as text from then on.
    """

    max_buffer: int = 64 * 1024
    text: bool | None = None  # None until the first start is seen
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> tuple[list[bytes], list[FrameProblem]]:
        """Add bytes read from the connection; return frames completed and problems found."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        problems: list[FrameProblem] = []
        while buf:
            if self.text is None:
                self.text = _looks_like_text(buf)
                if self.text is None:
                    break
            if self.text:
                found = self._next_text(frames, problems)
            else:
                found = self._next_binary(frames, problems)
            if not found:
                break
        if len(buf) > self.max_buffer:
            problems.append(
                FrameProblem(
                    Problem.BAD_FRAME,
                    f"{len(buf)} bytes buffered without a complete frame; dropped",
                    bytes(buf[:64]),
                )
            )
            buf.clear()
        return frames, problems

    def pending(self) -> bytes:
        """Bytes of an incomplete frame held back (reported as truncated when the station hangs up)."""
        return bytes(self._buf)

    def _next_binary(self, frames: list[bytes], problems: list[FrameProblem]) -> bool:
        buf = self._buf
        at = buf.find(SOH)
        if at < 0:
            # Keep a trailing 7E: it may be the first half of the next start.
            keep = 1 if buf[-1:] == b"\x7e" else 0
            if len(buf) > keep:
                problems.append(_garbage(bytes(buf[: len(buf) - keep])))
                del buf[: len(buf) - keep]
            return False
        if at:
            problems.append(_garbage(bytes(buf[:at])))
            del buf[:at]
        if len(buf) < HEADER:
            return False
        problem = _check_header(buf)
        if problem is not None:
            problems.append(problem)
            del buf[:2]  # skip this start; look for the next
            return True
        total = HEADER + (((buf[11] & 0x0F) << 8) | buf[12]) + TRAILER
        if len(buf) < total:
            return False
        frame = bytes(buf[:total])
        if frame[-3] not in END_CHARS:
            problems.append(
                FrameProblem(
                    Problem.BAD_FRAME,
                    f"byte {total - 3} should end the body (03, 17, 05, 04, 06, 15 or 1B) "
                    f"but is {frame[-3]:02X}: the length field does not match the frame",
                    frame,
                )
            )
            del buf[:2]
            return True
        frames.append(frame)
        del buf[:total]
        return True

    def _next_text(self, frames: list[bytes], problems: list[FrameProblem]) -> bool:
        buf = self._buf
        # Hexadecimal text: whitespace between frames is allowed, case is not significant.
        at = buf.upper().find(SOH_TEXT)
        if at < 0:
            keep = min(len(buf), 3)
            if len(buf) > keep:
                problems.append(_garbage(bytes(buf[: len(buf) - keep])))
                del buf[: len(buf) - keep]
            return False
        if at:
            if bytes(buf[:at]).strip():
                problems.append(_garbage(bytes(buf[:at])))
            del buf[:at]
        head = _unhex(buf, HEADER)
        if head is None:
            return False
        problem = _check_header(head) if head else _not_hex(buf)
        total = HEADER + (((head[11] & 0x0F) << 8) | head[12]) + TRAILER if head else 0
        frame = _unhex(buf, total) if problem is None else b""
        if frame is None:
            return False
        if problem is None and not frame:
            problem = _not_hex(buf)
        if problem is not None:
            problems.append(problem)
            del buf[:4]
            return True
        del buf[: 2 * total]
        frames.append(frame)
        return True


def _unhex(buf: bytearray, size: int) -> bytes | None:
    """The first ``size`` bytes written as hexadecimal text; None: not all there; b"": not hex."""
    if len(buf) < 2 * size:
        return None
    try:
        return bytes.fromhex(buf[: 2 * size].decode("ascii"))
    except ValueError:
        return b""


def _not_hex(buf: bytearray) -> FrameProblem:
    return FrameProblem(Problem.BAD_FRAME, "not hexadecimal text", bytes(buf[:64]))


def _looks_like_text(buf: bytearray) -> bool | None:
    """True for hexadecimal text, False for bytes, None when too little has arrived to tell."""
    b = bytes(buf.lstrip())
    if b[:4].upper() == SOH_TEXT:
        return True
    if SOH in buf:
        return False
    if len(b) >= 4:
        return False  # neither start: read as bytes, so the garbage is reported there
    return None


def _check_header(head: bytes | bytearray) -> FrameProblem | None:
    direction = head[11] >> 4
    if direction not in (0, DOWN):
        return FrameProblem(
            Problem.BAD_FRAME,
            f"direction nibble is {direction:X}, neither 0 (up) nor 8 (down)",
            bytes(head[:HEADER]),
        )
    if head[13] not in (STX, SYN):
        return FrameProblem(
            Problem.BAD_FRAME,
            f"byte 13 should start the body (02 STX or 16 SYN) but is {head[13]:02X}",
            bytes(head[:HEADER]),
        )
    return None


def _garbage(data: bytes) -> FrameProblem:
    return FrameProblem(
        Problem.BAD_FRAME, f"{len(data)} bytes outside any frame (no 7E7E start)", data
    )


# -- building ---------------------------------------------------------------------------------------


def bcd(number: int, size: int) -> bytes:
    """``number`` as ``size`` bytes of packed BCD (two decimal digits a byte)."""
    digits = f"{number:0{2 * size}d}"
    if len(digits) != 2 * size:
        msg = f"{number} does not fit in {size} BCD bytes"
        raise ValueError(msg)
    return bytes.fromhex(digits)


def bcd_time(t: float, zone: ZoneInfo) -> bytes:
    """Epoch seconds as a send time: 6 BCD bytes ``yyMMddHHmmss`` of the local time in ``zone``."""
    return bytes.fromhex(dt.datetime.fromtimestamp(t, zone).strftime("%y%m%d%H%M%S"))


def build(
    *,
    station: str,
    function: int,
    body: bytes,
    centre: int = 1,
    password: int = 0,
    downlink: bool = False,
    end: int = ETX,
    packet: tuple[int, int] | None = None,
) -> bytes:
    """One complete frame: header, optional packet info (SYN), body, end character and CRC.

    Args:
        station: the station address as 10 hex digits.
        function: the function code.
        body: the bytes between the start character (and packet info) and the end character.
        centre: the centre address.
        password: the 2-byte password.
        downlink: True for a centre-to-station frame (addresses swapped, direction 8).
        end: the end character.
        packet: ``(total, number)`` for one packet of a multi-packet message (start SYN).
    """
    addr = bytes.fromhex(station)
    if len(addr) != 5:
        msg = f"station address {station!r} is not 5 bytes"
        raise ValueError(msg)
    info = b""
    if packet is not None:
        total, number = packet
        info = ((total << 12) | number).to_bytes(3, "big")
    length = len(info) + len(body)
    if length > MAX_LENGTH:
        msg = f"body of {length} bytes does not fit the 12-bit length"
        raise ValueError(msg)
    addresses = addr + bytes((centre,)) if downlink else bytes((centre,)) + addr
    head = (
        SOH
        + addresses
        + password.to_bytes(2, "big")
        + bytes((function,))
        + (((DOWN << 12) if downlink else 0) | length).to_bytes(2, "big")
        + bytes((SYN if packet is not None else STX,))
    )
    frame = head + info + body + bytes((end,))
    return frame + crc16(frame).to_bytes(2, "big")


def split_packets(
    *,
    station: str,
    function: int,
    body: bytes,
    size: int,
    centre: int = 1,
    password: int = 0,
) -> list[bytes]:
    """A long body as a multi-packet message: SYN frames of ``size`` body bytes, ETB but the last (ETX)."""
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    n = len(chunks)
    return [
        build(
            station=station,
            function=function,
            body=chunk,
            centre=centre,
            password=password,
            end=ETX if k == n else ETB,
            packet=(n, k),
        )
        for k, chunk in enumerate(chunks, start=1)
    ]


def join(frames: Iterable[bytes]) -> bytes:
    """Frames back to back, as a station's several reports may arrive in one TCP read."""
    return b"".join(frames)
