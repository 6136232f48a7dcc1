"""Check worker processes: results, a worker killed at its deadline, a worker that dies, no leaked login."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.video.scenes import Segment
from tests.video.streams import MjpegServer, Stream
from video.diagnose import Thresholds
from video.pool import CheckJob, CheckPool, OverrunError, WorkerCrashedError
from video.probe import CapturePlan, LostReason

PLAN = CapturePlan(frames=3, gap_s=0.1, open_timeout_s=2, read_timeout_s=1.5)
SECRET = "Pa55-w0rd-in-url"


@pytest.fixture
async def pool() -> CheckPool:
    p = CheckPool(2)
    try:
        yield p  # type: ignore[misc]
    finally:
        await p.close()


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def job(camera: str, url: str, plan: CapturePlan = PLAN) -> CheckJob:
    return CheckJob(camera=camera, url=url, plan=plan, thresholds=Thresholds())


async def test_checks_in_workers(
    pool: CheckPool, mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    live = mjpeg.add("/live.mjpg", Stream(segment_jpegs[Segment.MOVING]))
    black = mjpeg.add("/black.mjpg", Stream(segment_jpegs[Segment.BLACK]))
    a, b = await asyncio.gather(pool.run(job("a", live), 20), pool.run(job("b", black), 20))
    assert (a.camera, a.findings, a.lost) == ("a", (), None)
    assert a.thumbnail is not None
    assert a.thumbnail[:2] == b"\xff\xd8"
    assert [f.kind.value for f in b.findings] == ["black"]
    assert pool.stats.checks == 2
    assert pool.stats.started == 2


async def test_a_check_past_its_deadline_is_killed_and_the_pool_goes_on(
    pool: CheckPool, mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    # FFmpeg is told to wait a minute for a frame: only the pool's deadline can end this one.
    stall = mjpeg.add("/stall.mjpg", Stream(segment_jpegs[Segment.MOVING], stall_after=1))
    patient = CapturePlan(frames=3, gap_s=0.1, open_timeout_s=60, read_timeout_s=60)
    live = mjpeg.add("/live.mjpg", Stream(segment_jpegs[Segment.MOVING]))
    t0 = time.monotonic()
    stalled = asyncio.ensure_future(pool.run(job("s", stall, patient), 3.0))
    healthy = await pool.run(job("h", live), 20)  # the other worker is not held up
    assert healthy.lost is None
    with pytest.raises(OverrunError):
        await stalled
    assert time.monotonic() - t0 < 10
    assert pool.stats.killed == 1
    again = await asyncio.gather(*(pool.run(job(f"x{i}", live), 20) for i in range(2)))
    assert all(r.lost is None for r in again)
    assert pool.stats.started == 3  # the killed worker was replaced


async def test_a_worker_that_dies_is_replaced(
    mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    pool = CheckPool(1)
    try:
        live = mjpeg.add("/live.mjpg", Stream(segment_jpegs[Segment.MOVING]))
        await pool.run(job("warm", live), 30)  # the one worker is up
        silent = mjpeg.add("/silent.mjpg", Stream([b""], silent=True))
        slow = CapturePlan(frames=1, gap_s=0, open_timeout_s=30, read_timeout_s=30)
        running = asyncio.ensure_future(pool.run(job("s", silent, slow), 60))
        # Wait until the worker is inside the check (the server saw its request).
        await asyncio.to_thread(
            wait_for, lambda: any(p == "/silent.mjpg" for p, _ in mjpeg.requests)
        )
        (worker,) = pool._all
        os.kill(worker.proc.pid, signal.SIGKILL)  # as a decoder crash would end it
        with pytest.raises(WorkerCrashedError):
            await running
        assert pool.stats.crashed == 1
        assert (await pool.run(job("after", live), 30)).lost is None
    finally:
        await pool.close()


async def test_the_login_never_reaches_the_logs(
    pool: CheckPool, mjpeg: MjpegServer, capfd: pytest.CaptureFixture[str]
) -> None:
    mjpeg.add("/private.mjpg", Stream([b""], login=("op", "right")))
    urls = [
        mjpeg.url("/private.mjpg", ("op", SECRET)),
        f"http://op:{SECRET}@127.0.0.1:9/cam.mjpg",
        f"rtsp://op:{SECRET}@127.0.0.1:9/live",
    ]
    results = await asyncio.gather(*(pool.run(job(f"c{i}", u), 20) for i, u in enumerate(urls)))
    assert all(r.lost is LostReason.CANNOT_OPEN for r in results)
    assert not any(SECRET in r.error or SECRET in str(r.findings) for r in results)
    await pool.close()  # the workers' stderr is flushed when they exit
    out, err = capfd.readouterr()
    assert SECRET not in out + err
