"""The SL 651 TCP server with real sockets, a real store and real dead letters: what stations see back."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from ingest.consumer import Taken
from ingest.deadletter import DeadLetterQuery, DeadLetterStore
from ingest.sl651 import frame as fr
from ingest.sl651 import station as sta
from ingest.sl651.server import Sl651Server
from ingest.sl651.settings import Sl651Settings
from ingest.store.filestore import FileStore

ZONE = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 6, 1, 8, 0)
NOW = T0.replace(tzinfo=ZONE).timestamp() + 90  # the hub's clock: 08:01:30 local
RIVER, RAIN = "0012345678", "0000000101"


class StoreSubmit:
    """Stores what the server submits in a real store and dead-letter table (what the pipeline does)."""

    def __init__(self, store: FileStore, dead: DeadLetterStore) -> None:
        self.store, self.dead = store, dead
        self.stored = 0
        self.submits = 0

    async def __call__(self, taken: Taken) -> None:
        await asyncio.to_thread(self._write, taken)

    def _write(self, taken: Taken) -> None:
        self.submits += 1
        if len(taken.batch):
            self.stored += self.store.write(taken.batch)
        self.dead.write(taken.rejections)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    load_shipped(reg)
    reg.put_devices(
        [
            Device(id=RIVER, vendor="hydrotel", profile="sl651-river"),
            Device(id=RAIN, vendor="hydrotel", profile="sl651-rain"),
        ]
    )
    yield reg
    reg.engine.dispose()


class Running:
    def __init__(self, server: Sl651Server, submit: StoreSubmit, dead: DeadLetterStore) -> None:
        self.server, self.submit, self.dead = server, submit, dead

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.server.port)

    def reasons(self) -> list[str]:
        items, _ = self.dead.list(DeadLetterQuery(limit=1000))
        return sorted(d.reason for d in items)


@pytest.fixture
async def running(registry: Registry, tmp_path: Path) -> AsyncIterator[Running]:
    store = FileStore(tmp_path / "readings.duckdb")
    dead = DeadLetterStore(f"sqlite:///{tmp_path / 'dead.db'}")
    submit = StoreSubmit(store, dead)
    server = Sl651Server(
        Sl651Settings(enabled=True, port=0, flush_interval_s=0.01),
        registry,
        submit,
        clock=lambda: NOW,
    )
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.ready.wait(), 5)
    try:
        yield Running(server, submit, dead)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.close()
        dead.engine.dispose()


def timed(station: str, serial: int, value: float, observed: dt.datetime = T0) -> bytes:
    return sta.report(
        station=station,
        function=fr.Function.TIMED,
        serial=serial,
        observed=observed,
        readings=[sta.Reading(0x20, value, 1, 3)],
        centre=0x07,
        password=0x1234,
    )


def expected_confirmation(station: str, function: int, serial: int, end: int = fr.EOT) -> bytes:
    """Written out from the standard's downlink layout, not with `frame.build`."""
    body = serial.to_bytes(2, "big") + bytes.fromhex("260601080130")  # the hub's send time
    head = (
        b"\x7e\x7e"
        + bytes.fromhex(station)  # downlink: station first
        + b"\x07"  # then the centre
        + b"\x12\x34"  # the station's password, echoed
        + bytes((function,))
        + bytes((0x80, len(body)))  # direction 8 (down), length of the body
        + b"\x02"
    )
    frame = head + body + bytes((end,))
    return frame + fr.crc16(frame).to_bytes(2, "big")


async def read_frames(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    got: list[bytes] = []
    splitter = fr.FrameReader()
    while len(got) < n:
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "the server closed the connection"
        got += splitter.feed(data)[0]
    return got


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def wait_for(cond: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not cond():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_report_is_stored_then_confirmed(running: Running) -> None:
    reader, writer = await running.connect()
    writer.write(timed(RIVER, 11, 2.5))
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RIVER, fr.Function.TIMED, 11)
    assert running.submit.stored == 1  # durable before the confirmation left
    await close(writer)


@pytest.mark.parametrize(
    "function",
    [
        fr.Function.TEST,
        fr.Function.EVEN_INTERVAL,
        fr.Function.TIMED,
        fr.Function.ADDITION,
        fr.Function.HOURLY,
    ],
    ids=hex,
)
async def test_each_report_type_is_confirmed(running: Running, function: int) -> None:
    reader, writer = await running.connect()
    f = sta.report(
        station=RIVER,
        function=function,
        serial=3,
        observed=T0,
        readings=[sta.Reading(0x39, 1.5, 2, 3)],
        centre=0x07,
    )
    writer.write(f)
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RIVER, function, 3)
    await close(writer)


async def test_keep_alive_gets_no_answer(running: Running) -> None:
    reader, writer = await running.connect()
    writer.write(sta.keep_alive(station=RIVER, serial=1, sent=T0, centre=0x07))
    await wait_for(lambda: running.server.counters.keep_alives == 1)
    writer.write(timed(RIVER, 2, 1.0))  # the next reply is the report's: nothing came before it
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RIVER, fr.Function.TIMED, 2)
    await close(writer)


async def test_two_frames_in_one_write_and_one_split_across_writes(running: Running) -> None:
    reader, writer = await running.connect()
    a, b, c = (
        timed(RIVER, 1, 1.0),
        timed(RIVER, 2, 2.0, T0 + dt.timedelta(minutes=5)),
        timed(RAIN, 3, 3.0),
    )
    writer.write(a + b + c[:9])
    await writer.drain()
    await asyncio.sleep(0.05)  # the server flushes in between: c waits, incomplete
    writer.write(c[9:])
    replies = await read_frames(reader, 3)
    assert replies == [
        expected_confirmation(RIVER, 0x32, 1),
        expected_confirmation(RIVER, 0x32, 2),
        expected_confirmation(RAIN, 0x32, 3),
    ]
    assert running.submit.stored == 3
    await close(writer)


async def test_wrong_crc_is_a_dead_letter_and_not_confirmed(running: Running) -> None:
    reader, writer = await running.connect()
    bad = bytearray(timed(RIVER, 1, 1.0))
    bad[-1] ^= 0x5A
    writer.write(bytes(bad) + timed(RIVER, 2, 2.0))
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RIVER, 0x32, 2)  # only the good one
    assert running.reasons() == ["bad_checksum"]
    items, _ = running.dead.list(DeadLetterQuery())
    assert items[0].device == RIVER
    assert items[0].vendor == "hydrotel"  # the station's vendor sees it in its own rejects
    assert "CRC" in items[0].detail
    assert items[0].topic == f"sl651/{RIVER}"
    await close(writer)


async def test_truncated_frame_when_the_station_hangs_up(running: Running) -> None:
    _, writer = await running.connect()
    writer.write(timed(RIVER, 1, 1.0)[:20])
    await writer.drain()
    await close(writer)
    await wait_for(lambda: running.reasons() == ["truncated"])


async def test_resent_report_is_stored_once_and_confirmed_twice(running: Running) -> None:
    reader, writer = await running.connect()
    f = timed(RIVER, 5, 7.5)
    writer.write(f)
    await read_frames(reader, 1)
    writer.write(f)  # the station did not see the confirmation and sends again
    [again] = await read_frames(reader, 1)
    assert again == expected_confirmation(RIVER, 0x32, 5)
    assert running.submit.stored == 1
    assert running.submit.store.count() == 1
    await close(writer)


async def test_multi_packet_message_confirmed_once_complete(running: Running) -> None:
    # 19 readings, each under its own observation time (F0 F0), so none repeats another's key.
    elements = b"".join(
        bytes((0xF0, 0xF0))
        + sta.bcd_minutes(T0 - dt.timedelta(minutes=k))
        + sta.element(0x20, k, 1, 3)
        for k in range(1, 20)
    )
    body = sta.report_body(station=RAIN, serial=42, sent=T0, observed=T0, elements=elements)
    packets = fr.split_packets(
        station=RAIN, function=fr.Function.TIMED, body=body, size=32, centre=0x07, password=0x1234
    )
    reader, writer = await running.connect()
    writer.write(b"".join(packets[:-1]))
    # Each packet but the last is acknowledged at once: ACK, its count and number, the serial.
    acks = await read_frames(reader, len(packets) - 1)
    for k, ack in enumerate(acks, start=1):
        head = fr.header(ack)
        assert head.downlink
        assert (head.start, head.end, head.packets, head.packet) == (
            fr.SYN,
            fr.ACK,
            len(packets),
            k,
        )
        assert ack[17:19] == (42).to_bytes(2, "big")
        assert fr.crc16(ack[:-2]) == int.from_bytes(ack[-2:], "big")
    assert running.server.counters.confirmations == 0
    assert running.submit.stored == 0  # nothing stored before the message is whole
    writer.write(packets[-1])
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RAIN, 0x32, 42)
    assert running.submit.stored == 19
    await close(writer)


async def test_unknown_station_is_dead_lettered(running: Running) -> None:
    reader, writer = await running.connect()
    writer.write(timed("0099999999", 1, 1.0))
    await read_frames(reader, 1)  # taken (as a dead letter): confirmed, so it is not sent again
    assert running.reasons() == ["unknown_device"]
    assert running.submit.stored == 0
    await close(writer)


async def test_keep_online_ends_with_esc(registry: Registry, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    dead = DeadLetterStore(f"sqlite:///{tmp_path / 'd.db'}")
    server = Sl651Server(
        Sl651Settings(enabled=True, port=0, keep_online=True),
        registry,
        StoreSubmit(store, dead),
        clock=lambda: NOW,
    )
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.ready.wait(), 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(timed(RIVER, 8, 1.0))
    [reply] = await read_frames(reader, 1)
    assert reply == expected_confirmation(RIVER, 0x32, 8, end=fr.ESC)
    await close(writer)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.close()
    dead.engine.dispose()


async def test_back_pressure_pauses_and_resumes_reading(registry: Registry, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    dead = DeadLetterStore(f"sqlite:///{tmp_path / 'd.db'}")
    submit = StoreSubmit(store, dead)
    server = Sl651Server(
        Sl651Settings(enabled=True, port=0, max_pending_frames=2),
        registry,
        submit,
        clock=lambda: NOW,
    )
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.ready.wait(), 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    frames = [timed(RIVER, k, k / 10, T0 + dt.timedelta(minutes=k)) for k in range(1, 31)]
    for f in frames:  # one write each: the server pauses this socket every second frame
        writer.write(f)
    replies = await read_frames(reader, 30)
    assert [int.from_bytes(r[14:16], "big") for r in replies] == list(range(1, 31))
    assert submit.stored == 30
    await close(writer)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.close()
    dead.engine.dispose()


async def test_idle_station_is_disconnected(registry: Registry, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    dead = DeadLetterStore(f"sqlite:///{tmp_path / 'd.db'}")
    server = Sl651Server(
        Sl651Settings(enabled=True, port=0, idle_timeout_s=0.2),
        registry,
        StoreSubmit(store, dead),
        clock=lambda: NOW,
    )
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.ready.wait(), 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed by the hub
    assert server.counters.open_connections == 0
    await close(writer)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.close()
    dead.engine.dispose()
