"""Sources benchmark: SL 651-2014 stations over TCP, from frame sent to readings durable and confirmed.

Method. 1,000 stations (one TCP connection each, all open at once) each send reports one after
another, every one waiting for its confirmation before the next, as a station in mode M2 does. Each
report is a timed report (32H) with three elements (water level, rainfall, supply voltage). The clock
runs from the first frame sent to the last confirmation read. Two servers take the same frames in the
same run, each in its own process:

* baseline: a TCP server that only cuts the stream into frames of the known length and answers each
  with a canned 25-byte confirmation (what the network and asyncio cost, with no parsing at all);
* hub: the hub's SL 651 server (CRC check, multi-packet join, element decoding, all in bulk per flush)
  feeding the hub's real ingest pipeline (range flags, the DuckDB file store with its
  (device, metric, ts) key, dead letters) and confirming each report once it is durable.

Prints name=value lines: sl651_frames_s (hub), sl651_baseline_frames_s, sl651_ratio,
sl651_readings_s, and checks that every reading was stored exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker

STATIONS = 1000
T0 = dt.datetime(2026, 6, 1, 0, 0)
REPLY = 25  # a confirmation: 14 header + serial 2 + send time 6 + end 1 + CRC 2
READINGS_PER_FRAME = 3
T = TypeVar("T")


def station_id(i: int) -> str:
    return f"{61_000_000 + i:010d}"


def frames_of(i: int, count: int) -> list[bytes]:
    from ingest.sl651 import station as sta

    sid = station_id(i)
    return [
        sta.report(
            station=sid,
            function=0x32,
            serial=k + 1,
            observed=T0 + dt.timedelta(minutes=k),
            category=sta.RIVER,
            readings=[
                sta.Reading(0x39, 2.0 + (i % 100) / 100 + k / 1000, 3, 4),
                sta.Reading(0x20, (k % 10) / 10, 1, 3),
                sta.Reading(0x38, 12.5, 2, 2),
            ],
        )
        for k in range(count)
    ]


# -- the servers (child processes) ----------------------------------------------------------------


def run_baseline(frame_size: int) -> None:
    """Counts frames of a fixed size and answers each with a canned confirmation."""
    reply = bytes(REPLY)

    class Counter(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.held = 0

        def data_received(self, data: bytes) -> None:
            self.held += len(data)
            n, self.held = divmod(self.held, frame_size)
            if n:
                self.t.write(reply * n)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            Counter, "127.0.0.1", 0, backlog=4096
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()
        print(json.dumps({}), flush=True)

    _run(main())


def run_hub(broker_port: int, registry_path: str, store_dir: str) -> None:
    """The hub's SL 651 server on the hub's ingest pipeline, until stdin closes."""
    from devices.registry import Registry
    from ingest.deadletter import DeadLetterStore
    from ingest.mqtt import MqttOptions
    from ingest.pipeline import IngestPipeline
    from ingest.sl651.server import Sl651Server
    from ingest.sl651.settings import Sl651Settings
    from ingest.store.filestore import FileStore

    registry = Registry(f"sqlite:///{registry_path}")
    store = FileStore(Path(store_dir) / "readings.duckdb")
    dead = DeadLetterStore(f"sqlite:///{Path(store_dir) / 'dead.db'}")
    from hub.settings import IngestSettings

    pipeline = IngestPipeline(
        registry,
        store,
        dead,
        MqttOptions(port=broker_port, client_id="bench-sl651"),
        flush_interval=IngestSettings().flush_interval_s,  # the hub's default
    )
    server = Sl651Server(Sl651Settings(enabled=True, port=0), registry, pipeline.submit)

    cpu: list[float] = []

    async def main() -> None:
        tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(server.run())]
        await server.ready.wait()
        print(server.port, flush=True)
        cpu.append(time.process_time())
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        cpu.append(time.process_time())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    _run(main())
    c = server.counters
    result = {
        "stored": store.count(),
        "dead_letters": c.dead_letters,
        "frames": c.frames,
        "confirmations": c.confirmations,
        "flushes": c.flushes,
        "cpu_s": cpu[1] - cpu[0],
    }
    store.close()
    print(json.dumps(result), flush=True)


# -- the stations (this process) ------------------------------------------------------------------


class _Station(asyncio.Protocol):
    """One station: sends its next report when the confirmation of the last has arrived."""

    def __init__(self, frames: list[bytes], done: asyncio.Future[None]) -> None:
        self.frames, self.done = frames, done
        self.sent = 0
        self.held = 0
        self.t = cast("asyncio.Transport", None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast("asyncio.Transport", transport)

    def go(self) -> None:
        self.t.write(self.frames[0])
        self.sent = 1

    def data_received(self, data: bytes) -> None:
        self.held += len(data)
        if self.held < REPLY * self.sent:
            return
        if self.sent == len(self.frames):
            self.t.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.t.write(self.frames[self.sent])
        self.sent += 1


def _same(station: _Station) -> _Station:
    return station


async def _drive(port: int, per_station: list[list[bytes]]) -> float:
    loop = asyncio.get_running_loop()
    stations: list[_Station] = []
    for fs in per_station:
        done: asyncio.Future[None] = loop.create_future()
        station = _Station(fs, done)
        await loop.create_connection(functools.partial(_same, station), "127.0.0.1", port)
        stations.append(station)
    t = time.perf_counter()
    for s in stations:  # every connection is open before the clock starts
        s.go()
    await asyncio.gather(*(s.done for s in stations))
    return time.perf_counter() - t


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (uvicorn serves the hub on it), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def drive(cmd: list[str], per_station: list[list[bytes]]) -> tuple[float, dict[str, float]]:
    """Start a server child, run every station against it, stop it; seconds and its report."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout is None or proc.stdin is None:
            raise SystemExit("the server's pipes did not open")
        port = int(proc.stdout.readline())
        seconds = _run(_drive(port, per_station))
        proc.stdin.close()
        report = json.loads(proc.stdout.read().strip().splitlines()[-1])
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return seconds, report


def _registry(path: Path) -> None:
    from devices.loader import load_shipped
    from devices.profiles import Device
    from devices.registry import Registry

    reg = Registry(f"sqlite:///{path}")
    load_shipped(reg)
    reg.put_devices(
        [
            Device(id=station_id(i), vendor="hydrotel", profile="sl651-river")
            for i in range(STATIONS)
        ]
    )
    reg.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=20, help="reports per station")
    parser.add_argument("--role", choices=["baseline", "hub"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "baseline":
        run_baseline(args.size)
        return
    if args.role == "hub":
        run_hub(args.port, args.registry, args.store_dir)
        return

    per_station = [frames_of(i, args.frames) for i in range(STATIONS)]
    sizes = {len(f) for fs in per_station for f in fs}
    if len(sizes) != 1:
        raise SystemExit(f"frames differ in size {sizes}: the baseline needs one size")
    total = STATIONS * args.frames
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp, BenchBroker() as broker:
        reg_path = Path(tmp) / "registry.db"
        _registry(reg_path)
        me = [sys.executable, __file__]
        base_s, _ = drive([*me, "--role", "baseline", "--size", str(sizes.pop())], per_station)
        hub_s, hub = drive(
            [
                *me,
                "--role",
                "hub",
                "--port",
                str(broker.port),
                "--registry",
                str(reg_path),
                "--store-dir",
                tmp,
            ],
            per_station,
        )
    expected = total * READINGS_PER_FRAME
    if hub["stored"] != expected or hub["dead_letters"]:
        raise SystemExit(
            f"hub stored {hub['stored']} of {expected} readings, {hub['dead_letters']} dead letters"
        )
    baseline, rate = total / base_s, total / hub_s
    print(f"sl651_baseline_frames_s={baseline:.0f}")
    print(f"sl651_frames_s={rate:.0f}")
    print(f"sl651_ratio={rate / baseline:.2f}")
    print(f"sl651_readings_s={expected / hub_s:.0f}")
    print(f"sl651_hub_cpu_us_per_frame={1e6 * hub['cpu_s'] / total:.0f}")
    print(
        f"# {STATIONS} stations x {args.frames} reports ({total} frames, {expected} readings): "
        f"hub {hub_s:.2f} s in {hub['flushes']} flushes, baseline {base_s:.2f} s; "
        f"stored {hub['stored']} once each",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
