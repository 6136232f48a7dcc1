"""Video benchmark: the camera patrol over 200 loopback MJPEG streams at 360p and at 1080p.

Method. A separate process serves 200 HTTP MJPEG streams (25 fps, a moving street drawn by
tests/video/scenes.py, JPEG quality 85, as IP cameras send it). The hub's patrol (`Patrol.sweep`:
worker processes, default settings: 16 streams at once, 4 analysed frames 0.2 s apart, thumbnails,
SQLite history) checks every stream once; the clock runs from the first open to the last result
stored. The baseline, in the same run against the same server, is the least any MJPEG patrol must
do, in a process pool of the same size: open, read the same packets, decode the same 4 frames,
close (no diagnosis, no thumbnail, no storage). The diagnosis cost per frame is measured
single-threaded on decoded frames, next to OpenCV's own JPEG decode of the same frame.

This machine is shared, so besides wall-clock rates the benchmark counts the CPU time every check
costs (the patrol's worker processes and the hub process, from the kernel's accounting), and
projects what two cores of their own would do: ``capacity = 2 cores / CPU per check``. A sample
of H.264 over RTSP (GStreamer's server, 1080p) shows the other kind of city camera, where every
frame must be decoded.

Prints name=value lines: video_checks_s (measured, 1080p), video_frame_ms_360p,
video_frame_ms_1080p, video_patrol_6000_min (6,000 cameras at the measured 1080p rate), with
baselines, ratios, CPU costs and the load of the machine during the run. Loads go to 127.0.0.1
only; the run stops itself (under three minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video.pool import CheckPool  # after the path: the bench runs from a checkout
from video.probe import CAPTURE_OPTIONS

STREAMS = 200
RTSP_STREAMS = 16
FPS = 25.0
LIMIT_S = 170.0  # the whole run
CORES = 2


@dataclass
class Run:
    """One patrol sweep and its baseline."""

    rate: float  # checks per second, wall clock
    cpu_ms: float  # CPU per check: workers plus the hub process
    base_rate: float = 0.0
    base_cpu_ms: float = 0.0
    flagged: int = 0

    @property
    def capacity(self) -> float:
        """Checks per second two dedicated cores would sustain at this CPU cost."""
        return CORES * 1000 / self.cpu_ms


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def serve(width: int, height: int, streams: int, conn: Connection) -> None:
    """The camera server process: ``streams`` MJPEG paths, until told to stop."""
    from tests.video.scenes import Scene
    from tests.video.streams import MjpegServer, Stream, jpegs

    scene = Scene(width, height)
    frames = jpegs((scene.frame(i) for i in range(50)), quality=85)
    with MjpegServer() as server:
        for i in range(streams):
            server.add(f"/cam-{i}.mjpg", Stream(frames, fps=FPS))
        conn.send(server.port)
        conn.recv()


def grab_only(url: str, frames: int, gap_s: float) -> int:
    """The baseline's work for one camera: open, read the packets, decode the analysed ones."""
    import cv2

    cv2.setNumThreads(1)
    raw = url.startswith("http")
    params = [cv2.CAP_PROP_N_THREADS, 1] + ([cv2.CAP_PROP_FORMAT, -1] if raw else [])
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)

    def read() -> bool:
        ok, data = cap.read()
        return bool(ok) and (not raw or cv2.imdecode(data, cv2.IMREAD_COLOR) is not None)

    got = 0
    try:
        ok = read()
        got += ok
        stride = max(1, round(gap_s * FPS))
        while ok and got < frames:
            for _ in range(stride - 1):
                cap.grab()
            ok = read()
            got += ok
    finally:
        cap.release()
    return got


def frame_costs(width: int, height: int, runs: int = 25) -> tuple[float, float]:
    """(diagnosis CPU ms per frame, OpenCV JPEG decode CPU ms per frame), one thread, medians."""
    import cv2

    from tests.video.scenes import Scene
    from video.diagnose import Thresholds, diagnose, measure

    cv2.setNumThreads(1)
    scene = Scene(width, height)
    encoded = [
        cv2.imencode(".jpg", scene.frame(i * 3), [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
        for i in range(4)
    ]
    frames = [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in encoded]
    # CPU time of this thread (OpenCV single-threaded): what a frame costs, not how long this
    # shared machine made it wait for a core.
    diag, decode = [], []
    for _ in range(runs):
        t0 = time.thread_time()
        diagnose([measure(f) for f in frames], Thresholds())
        diag.append((time.thread_time() - t0) * 1000 / len(frames))
        t0 = time.thread_time()
        for b in encoded:
            cv2.imdecode(b, cv2.IMREAD_COLOR)
        decode.append((time.thread_time() - t0) * 1000 / len(encoded))
    return statistics.median(diag), statistics.median(decode)


async def patrol_run(urls: list[str], root: Path, pool: CheckPool) -> Run:
    """The patrol over ``urls`` once (after a warm-up sweep): rate, CPU per check, flags."""
    from video.cameras import Camera
    from video.fleet import CameraFleet
    from video.history import HistoryStore
    from video.patrol import Patrol
    from video.registry import CameraRegistry
    from video.settings import VideoSettings
    from video.snapshots import SnapshotStore

    settings = VideoSettings()
    db = f"sqlite:///{root / 'hub.db'}"
    fleet = CameraFleet(
        CameraRegistry(db), HistoryStore(db), SnapshotStore(root / "snapshots"), settings
    )
    cameras = [Camera(id=f"cam-{i:04d}", url=u) for i, u in enumerate(urls)]
    fleet.put(cameras)
    patrol = Patrol(fleet, settings)
    patrol.pool = pool  # one pool of worker processes for every run
    try:
        # Warm the pool (started on first use) and the server outside the clock.
        warm = await patrol.sweep(cameras[: settings.max_streams])
        if len(warm) != settings.max_streams:
            raise SystemExit("the patrol did not warm up")
        pids = [os.getpid()] + [w.proc.pid for w in pool._all]
        c0, t0 = cpu_s(pids), time.perf_counter()
        results = await patrol.sweep(cameras)
        elapsed, cpu = time.perf_counter() - t0, cpu_s(pids) - c0
    finally:
        fleet.registry.dispose()
        fleet.history.dispose()
    lost = [r for r in results if r.lost is not None]
    if lost or pool.stats.started != settings.max_streams:
        raise SystemExit(f"{len(lost)} checks lost the signal on loopback: {lost[:1]}")
    return Run(
        rate=len(results) / elapsed,
        cpu_ms=cpu * 1000 / len(results),
        flagged=sum(bool(r.findings) for r in results),
    )


def baseline(urls: list[str], run: Run, pool: ProcessPoolExecutor) -> None:
    """Plain OpenCV over ``urls`` in ``pool`` (as many processes as the patrol has streams)."""
    from video.settings import VideoSettings

    s = VideoSettings()
    n = s.max_streams
    list(pool.map(grab_only, urls[:n], [s.frames] * n, [s.frame_gap_s] * n))  # warm
    pids = list(pool._processes)
    c0, t0 = cpu_s(pids), time.perf_counter()
    got = list(pool.map(grab_only, urls, [s.frames] * len(urls), [s.frame_gap_s] * len(urls)))
    elapsed, cpu = time.perf_counter() - t0, cpu_s(pids) - c0
    if min(got) < s.frames:
        raise SystemExit(f"baseline: a stream gave {min(got)} of {s.frames} frames")
    run.base_rate = len(urls) / elapsed
    run.base_cpu_ms = cpu * 1000 / len(urls)


@dataclass
class Pools:
    """The worker processes every run shares: the patrol's, and the baseline's."""

    checks: CheckPool
    plain: ProcessPoolExecutor


async def mjpeg(width: int, height: int, pools: Pools) -> Run:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(width, height, STREAMS, child), daemon=True)
    server.start()
    try:
        if not await asyncio.to_thread(parent.poll, 60):
            raise SystemExit("the camera server did not start")
        port = parent.recv()
        urls = [f"http://127.0.0.1:{port}/cam-{i}.mjpg" for i in range(STREAMS)]
        with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
            run = await patrol_run(urls, Path(tmp), pools.checks)
        await asyncio.to_thread(baseline, urls, run, pools.plain)
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.kill()
    return run


async def rtsp_h264(pools: Pools) -> Run | str:
    """The patrol over a sample of 1080p H.264 RTSP streams; a reason when it cannot run here."""
    from tests.video.scenes import Scene
    from tests.video.streams import RtspServer, rtsp_available, write_h264

    reason = rtsp_available()
    if reason is not None:
        return reason
    scene = Scene(1920, 1080)
    with tempfile.TemporaryDirectory(prefix="bench-video-rtsp-") as tmp:
        frames = (scene.frame(i) for i in range(40))
        clip = await asyncio.to_thread(write_h264, Path(tmp) / "street.mp4", frames, 1920, 1080)
        with RtspServer({f"cam-{i}": clip for i in range(RTSP_STREAMS)}) as server:
            urls = [server.url(f"cam-{i}") for i in range(RTSP_STREAMS)]
            run = await patrol_run(urls, Path(tmp), pools.checks)
            await asyncio.to_thread(baseline, urls, run, pools.plain)
    return run


def watchdog(limit_s: float) -> None:
    """Stop the whole run (and the processes it started) if it outlives ``limit_s``."""

    def stop() -> None:
        print(f"video bench: over {limit_s:.0f} s on this machine; stopped", file=sys.stderr)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os._exit(2)

    timer = threading.Timer(limit_s, stop)
    timer.daemon = True
    timer.start()


async def patrols(
    started: float, phases: list[tuple[str, float]], load: list[float], *, rtsp: bool
) -> tuple[Run, Run, Run | str]:
    """The three patrol runs, sharing one pool of check workers and one of plain workers."""
    from video.settings import VideoSettings

    s = VideoSettings()
    # The baseline's processes open streams with the same FFmpeg options as the patrol's workers.
    os.environ[CAPTURE_OPTIONS] = s.capture_options()
    ctx = multiprocessing.get_context("spawn")
    pools = Pools(
        CheckPool(s.max_streams, options=s.capture_options()),
        ProcessPoolExecutor(s.max_streams, mp_context=ctx),
    )
    try:
        r360 = await mjpeg(640, 360, pools)
        load.append(os.getloadavg()[0])
        phases.append(("360p", time.monotonic() - started))
        r1080 = await mjpeg(1920, 1080, pools)
        load.append(os.getloadavg()[0])
        phases.append(("1080p", time.monotonic() - started))
        h264: Run | str = "skipped (--no-rtsp)"
        if rtsp:
            h264 = (
                await rtsp_h264(pools)
                if time.monotonic() - started < LIMIT_S - 40
                else "skipped: the machine is too busy to fit it in the time limit"
            )
            phases.append(("h264", time.monotonic() - started))
        load.append(os.getloadavg()[0])
    finally:
        await pools.checks.close()
        pools.plain.shutdown()
    return r360, r1080, h264


def main() -> None:
    watchdog(LIMIT_S + 8)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--no-rtsp", action="store_true", help="skip the H.264 RTSP sample")
    args = parser.parse_args()
    started = time.monotonic()
    load = [os.getloadavg()[0]]
    diag360, dec360 = frame_costs(640, 360)
    diag1080, dec1080 = frame_costs(1920, 1080)
    phases = [("frames", time.monotonic() - started)]
    r360, r1080, h264 = asyncio.run(patrols(started, phases, load, rtsp=not args.no_rtsp))
    p = print
    p(f"video_frame_ms_360p={diag360:.2f}")
    p(f"video_frame_ms_1080p={diag1080:.2f}")
    p(f"video_decode_ms_360p={dec360:.2f}  # baseline: OpenCV's JPEG decode of the same frame")
    p(f"video_decode_ms_1080p={dec1080:.2f}")
    p(f"video_frame_ratio_360p={diag360 / dec360:.2f}  # diagnosis / decode")
    p(f"video_frame_ratio_1080p={diag1080 / dec1080:.2f}")
    p(f"video_checks_s={r1080.rate:.2f}  # 1080p MJPEG, wall clock on this shared machine")
    for name, r in (("360p", r360), ("1080p", r1080)):
        p(f"video_checks_s_{name}={r.rate:.2f}")
        p(f"video_baseline_checks_s_{name}={r.base_rate:.2f}  # plain OpenCV: read + decode only")
        p(f"video_checks_ratio_{name}={r.rate / r.base_rate:.2f}  # patrol / baseline")
        p(f"video_cpu_ms_per_check_{name}={r.cpu_ms:.1f}  # baseline {r.base_cpu_ms:.1f}")
        p(f"video_capacity_checks_s_{name}={r.capacity:.1f}  # 2 cores / CPU per check")
    p(f"video_patrol_6000_min={6000 / r1080.rate / 60:.1f}  # at the measured 1080p MJPEG rate")
    p(f"video_patrol_6000_min_360p={6000 / r360.rate / 60:.1f}")
    p(f"video_patrol_6000_min_capacity_1080p={6000 / r1080.capacity / 60:.1f}  # 2 idle cores")
    if isinstance(h264, Run):
        p(f"video_h264_rtsp_checks_s_1080p={h264.rate:.2f}  # {RTSP_STREAMS} streams")
        p(f"video_h264_cpu_ms_per_check_1080p={h264.cpu_ms:.1f}  # baseline {h264.base_cpu_ms:.1f}")
        p(f"video_h264_patrol_6000_min_capacity={6000 / h264.capacity / 60:.1f}  # 2 idle cores")
    else:
        p(f"# H.264 RTSP sample: {h264}")
    flagged = r360.flagged + r1080.flagged + (h264.flagged if isinstance(h264, Run) else 0)
    p(f"video_flagged={flagged}  # healthy streams flagged (want 0)")
    p(f"video_load_1m={max(load):.1f}  # the machine's load during the run ({CORES} cores)")
    ends = ", ".join(f"{name} {t:.0f} s" for name, t in phases)
    p(f"video_bench_s={time.monotonic() - started:.0f}  # phases ended at: {ends}")


if __name__ == "__main__":
    main()
