"""The patrol: every camera checked once per cycle, a bounded number of streams at a time.

Scheduling is by due time: a camera is due one cycle after its previous check started (after a
restart, one cycle after the stored last check), new and changed cameras at once; due cameras go
oldest first, so a patrol that falls behind spreads the delay over everyone instead of starving the
end of a list. At most ``max_streams`` checks run at once, each in a worker process with a deadline
(`video.pool`), so a stalled stream costs one worker for a bounded time, never the patrol.

Results go through a bounded queue to one writer, which records them in batches (`CameraFleet.record`:
one transaction per batch) off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from video.cameras import Camera
from video.check import CheckResult, lost_finding, overrun
from video.fleet import CameraFleet, StatusChange, now_ms
from video.history import CameraStatus
from video.pool import CheckJob, CheckPool, OverrunError, WorkerCrashedError
from video.probe import LostReason
from video.settings import VideoSettings

logger = logging.getLogger(__name__)

# A worker is killed only when FFmpeg's own timeouts did not end its check: twice the capture's
# limits plus a margin, so a slow but working check on a busy machine is not cut short.
_DEADLINE_FACTOR = 2.0
_DEADLINE_MARGIN_S = 5.0
_WRITE_BATCH = 256
_REFRESH_S = 5.0  # how often to look for cameras another process changed
_PRUNE_S = 3600.0


@dataclass
class PatrolStats:
    """What the patrol has done since it started."""

    checks: int = 0
    lost: int = 0  # checks that got no picture (signal lost)
    with_findings: int = 0
    errors: int = 0  # checks that failed inside the hub (a bug: logged)
    changes: int = 0  # findings confirmed or cleared
    started_ms: int = field(default_factory=now_ms)
    # Monotonic end times of the latest checks (bounded: 4,096 is over a minute at 60 checks/s).
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def rate(self, window_s: float = 60.0) -> float:
        """Checks per second over the last ``window_s``."""
        cutoff = time.monotonic() - window_s
        return sum(1 for t in self.recent if t >= cutoff) / window_s


class Patrol:
    """Checks every enabled camera once per ``cycle_s`` with at most ``max_streams`` at a time."""

    def __init__(self, fleet: CameraFleet, settings: VideoSettings) -> None:
        """Patrol ``fleet``'s cameras as ``settings`` say."""
        self.fleet = fleet
        self.settings = settings
        self.plan = settings.plan()
        self.deadline_s = self.plan.deadline_s() * _DEADLINE_FACTOR + _DEADLINE_MARGIN_S
        self.pool = CheckPool(settings.max_streams, options=settings.capture_options())
        self.stats = PatrolStats()
        self._due: dict[str, int] = {}
        self._busy: set[str] = set()
        self._results: asyncio.Queue[tuple[CheckResult, asyncio.Future[None] | None]] | None = None

    @property
    def running(self) -> bool:
        """Whether the patrol's cycle is running (`run` is active)."""
        return self._results is not None

    # -- one check ------------------------------------------------------------------------------

    async def check(self, camera: Camera) -> CheckResult | None:
        """Check one camera now (in a worker process); None if the hub failed (logged)."""
        s = self.settings
        job = CheckJob(
            camera=camera.id,
            url=camera.url,
            plan=self.plan,
            thresholds=camera.effective_thresholds(s.thresholds),
            snapshot_width=s.snapshot_width,
            snapshot_quality=s.snapshot_quality,
            previous=previous.signature
            if (previous := self.fleet.statuses.get(camera.id))
            else None,
        )
        at_ms = now_ms()
        try:
            result = await self.pool.run(job, self.deadline_s)
        except OverrunError as exc:
            logger.warning("camera %s: check killed after %.1f s", camera.id, exc.waited_s)
            result = overrun(camera.id, at_ms, exc.waited_s)
        except WorkerCrashedError as exc:
            logger.warning("camera %s: %s", camera.id, exc)
            waited = (now_ms() - at_ms) / 1000
            result = crashed(camera.id, at_ms, waited)
        except Exception:
            self.stats.errors += 1
            logger.exception("camera %s: the check failed inside the hub", camera.id)
            return None
        self.stats.checks += 1
        self.stats.recent.append(time.monotonic())
        self.stats.lost += result.lost is not None
        self.stats.with_findings += bool(result.findings)
        return result

    async def check_now(self, camera_id: str) -> CameraStatus:
        """Check a camera at once (outside its turn) and record the result; its new status."""
        camera = self.fleet.registry.get(camera_id)
        self._busy.add(camera_id)
        try:
            result = await self.check(camera)
        finally:
            self._busy.discard(camera_id)
        if result is not None:
            await self._record(result)
        self._due[camera_id] = now_ms() + int(self.settings.cycle_s * 1000)
        return self.fleet.status(camera_id)

    async def sweep(self, cameras: Sequence[Camera]) -> list[CheckResult]:
        """Check ``cameras`` once each (bounded concurrency) and record the results; for tests and benchmarks."""
        results = await asyncio.gather(*(self.check(c) for c in cameras))
        done = [r for r in results if r is not None]
        for start in range(0, len(done), _WRITE_BATCH):
            changes = await asyncio.to_thread(self.fleet.record, done[start : start + _WRITE_BATCH])
            self._count(changes)
        return done

    async def _record(self, result: CheckResult) -> None:
        if self._results is None:  # the patrol is not running: record directly
            self._count(await asyncio.to_thread(self.fleet.record, [result]))
            return
        recorded = asyncio.get_running_loop().create_future()
        await self._results.put((result, recorded))
        await recorded

    def _count(self, changes: list[StatusChange]) -> None:
        self.stats.changes += len(changes)

    # -- the cycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Patrol until cancelled."""
        self._results = asyncio.Queue(maxsize=4 * self.settings.max_streams)
        logger.info(
            "video patrol started: %s cameras, cycle %.0f s, %s streams at once",
            len(self.fleet.registry.cameras),
            self.settings.cycle_s,
            self.settings.max_streams,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._write_loop(), name="video.patrol.writer")
                tg.create_task(self._housekeeping(), name="video.patrol.housekeeping")
                await self._schedule(tg)
        finally:
            self._results = None
            await self.pool.close()
            logger.info("video patrol stopped after %s checks", self.stats.checks)

    async def _schedule(self, tg: asyncio.TaskGroup) -> None:
        slots = asyncio.Semaphore(self.settings.max_streams)
        cycle_ms = int(self.settings.cycle_s * 1000)
        while True:
            due, wait_s = self._due_cameras(now_ms(), cycle_ms)
            if not due:
                await asyncio.sleep(wait_s)
                continue
            for camera in due:
                await slots.acquire()  # no more tasks than streams: the rest wait their turn here
                if camera.id not in self.fleet.registry.cameras or camera.id in self._busy:
                    slots.release()
                    continue
                self._due[camera.id] = now_ms() + cycle_ms
                self._busy.add(camera.id)
                tg.create_task(self._patrol_one(camera, slots), name=f"video.check:{camera.id}")

    def _due_cameras(self, now: int, cycle_ms: int) -> tuple[list[Camera], float]:
        """Cameras due now, oldest due first; else how long until the next is due (at most 1 s)."""
        for camera_id in self.fleet.take_changed():
            self._due.pop(camera_id, None)  # new or changed: at once
        statuses = self.fleet.statuses
        due: list[tuple[int, Camera]] = []
        next_due = now + 1000
        for camera in list(self.fleet.registry.cameras.values()):
            if not camera.enabled or camera.id in self._busy:
                continue
            at = self._due.get(camera.id)
            if at is None:
                status = statuses.get(camera.id)
                last = status.last_check_ms if status is not None else None
                # Never checked: at once; checked before a restart: keep the rhythm.
                at = now if last is None else last + cycle_ms
            if at <= now:
                due.append((at, camera))
            else:
                next_due = min(next_due, at)
        due.sort(key=lambda pair: pair[0])
        return [c for _, c in due], max(0.05, (next_due - now) / 1000)

    async def _patrol_one(self, camera: Camera, slots: asyncio.Semaphore) -> None:
        try:
            result = await self.check(camera)
            if result is not None and self._results is not None:
                await self._results.put((result, None))
        finally:
            self._busy.discard(camera.id)
            slots.release()

    async def _write_loop(self) -> None:
        assert self._results is not None  # noqa: S101 - set by run() before this task starts
        queue = self._results
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < _WRITE_BATCH:
                batch.append(queue.get_nowait())
            try:
                changes = await asyncio.to_thread(self.fleet.record, [r for r, _ in batch])
                self._count(changes)
            except Exception:
                # The database is away: these results are lost, the next cycle checks again.
                logger.exception("recording %s camera checks failed", len(batch))
            for _, recorded in batch:
                if recorded is not None and not recorded.done():
                    recorded.set_result(None)

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(_REFRESH_S)
            try:
                if await asyncio.to_thread(self.fleet.registry.refresh):
                    logger.info("cameras changed: %s registered", len(self.fleet.registry.cameras))
                if time.monotonic() - last_prune >= _PRUNE_S:
                    last_prune = time.monotonic()
                    rows, files = await asyncio.to_thread(self.fleet.prune)
                    if rows or files:
                        logger.info(
                            "video retention: %s history rows, %s snapshots deleted", rows, files
                        )
            except Exception:
                logger.exception("video housekeeping failed")


def crashed(camera: str, at_ms: int, waited_s: float) -> CheckResult:
    """The result of a check whose worker process died (the stream crashed its decoder)."""
    error = "the decoder crashed on this stream"
    return CheckResult(
        camera=camera,
        at_ms=at_ms,
        duration_ms=waited_s * 1000,
        info=None,
        lost=LostReason.STALLED,
        error=error,
        diagnosis=None,
        findings=(lost_finding(LostReason.STALLED, error, waited_s),),
        thumbnail=None,
    )
