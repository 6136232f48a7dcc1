"""Situation feed benchmark: 200 websocket screens (one slow on purpose) on 10,000 devices at 20,000 msg/s.

Method. One Mosquitto on loopback. A publisher process writes 20,000 single-reading SenML messages a
second (QoS 1, raw MQTT packets so that the load generator costs little CPU), round-robin over 10,000
devices; each reading's time is the moment it is published. Four client processes hold the screens
(websockets asyncio clients). Everything runs on this one machine, so one clock serves all.

Latency, publish -> delivered, per (screen, reading): a screen receives a frame at ``arrival``; the
frame says when the server built it (``ts``), each reading when it was published. For a reading r in
frame f at screen c: ``arrival_c - r.ts = (arrival_c - f.ts) + (f.ts - r.ts)``. Every screen records
``arrival_c - f.ts`` per frame (a regex on the frame's first bytes: the screens would otherwise spend
the machine's CPU parsing 150 MB/s of JSON); two "probe" screens per process parse every frame and
record ``f.ts - r.ts`` for all its readings; the sums over all (screen, reading) pairs give the
distribution exactly. Merged frames (a screen that fell behind) are parsed by the screen itself.

Baseline, same run, same publisher, same screens (199): a minimal relay (a raw MQTT 3.1.1 QoS 0
subscriber reading many packets per recv, msgspec decode, latest per series in a dict, one
``websockets.broadcast`` per interval, the same wire format): what the hub costs beyond
decode-and-broadcast (QoS 1 with acks after a durable write, live state, rules, filters, replay,
per-screen queues). A first version used a paho subscriber, which reads one packet per select and
measured paho instead.

The hub runs as ``hub run`` does (uvicorn, websockets-sansio, no per-message deflate), with 6,000
cameras in its registry served by its own camera source (the patrol off: no streams are opened), in its
own process. Phases of 8 s alternate without and with the slow screen
(A B A B, each after 2 unmeasured seconds in which the slow screen connects, gets its snapshot, or
leaves: that is the cost of any new screen, not of a slow one); the slow screen reads one frame a second through a
4 KiB socket buffer and a one-frame client queue, so once the kernel's buffers are full the hub must
merge its frames or close it (4408; it then reconnects with ``since``). ``feed_snapshot_ms`` is
hello -> snapshot received and parsed, for a stream whose snapshot is not cached (the median of 5,
under the same load; the parse pauses this client's garbage collector, as a browser's JSON.parse
has none to pause). CPU shares of each process and the machine's load average are printed: other
work on the machine changes every figure here.

Prints: feed_clients, feed_p99_ms, feed_slow_client_effect_ms, feed_snapshot_ms, feed_baseline_p99_ms,
feed_p99_ratio (hub / baseline); details as # lines on stderr (``--verbose``: a per-second timeline).
``--load`` and ``--screens`` make smaller runs. Each run stops by itself in under 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker, free_port
from bench._feed_load import DEVICES, VENDOR, run_publisher, run_relay
from bench._feed_screens import collect, latency, run_screens, timeline

CAMERAS = 6_000
RATE = 20_000
SCREENS = 200
PROCESSES = 4
PROBES_PER_PROCESS = 2
PHASE_S = 8.0
BASELINE_S = 6.0
GAP_S = 2.0  # unmeasured before each phase: the slow screen connects (and gets its snapshot) here


# -- the hub --------------------------------------------------------------------------------------


def _area(i: int) -> str:
    return f"bench/district-{i % 16}/street-{(i // 16) % 10}"


def build_registry(path: Path) -> None:
    from devices.profiles import Device, DeviceProfile, MetricSpec, Vendor
    from devices.registry import Registry
    from video.cameras import Camera
    from video.registry import CameraRegistry

    reg = Registry(f"sqlite:///{path}")
    reg.put_vendors([Vendor(id=VENDOR, name="Benchmark vendor")])
    reg.put_profiles(
        [
            DeviceProfile(
                id="bench-senml",
                name="bench SenML level",
                type="bench_level",  # no shipped rule covers it: the run raises no alerts
                domain="water",
                metrics=(MetricSpec(name="water_level", unit="m", min=-5, max=60),),
                report_interval_s=60,
                codec={"codec": "senml"},
            )
        ]
    )
    reg.put_devices(
        [
            Device(
                id=f"d{i:06d}",
                vendor=VENDOR,
                profile="bench-senml",
                lat=31.0 + (i % 100) / 100,
                lon=121.0 + (i // 100) / 100,
                area=_area(i),
            )
            for i in range(DEVICES)
        ]
    )
    reg.engine.dispose()
    # The cameras go where the hub's video package keeps them (the registry's database).
    cameras = CameraRegistry(f"sqlite:///{path}")
    cameras.put(
        [
            Camera(
                id=f"cam-{i:05d}",
                url=f"rtsp://127.0.0.1:9/cam-{i:05d}",  # never opened: the patrol is off
                name=f"Camera {i}",
                department="traffic-police" if i % 3 else "water-authority",
                lat=31.0 + (i % 100) / 100,
                lon=121.0 + (i // 100) / 100,
                heading=float(i * 7 % 360),
                fov=60.0,
                area=_area(i),
            )
            for i in range(CAMERAS)
        ]
    )
    cameras.dispose()


def run_hub(port: int, http_port: int, data: str, interval_ms: int) -> None:
    import uvicorn

    from hub.app import create_app
    from hub.settings import FeedSettings, HttpSettings, HubSettings, MqttSettings
    from video.settings import VideoSettings

    settings = HubSettings(
        data_dir=Path(data),
        mqtt=MqttSettings(embedded=False, port=port, auth=False, client_id="bench-feed-hub"),
        http=HttpSettings(port=http_port),
        feed=FeedSettings(interval_ms=interval_ms),
        video=VideoSettings(patrol=False),
    )
    uvicorn.run(
        # The collector as `hub run` sets it (hub/memory.py): without it full collections
        # stalled the loop for 36-200 ms a few times a run, which this bench then measured.
        create_app(settings, tune_gc=True),
        host="127.0.0.1",
        port=http_port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )


# -- the orchestration ----------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Room:
    """The screen processes of one run: started together, ready together, stopped together."""

    def __init__(
        self, url: str, token: str, ctl: Path, tag: str, screens: int, *, slow: bool
    ) -> None:
        self.ctl, self.tag = ctl, tag
        per = screens // PROCESSES
        self.procs: list[subprocess.Popen[bytes]] = []
        self.firsts: list[int] = []
        first = 0
        for p in range(PROCESSES):
            n = per - 1 if p == 0 else per  # process 0 also holds the slow screen (200 in all)
            args = [
                "--role", "screens", "--url", url, "--token", token, "--n", str(n),
                "--first", str(first), "--probes", str(PROBES_PER_PROCESS),
                "--out", str(ctl / f"{tag}-{p}.json"), "--ctl", str(ctl), "--tag", tag,
            ]  # fmt: skip
            if p == 0 and slow:
                args += ["--slow", f"slow-{tag}.json"]
            self.procs.append(_spawn(*args))
            self.firsts.append(first)
            first += n

    def wait_ready(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while not all((self.ctl / f"ready-{self.tag}-{f}").exists() for f in self.firsts):
            if time.monotonic() - started > timeout:
                raise SystemExit(f"{self.tag}: screens not connected after {timeout:.0f} s")
            if any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"{self.tag}: a screen process died")
            time.sleep(0.1)
        return time.monotonic() - started

    def slow_windows(self, windows: list[tuple[float, float]]) -> None:
        path = self.ctl / f"slow-{self.tag}.json"
        path.with_suffix(".tmp").write_text(json.dumps(windows))
        path.with_suffix(".tmp").rename(path)

    def stop(self) -> dict[str, Any]:
        (self.ctl / f"stop-{self.tag}").touch()
        for p in self.procs:
            p.wait(60)
        return collect(self.ctl, self.tag, PROCESSES)


def _wait_port(port: int, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} in {timeout:.0f} s")


def _wait_http(url: str, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).json().get("broker_connected"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("the hub did not start")


def _parse(raw: bytes) -> dict[str, Any]:
    """A frame's JSON, with this process's garbage collector paused.

    A snapshot decodes into some 100,000 objects, and every few decodes that set off a full
    collection of this process: 116-124 ms instead of 19-24 ms, measured on one 3 MB snapshot. A
    browser's ``JSON.parse`` has no such pause, and it is no cost of the hub's.
    """
    gc.disable()
    try:
        return msgspec.json.decode(raw, type=dict[str, Any])
    finally:
        gc.enable()


async def _snapshots(
    ws_url: str, token: str, n: int
) -> tuple[list[float], list[tuple[float, float]]]:
    """Hello -> snapshot parsed, on streams with no cached snapshot (a new filter each time).

    Returns the times (ms) and, for each, how they split into hello -> received and the parse.
    """
    from websockets.asyncio.client import connect

    times: list[float] = []
    parts: list[tuple[float, float]] = []
    levels = ["info", "blue", "yellow", "orange", "red"]
    for k in range(n):
        filt = {"levels": levels[: k + 1], "types": ["bench_level", "camera"]}
        async with connect(ws_url, max_size=None, compression=None) as ws:
            t = time.perf_counter()
            await ws.send(json.dumps({"type": "hello", "token": token, "filter": filt}))
            while True:
                raw = await ws.recv(decode=False)
                received = time.perf_counter()
                body = _parse(raw)
                if body["type"] == "snapshot":
                    break
            times.append((time.perf_counter() - t) * 1000)
            parts.append(((received - t) * 1000, (time.perf_counter() - received) * 1000))
            if len(body["devices"]) != DEVICES or len(body["cameras"]) != CAMERAS:
                raise SystemExit(
                    f"snapshot had {len(body['devices'])} devices, {len(body['cameras'])} cameras"
                )
    return times, parts


async def _settle(ws_url: str, token: str, limit_s: float) -> tuple[float, float]:
    """Wait until the hub is current again after the screens' connect storm: a small stream's
    newest reading is under 300 ms old in two frames a second apart (or ``limit_s`` passed).

    Returns the seconds waited and the last lag seen (ms).
    """
    from websockets.asyncio.client import connect

    started = time.monotonic()
    filt = {"area": _area(0)}  # one street: a small stream of its own
    calm, lag = 0, math.nan
    async with connect(ws_url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "filter": filt}))
        while time.monotonic() - started < limit_s and calm < 2:
            body = msgspec.json.decode(await ws.recv(decode=False))
            if body["type"] != "delta" or not body["readings"]:
                continue
            lag = time.time() * 1000 - max(r[3] for r in body["readings"])
            calm = calm + 1 if lag < 300 else 0
            if calm < 2:
                await asyncio.sleep(1.0)
                while True:  # skip what queued meanwhile: only the current lag matters
                    try:
                        await asyncio.wait_for(ws.recv(decode=False), 0.001)
                    except TimeoutError:
                        break
    return time.monotonic() - started, lag


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval-ms", type=int, help="feed interval (default: the hub's)")
    parser.add_argument("--load", type=int, default=RATE, help="messages a second (smoke runs)")
    parser.add_argument("--screens", type=int, default=SCREENS, help="screens (smoke runs)")
    parser.add_argument("--verbose", action="store_true", help="print a per-second timeline")
    parser.add_argument(
        "--role", choices=["publisher", "relay", "hub", "screens"], help=argparse.SUPPRESS
    )
    for name in ("port", "ws-port", "http-port", "n", "first", "probes", "rate"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    for name in ("data", "url", "token", "out", "slow", "ctl", "tag"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publisher":
        run_publisher(args.port, args.rate, args.seconds)
    elif args.role == "relay":
        run_relay(args.port, args.ws_port, args.interval_ms)
    elif args.role == "hub":
        run_hub(args.port, args.http_port, args.data, args.interval_ms)
    elif args.role == "screens":
        run_screens(args)
    else:
        if args.interval_ms is None:
            from hub.settings import FeedSettings

            args.interval_ms = FeedSettings().interval_ms
        orchestrate(args.interval_ms, args.load, args.screens, verbose=args.verbose)


def orchestrate(interval_ms: int, rate: int, screens: int, *, verbose: bool = False) -> None:
    import httpx
    import psutil

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp_, BenchBroker() as broker:
        tmp = Path(tmp_)
        data = tmp / "hub"
        data.mkdir()
        build_registry(data / "hub.db")
        publisher = _spawn(
            "--role", "publisher", "--port", str(broker.port), "--rate", str(rate),
            "--seconds", "170",
        )  # fmt: skip
        procs: list[subprocess.Popen[bytes]] = [publisher]
        try:
            # Baseline: the relay and 199 screens; 2 s to settle, 6 s measured.
            ws_port = free_port()
            relay = _spawn(
                "--role", "relay", "--port", str(broker.port), "--ws-port", str(ws_port),
                "--interval-ms", str(interval_ms),
            )  # fmt: skip
            procs.append(relay)
            _wait_port(ws_port, "the relay")
            room = Room(f"ws://127.0.0.1:{ws_port}/", "-", tmp, "base", screens, slow=False)
            procs += room.procs
            room.wait_ready()
            t0 = time.time() + 2
            time.sleep(2 + BASELINE_S)
            base = latency(room.stop(), [(t0, t0 + BASELINE_S)])
            _stop(relay)
            print(f"# baseline relay: {_fmt(base)}", file=sys.stderr)

            # The hub: A B A B phases of 8 s after the screens connected (B: the slow one on),
            # each after an unmeasured gap of 2 s in which the slow screen connects or leaves: its
            # snapshot is the cost of any new screen, not of a slow one.
            http_port = free_port()
            hub = _spawn(
                "--role", "hub", "--port", str(broker.port), "--http-port", str(http_port),
                "--data", str(data), "--interval-ms", str(interval_ms),
            )  # fmt: skip
            procs.append(hub)
            url = f"http://127.0.0.1:{http_port}"
            _wait_http(url)
            password = (data / "initial-admin-password").read_text().strip()
            token = httpx.post(
                url + "/api/v1/auth/login", json={"username": "admin", "password": password}
            ).json()["access_token"]
            room = Room(
                f"ws://127.0.0.1:{http_port}/ws/situation", token, tmp, "hub", screens, slow=True
            )
            procs += room.procs
            connect_s = room.wait_ready()
            settle_s, lag_ms = asyncio.run(
                _settle(f"ws://127.0.0.1:{http_port}/ws/situation", token, 10)
            )
            t0 = time.time() + 1
            step = GAP_S + PHASE_S
            phases = [(t0 + i * step + GAP_S, t0 + (i + 1) * step) for i in range(4)]
            room.slow_windows([(a - GAP_S, b) for a, b in (phases[1], phases[3])])
            watched = {
                "hub": [psutil.Process(hub.pid)],
                "screens": [psutil.Process(p.pid) for p in room.procs],
                "publisher": [psutil.Process(publisher.pid)],
                "mosquitto": [psutil.Process(broker.proc.pid)] if broker.proc else [],
            }
            time.sleep(max(0.0, t0 - time.time()))
            for ps in watched.values():
                for x in ps:
                    x.cpu_percent()
            time.sleep(max(0.0, phases[-1][1] - time.time()))
            cpu = {k: sum(x.cpu_percent() for x in ps) for k, ps in watched.items()}
            load = os.getloadavg()[0]
            snaps, snap_parts = asyncio.run(
                _snapshots(f"ws://127.0.0.1:{http_port}/ws/situation", token, 5)
            )
            status = httpx.get(
                url + "/api/v1/feed/status", headers={"Authorization": f"Bearer {token}"}
            ).json()
            run = room.stop()
        finally:
            for p in reversed(procs):
                _stop(p)

    quiet = [phases[0], phases[2]]
    noisy = [phases[1], phases[3]]
    a, b, both = latency(run, quiet), latency(run, noisy), latency(run, quiet + noisy)
    if verbose:
        print(
            f"# per second, p99 publish->frame / frame->delivered (ms), phases of {PHASE_S:.0f} s "
            f"after gaps of {GAP_S:.0f} s, A B A B: {timeline(run, phases[0][0] - GAP_S, phases[-1][1])}",
            file=sys.stderr,
        )
    print(f"# hub without the slow screen: {_fmt(a)}", file=sys.stderr)
    print(f"# hub with the slow screen:    {_fmt(b)}", file=sys.stderr)
    print(
        f"# {screens - 1} screens connected and had their snapshot in {connect_s:.1f} s; then "
        f"{settle_s:.1f} s for the hub to catch up (newest reading {lag_ms:.0f} ms old when the "
        f"phases began); slow screen: "
        f"{run['slow_frames']} frames read, {run['slow_merged']} of them merged; closes seen by "
        f"screens: {run['closes']}; snapshots received: {run['snapshots']}",
        file=sys.stderr,
    )
    print(
        f"# CPU over the phases (% of one core): "
        f"{', '.join(f'{k} {v:.0f}' for k, v in cpu.items())}; machine load average {load:.1f} "
        f"on {os.cpu_count()} cores",
        file=sys.stderr,
    )
    print(
        f"# feed: frames "
        f"{status['frames']}, closed too slow {status['closed_slow']}, last tick "
        f"{status['last_tick_ms']} ms; interval {interval_ms} ms",
        file=sys.stderr,
    )
    print(
        f"# snapshot (10,000 devices + 6,000 cameras) hello->parsed ms: "
        f"{', '.join(f'{s:.0f}' for s in snaps)} (received + parsed: "
        f"{', '.join(f'{r:.0f}+{p:.0f}' for r, p in snap_parts)}); server build of the last "
        f"{status['last_snapshot_ms']} ms; run took {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    print(f"# load {rate} msg/s over {DEVICES} devices", file=sys.stderr)
    print(f"feed_clients={screens}")
    print(f"feed_p99_ms={both['p99']:.1f}")
    print(f"feed_slow_client_effect_ms={b['p99'] - a['p99']:.1f}")
    print(f"feed_snapshot_ms={float(np.median(snaps)):.0f}")
    print(f"feed_baseline_p99_ms={base['p99']:.1f}")
    print(f"feed_p99_ratio={both['p99'] / base['p99']:.2f}")


if __name__ == "__main__":
    main()
