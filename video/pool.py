"""Checks run in worker processes: one stream per process at a time, killed if it overruns.

Why processes and not threads: OpenCV's FFmpeg backend holds one process-wide lock while it opens a
stream (``CvCapture_FFMPEG::open``), network wait included. In threads, one camera that accepts the
connection and never answers holds every other camera's open for its whole open timeout, and RTSP
opens (about a second each: DESCRIBE, SETUP, PLAY, stream probing) queue behind each other.
Measured here: a healthy MJPEG stream took 1.9 s to open behind a silent one, against 2 ms alone.
A process has its own lock, and a process can be killed: a check that overruns its deadline (a
decoder stuck where FFmpeg's own timeouts do not reach) is ended for certain, its worker replaced,
and the patrol goes on. Decoding and diagnosis also run outside the event loop's GIL.

Why ``python -m video.worker`` and not `multiprocessing`: its ``spawn`` and ``forkserver`` start
methods re-import the program's main module in every worker (for the hub: FastAPI, DuckDB,
SQLAlchemy and the rest; Python 3.11's forkserver ignores ``"__main__"`` in its preload list, as
its ``ensure_running`` asks for a ``main_path`` key the preparation data does not have), which cost
16 workers over 20 s of CPU here before their first check; ``fork`` would copy a threaded process.
A worker of our own imports OpenCV and the checks only (~0.4 s) and speaks a two-pipe protocol
(`video.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import sys
import time
from dataclasses import dataclass

from video.check import CheckResult
from video.diagnose import Frame, Thresholds
from video.probe import CAPTURE_OPTIONS, CapturePlan, capture_options

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_START_TIMEOUT_S = 60.0  # importing OpenCV on a busy machine


@dataclass(frozen=True, slots=True)
class CheckJob:
    """One check for a worker: the camera, its full URL (login included) and how to judge it."""

    camera: str
    url: str
    plan: CapturePlan
    thresholds: Thresholds
    snapshot_width: int = 320
    snapshot_quality: int = 70
    previous: Frame | None = None  # the previous check's signature, for frozen


class OverrunError(TimeoutError):
    """The check did not finish by its deadline; its worker was killed."""

    def __init__(self, waited_s: float) -> None:
        self.waited_s = waited_s
        super().__init__(f"killed after {waited_s:.1f} s")


class WorkerCrashedError(RuntimeError):
    """The worker process died during a check (a decoder crash on this stream)."""


@dataclass
class PoolStats:
    """What the pool has done."""

    checks: int = 0
    killed: int = 0  # overran their deadline
    crashed: int = 0  # died by themselves
    started: int = 0  # processes started, replacements included


class _Worker:
    """One ``python -m video.worker`` process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, options: str) -> _Worker:
        env = dict(os.environ, **{CAPTURE_OPTIONS: options})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "video.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        worker = cls(proc)
        try:
            ready = await asyncio.wait_for(worker.receive(), _START_TIMEOUT_S)
        except BaseException:
            await worker.kill()
            raise
        if ready != b"ready":
            await worker.kill()
            msg = f"video worker started wrongly: {ready[:40]!r}"
            raise WorkerCrashedError(msg)
        return worker

    async def send(self, payload: bytes) -> None:
        assert self.proc.stdin is not None  # noqa: S101 - created with a pipe
        self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
        await self.proc.stdin.drain()

    async def receive(self) -> bytes:
        """The next frame (raises IncompleteReadError when the worker is gone)."""
        assert self.proc.stdout is not None  # noqa: S101 - created with a pipe
        (size,) = _HEADER.unpack(await self.proc.stdout.readexactly(_HEADER.size))
        return await self.proc.stdout.readexactly(size)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        """Close its stdin (it exits at the end of its input), then make sure it is gone."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 2.0)
        except TimeoutError:
            await self.kill()


class CheckPool:
    """``size`` worker processes; `run` hands a job to a free one and awaits its result."""

    def __init__(self, size: int, *, options: str | None = None) -> None:
        """Up to ``size`` checks at once (workers start on first use), with FFmpeg ``options``."""
        self.size = size
        self.options = options if options is not None else capture_options()
        self.stats = PoolStats()
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._starting: asyncio.Lock | None = None

    async def _spawn(self) -> _Worker:
        self.stats.started += 1
        worker = await _Worker.start(self.options)
        self._all.add(worker)
        return worker

    async def _ensure_started(self) -> asyncio.Queue[_Worker]:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._idle is None:
                workers = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
                idle: asyncio.Queue[_Worker] = asyncio.Queue()
                for w in workers:
                    idle.put_nowait(w)
                self._idle = idle
                logger.info("video check pool: %s worker processes", self.size)
        return self._idle

    async def run(self, job: CheckJob, deadline_s: float) -> CheckResult:
        """The result of ``job``, checked in a worker process.

        Raises:
            OverrunError: no result within ``deadline_s``; the worker was killed and replaced.
            WorkerCrashedError: the worker died; it was replaced.
        """
        idle = await self._ensure_started()
        worker = await idle.get()
        t0 = time.monotonic()
        try:
            await worker.send(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            payload = await asyncio.wait_for(worker.receive(), deadline_s)
        except TimeoutError:
            self.stats.killed += 1
            await self._replace(worker, idle)
            raise OverrunError(time.monotonic() - t0) from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.stats.crashed += 1
            await self._replace(worker, idle)
            msg = f"the check worker died (exit code {worker.proc.returncode})"
            raise WorkerCrashedError(msg) from exc
        except BaseException:
            # Cancelled (the patrol stopping) while the worker still checks: it cannot be reused.
            await asyncio.shield(self._replace(worker, idle))
            raise
        self.stats.checks += 1
        idle.put_nowait(worker)
        result: CheckResult = pickle.loads(payload)  # noqa: S301 - our own worker's answer
        return result

    async def _replace(self, worker: _Worker, idle: asyncio.Queue[_Worker]) -> None:
        self._all.discard(worker)
        await worker.kill()
        if self._idle is idle:  # not closed meanwhile
            idle.put_nowait(await self._spawn())

    async def close(self) -> None:
        """Stop every worker."""
        self._idle = None
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
