"""SL 651-2014 frames: CRC, layout, and splitting a TCP byte stream however the reads fall."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sl651 import frame as fr
from ingest.sl651 import station as sta

T0 = dt.datetime(2026, 6, 1, 8, 0)
STATION = "0012345678"


def _report(serial: int = 1, station: str = STATION) -> bytes:
    return sta.report(
        station=station,
        function=fr.Function.TIMED,
        serial=serial,
        observed=T0,
        readings=[sta.Reading(0x20, 0.5, 1, 3), sta.Reading(0x39, 12.345, 3, 4)],
    )


def test_crc_is_crc16_modbus() -> None:
    # The catalogue check value of CRC-16/MODBUS (poly 0x8005 reflected = 0xA001, init 0xFFFF).
    assert fr.crc16(b"123456789") == 0x4B37


def test_crc_rows_match_one_by_one() -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, size=(50, 37), dtype=np.uint8)
    got = fr.crc16_rows(rows)
    assert [int(x) for x in got] == [fr.crc16(bytes(r)) for r in rows]


def test_frame_layout_byte_by_byte() -> None:
    body = bytes.fromhex("0001") + bytes.fromhex("260601080000")
    f = fr.build(station=STATION, function=0x2F, body=body, centre=0x01, password=0x1234)
    assert f[:2] == b"\x7e\x7e"
    assert f[2] == 0x01  # centre first on an uplink
    assert f[3:8] == bytes.fromhex(STATION)
    assert f[8:10] == b"\x12\x34"
    assert f[10] == 0x2F
    assert f[11:13] == bytes((0x00, len(body)))  # direction 0 (up), 12-bit length of the body
    assert f[13] == fr.STX
    assert f[14:-3] == body
    assert f[-3] == fr.ETX
    assert f[-2:] == fr.crc16(f[:-2]).to_bytes(2, "big")  # high byte first
    assert len(f) == 14 + len(body) + 3


def test_downlink_swaps_addresses_and_sets_direction() -> None:
    f = fr.build(
        station=STATION, function=0x32, body=b"\x00\x07", centre=9, downlink=True, end=fr.EOT
    )
    assert f[2:7] == bytes.fromhex(STATION)
    assert f[7] == 9
    assert f[11] >> 4 == 8
    h = fr.header(f)
    assert (h.station, h.centre, h.downlink, h.end) == (STATION, 9, True, fr.EOT)


def test_header_reads_what_build_wrote() -> None:
    f = _report(serial=42)
    h = fr.header(f)
    assert h.station == STATION
    assert h.function == fr.Function.TIMED
    assert not h.downlink
    assert h.length == len(f) - 17
    assert (h.start, h.end, h.packets, h.packet) == (fr.STX, fr.ETX, 1, 1)


def test_two_frames_in_one_read() -> None:
    a, b = _report(1), _report(2)
    frames, problems = fr.FrameReader().feed(a + b)
    assert frames == [a, b]
    assert problems == []


@given(cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=12))
@settings(max_examples=60, deadline=None)
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    stream = _report(1) + _report(2) + _report(3)
    reader = fr.FrameReader()
    frames: list[bytes] = []
    at = 0
    for cut in sorted({min(c, len(stream)) for c in cuts}):
        got, problems = reader.feed(stream[at:cut])
        frames += got
        assert problems == []
        at = cut
    got, problems = reader.feed(stream[at:])
    frames += got
    assert problems == []
    assert frames == [_report(1), _report(2), _report(3)]
    assert reader.pending() == b""


def test_byte_by_byte() -> None:
    reader = fr.FrameReader()
    frames: list[bytes] = []
    for b in _report(5):
        frames += reader.feed(bytes((b,)))[0]
    assert frames == [_report(5)]


def test_wrong_crc_is_found_by_the_bulk_check() -> None:
    good = _report(1)
    bad = bytearray(_report(2))
    bad[20] ^= 0x01  # one bit flipped in the body
    other_length = sta.keep_alive(station=STATION, serial=3, sent=T0)
    frames, _ = fr.FrameReader().feed(good + bytes(bad) + other_length)
    assert len(frames) == 3
    assert fr.checksums_ok(frames).tolist() == [True, False, True]


def test_truncated_frame_waits_and_is_left_pending() -> None:
    f = _report(1)
    reader = fr.FrameReader()
    frames, problems = reader.feed(f[:-5])
    assert frames == []
    assert problems == []
    assert reader.pending() == f[:-5]


def test_wrong_length_field_is_a_problem_and_the_next_frame_survives() -> None:
    f = bytearray(_report(1))
    f[12] -= 2  # the length now ends the frame two bytes early: the end character is not there
    good = _report(2)
    frames, problems = fr.FrameReader().feed(bytes(f) + good)
    assert frames == [good]
    assert problems[0].reason == fr.Problem.BAD_FRAME
    assert "length field" in problems[0].detail


def test_garbage_before_a_frame_is_reported_and_skipped() -> None:
    good = _report(1)
    frames, problems = fr.FrameReader().feed(b"AT+CSQ\r\n" + good)
    assert frames == [good]
    assert len(problems) == 1
    assert problems[0].data == b"AT+CSQ\r\n"


def test_bad_start_character() -> None:
    f = bytearray(_report(1))
    f[13] = 0x99
    _, problems = fr.FrameReader().feed(bytes(f))
    assert problems[0].reason == fr.Problem.BAD_FRAME
    assert "STX" in problems[0].detail


def test_hex_text_stream() -> None:
    a, b = _report(1), _report(2)
    text = (a.hex().upper() + "\r\n" + b.hex()).encode()
    reader = fr.FrameReader()
    frames = reader.feed(text[:30])[0] + reader.feed(text[30:])[0]
    assert frames == [a, b]
    assert reader.text is True


def test_multi_packet_frames() -> None:
    body = bytes(range(200))
    packets = fr.split_packets(station=STATION, function=0x32, body=body, size=64)
    assert len(packets) == 4
    heads = [fr.header(p) for p in packets]
    assert [(h.start, h.packets, h.packet, h.end) for h in heads] == [
        (fr.SYN, 4, 1, fr.ETB),
        (fr.SYN, 4, 2, fr.ETB),
        (fr.SYN, 4, 3, fr.ETB),
        (fr.SYN, 4, 4, fr.ETX),
    ]
    assert b"".join(p[17:-3] for p in packets) == body
    assert fr.checksums_ok(packets).all()


def test_bcd() -> None:
    assert fr.bcd(1234, 2) == b"\x12\x34"
    assert fr.bcd(5, 3) == b"\x00\x00\x05"
    with pytest.raises(ValueError, match="does not fit"):
        fr.bcd(1000, 1)
