"""A check worker process: ``python -m video.worker``, driven by `video.pool` over its stdin and stdout.

Frames on both pipes are a 4-byte big-endian length and a pickle: a `video.pool.CheckJob` in, a
`video.check.CheckResult` out. Only the hub starts this, with its own jobs (pickle is safe here
because both ends are the hub). The protocol owns file descriptor 1: anything a library prints
goes to stderr instead. FFmpeg and OpenCV write to stderr from C, and may quote the URL they were
given, login and all, so the worker's stderr passes through a filter that masks the current job's
secrets before anything reaches the hub's log.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from collections import deque
from typing import BinaryIO

from video import urls

_HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame's payload, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    """Write one frame and flush it."""
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


class _ScrubbedStderr:
    """Copies fd 2 to the real stderr line by line, masking the secrets of the URL being checked."""

    def __init__(self) -> None:
        # A few recent URLs, not only the current one: FFmpeg's last words about the previous
        # job may arrive after the next job started.
        self.urls: deque[str] = deque(maxlen=8)
        read_end, write_end = os.pipe()
        self._real = os.fdopen(os.dup(2), "wb", buffering=0)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._source = os.fdopen(read_end, "rb")
        threading.Thread(target=self._pump, name="stderr-scrub", daemon=True).start()

    def _pump(self) -> None:
        for line in self._source:
            text = line.decode(errors="replace")
            for url in list(self.urls):
                text = urls.scrub(text, url)
            self._real.write(text.encode())


def main() -> None:
    """Serve jobs until stdin closes."""
    # Results go out on a private copy of fd 1; fd 1 itself then points at stderr, so a stray
    # print from any library cannot corrupt the protocol.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    scrubbed = _ScrubbedStderr()
    # Imported after the redirections: OpenCV may write while it loads.
    import cv2  # noqa: PLC0415

    from video.check import run_check  # noqa: PLC0415
    from video.probe import CAPTURE_OPTIONS, configure_ffmpeg  # noqa: PLC0415

    cv2.setNumThreads(1)  # the pool is the parallelism: one core per worker at most
    configure_ffmpeg(os.environ.get(CAPTURE_OPTIONS))
    write_frame(out, b"ready")
    source = sys.stdin.buffer
    while (payload := read_frame(source)) is not None:
        job = pickle.loads(payload)  # noqa: S301 - the hub's own job, over a private pipe
        scrubbed.urls.append(job.url)
        result = run_check(
            job.camera,
            job.url,
            job.plan,
            job.thresholds,
            snapshot_width=job.snapshot_width,
            snapshot_quality=job.snapshot_quality,
            previous=job.previous,
        )
        write_frame(out, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
