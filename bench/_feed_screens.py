"""The feed benchmark's screens (websocket clients in their own processes) and what their records say.

See bench/feed.py for the method: every screen records when each frame arrived and when the server
built it; probe screens also record, per frame, how old each reading was when the frame was built.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

PREFIX = re.compile(rb'\{"type":"(delta|snapshot)","seq":(\d+)(?:,"first_seq":(\d+))?,"ts":(\d+)')
# Latency histogram edges: 0.25 ms to 2 s, then 10 ms to 5 min (an overloaded hub falls far behind).
BINS = np.concatenate([np.arange(-50.0, 2_000.0, 0.25), np.arange(2_000.0, 300_000.0, 10.0)])


class ProbeFrame(msgspec.Struct):
    ts: int
    readings: list[tuple[str, str, float, int]]


class Screens:
    """Records of one client process."""

    def __init__(self, n: int) -> None:
        self.frames: list[tuple[int, int, float, int]] = []  # client, seq, arrival ms, frame ts
        self.offsets: dict[int, list[int]] = {}  # seq -> frame ts - reading ts (probes)
        self.direct: list[tuple[float, list[float]]] = []  # merged frames: arrival, latencies
        self.closes: dict[str, int] = {}
        self.slow_frames = 0
        self.slow_merged = 0
        self.snapshots = 0
        self.waiting = set(range(n))  # screens that have not had a frame yet
        self._decoder = msgspec.json.Decoder(ProbeFrame)

    def take(self, cid: int, data: bytes, probe: bool) -> int | None:
        arrival = time.time() * 1000
        self.waiting.discard(cid)
        m = PREFIX.match(data)
        if m is None:
            return None
        seq = int(m.group(2))
        if m.group(1) == b"snapshot":
            self.snapshots += 1
            return seq
        frame_ts = int(m.group(4))
        if m.group(3) is not None:  # merged: this screen's own readings set
            f = self._decoder.decode(data)
            self.direct.append((arrival, [arrival - r[3] for r in f.readings]))
            return seq
        self.frames.append((cid, seq, arrival, frame_ts))
        if probe and seq not in self.offsets:
            f = self._decoder.decode(data)
            self.offsets[seq] = [f.ts - r[3] for r in f.readings]
        return seq


async def _screen(url: str, hello: dict[str, Any], cid: int, probe: bool, rec: Screens) -> None:
    """A screen that reads everything, reconnecting with ``since`` if the server closes it."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    since = None
    while True:
        try:
            async with connect(
                url, max_size=None, compression=None, open_timeout=120, ping_interval=None
            ) as ws:
                await ws.send(json.dumps({**hello, "since": since}))
                while True:
                    since = rec.take(cid, await ws.recv(decode=False), probe) or since
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code if exc.rcvd else "none")
            rec.closes[code] = rec.closes.get(code, 0) + 1


async def _slow_screen(
    url: str, hello: dict[str, Any], windows: asyncio.Future[list[list[float]]], rec: Screens
) -> None:
    """Connected only during the windows the orchestrator writes; reads one frame a second
    through a 4 KiB socket buffer (and a client queue of one frame)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    for start, stop in await windows:
        await asyncio.sleep(max(0.0, start - time.time()))
        since = None
        while time.time() < stop:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, _addr(url))
            try:
                async with connect(
                    url, sock=sock, max_size=None, compression=None, max_queue=1, ping_interval=None
                ) as ws:
                    await ws.send(json.dumps({**hello, "since": since}))
                    while (left := stop - time.time()) > 0:
                        data = await asyncio.wait_for(ws.recv(decode=False), left)
                        m = PREFIX.match(data)
                        rec.slow_frames += 1
                        if m is not None:
                            since = int(m.group(2))
                            rec.slow_merged += m.group(3) is not None
                        await asyncio.sleep(min(1.0, max(0.0, stop - time.time())))
            except ConnectionClosed as exc:
                code = "slow-" + str(exc.rcvd.code if exc.rcvd else "none")
                rec.closes[code] = rec.closes.get(code, 0) + 1
            except TimeoutError:
                break


def _addr(url: str) -> tuple[str, int]:
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def _exists(path: Path) -> bool:
    return path.exists()


def run_screens(args: argparse.Namespace) -> None:
    """``n`` screens; "ready" once each had a frame; they stop when the stop file appears."""
    hello = {"type": "hello", "token": args.token, "filter": None}
    rec = Screens(args.n)
    ctl = Path(args.ctl)

    async def main() -> None:
        tasks = [
            asyncio.create_task(_screen(args.url, hello, args.first + i, i < args.probes, rec))
            for i in range(args.n)
        ]
        windows: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        if args.slow:
            tasks.append(asyncio.create_task(_slow_screen(args.url, hello, windows, rec)))
        ready = False
        while not _exists(ctl / f"stop-{args.tag}"):
            if not ready and not rec.waiting:
                (ctl / f"ready-{args.tag}-{args.first}").touch()
                ready = True
            if args.slow and not windows.done() and _exists(ctl / args.slow):
                windows.set_result(json.loads((ctl / args.slow).read_text()))
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    rec.waiting = set(range(args.first, args.first + args.n))
    asyncio.run(main())
    Path(args.out).write_bytes(
        msgspec.json.encode(
            {
                "frames": rec.frames,
                "offsets": rec.offsets,
                "direct": rec.direct,
                "closes": rec.closes,
                "slow_frames": rec.slow_frames,
                "slow_merged": rec.slow_merged,
                "snapshots": rec.snapshots,
            }
        )
    )


def collect(tmp: Path, tag: str, parts: int) -> dict[str, Any]:
    """The records of a run's ``parts`` screen processes, pooled."""
    frames: list[tuple[int, int, float, int]] = []
    offsets: dict[int, list[int]] = {}
    direct: list[tuple[float, list[float]]] = []
    closes: dict[str, int] = {}
    slow_frames = slow_merged = snapshots = 0
    for p in range(parts):
        part = msgspec.json.decode((tmp / f"{tag}-{p}.json").read_bytes())
        frames += [tuple(f) for f in part["frames"]]
        for seq, offs in part["offsets"].items():
            offsets.setdefault(int(seq), offs)
        direct += part["direct"]
        for k, v in part["closes"].items():
            closes[k] = closes.get(k, 0) + v
        slow_frames += part["slow_frames"]
        slow_merged += part["slow_merged"]
        snapshots += part["snapshots"]
    return {
        "frames": frames,
        "offsets": offsets,
        "direct": direct,
        "closes": closes,
        "slow_frames": slow_frames,
        "slow_merged": slow_merged,
        "snapshots": snapshots,
    }


def latency(run: dict[str, Any], windows: list[tuple[float, float]]) -> dict[str, float]:
    """Publish -> delivered over every (screen, reading) delivered within ``windows`` (s, wall)."""
    hist = np.zeros(len(BINS) - 1, dtype=np.int64)
    by_seq: dict[int, list[float]] = {}
    spans = [(a * 1000, b * 1000) for a, b in windows]

    def inside(t: float) -> bool:
        return any(a <= t < b for a, b in spans)

    frames_in = 0
    for _cid, seq, arrival, frame_ts in run["frames"]:
        if inside(arrival):
            by_seq.setdefault(seq, []).append(arrival - frame_ts)
            frames_in += 1
    missing = 0
    for seq, delays in by_seq.items():
        offs = run["offsets"].get(seq)
        if offs is None:
            missing += 1
            continue
        sums = np.add.outer(np.asarray(offs, dtype=np.float64), np.asarray(delays)).ravel()
        hist += np.histogram(sums, BINS)[0]
    for arrival, lats in run["direct"]:
        if inside(arrival):
            hist += np.histogram(lats, BINS)[0]
    # The two parts, for the reader: publish -> frame built, frame built -> delivered.
    seqs = [q for q in by_seq if q in run["offsets"]]
    none = np.empty(0)
    build = np.concatenate([none, *(np.asarray(run["offsets"][q], np.float64) for q in seqs)])
    fan = np.concatenate([none, *(np.asarray(by_seq[q], np.float64) for q in seqs)])
    total = int(hist.sum())
    if total == 0:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0, "frames": 0}
    cum = np.cumsum(hist)
    edges = BINS[1:]
    return {
        "p50": float(edges[np.searchsorted(cum, 0.50 * total)]),
        "p99": float(edges[np.searchsorted(cum, 0.99 * total)]),
        "max": float(edges[np.flatnonzero(hist)[-1]]),
        "n": total,
        "frames": frames_in,
        "missing_offsets": missing,
        "to_frame_p99": float(np.percentile(build, 99)) if len(build) else math.nan,
        "fanout_p99": float(np.percentile(fan, 99)) if len(fan) else math.nan,
    }


def timeline(run: dict[str, Any], start: float, end: float) -> str:
    """Per second: p99 of publish -> frame built and of frame built -> delivered (for reading runs)."""
    out = []
    for t in np.arange(start, end, 1.0):
        lo, hi = t * 1000, (t + 1) * 1000
        seqs: dict[int, list[float]] = {}
        for _c, seq, arrival, frame_ts in run["frames"]:
            if lo <= arrival < hi:
                seqs.setdefault(seq, []).append(arrival - frame_ts)
        offs = [o for q in seqs for o in run["offsets"].get(q, [])]
        fan = [d for ds in seqs.values() for d in ds]
        if offs and fan:
            out.append(
                f"{t - start:.0f}s:{np.percentile(offs, 99):.0f}/{np.percentile(fan, 99):.0f}"
            )
    return " ".join(out)
