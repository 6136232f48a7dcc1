"""Opening a camera's stream with OpenCV (FFmpeg backend) and grabbing a few frames, within time limits.

Everything here blocks; the patrol runs it in worker processes (`video.pool`). A stream that never
answers or stops mid-read must not hold the patrol: FFmpeg's interrupt callback ends an open after
``open_timeout_s`` and a read after ``read_timeout_s`` (OpenCV's ``CAP_PROP_OPEN_TIMEOUT_MSEC`` /
``CAP_PROP_READ_TIMEOUT_MSEC``), the grab loop stops early when an in-process caller sets
``cancel``, and the pool kills a worker that still overruns its deadline.

The URL may carry a login: it is given to OpenCV and nowhere else; error text is scrubbed of it.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from video import urls
from video.diagnose import Frame, as_frame

if TYPE_CHECKING:
    import cv2


logger = logging.getLogger(__name__)

_DEFAULT_FPS = 25.0  # PAL; what most city cameras run at when a stream does not say


CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def capture_options(*, rtsp_tcp: bool = True, analyze_s: float = 0.2) -> str:
    """FFmpeg's options for every open, in OpenCV's ``key;value|key;value`` form.

    RTSP over TCP: UDP loses packets on busy city networks and a lost packet decodes as smeared,
    blocky pictures that the diagnosis would call noise. ``analyze_s`` bounds how much of a stream
    FFmpeg reads to learn its format before the first frame (``analyzeduration``, and ``probesize``
    at about 8 Mbit/s): FFmpeg's defaults (5 s, 5 MB) made an H.264 RTSP open take 1.1 s and 100 ms
    of CPU here; 0.2 s took 90 ms and 43 ms, with the same frames. RTSP cameras announce their
    format in the SDP, so little probing is needed.
    """
    options = [f"analyzeduration;{int(analyze_s * 1_000_000)}"]
    options.append(f"probesize;{max(32_768, int(analyze_s * 1_000_000))}")
    if rtsp_tcp:
        options.insert(0, "rtsp_transport;tcp")
    return "|".join(options)


def configure_ffmpeg(options: str | None = None) -> None:
    """Set this process's FFmpeg capture options (OpenCV reads them at each open).

    OpenCV's own log is also silenced below errors, since its warnings quote the URL it was given,
    login included.
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    os.environ[CAPTURE_OPTIONS] = options if options is not None else capture_options()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class LostReason(enum.StrEnum):
    """Why no picture came from a stream."""

    CANNOT_OPEN = "cannot_open"  # refused, unknown host, 401, not a stream, open timeout
    NO_FRAME = "no_frame"  # opened, but no first frame within the read timeout
    STALLED = "stalled"  # frames came, then stopped mid-read (or the check overran its deadline)


@dataclass(frozen=True, slots=True)
class CapturePlan:
    """How to grab: how many frames to analyse, how far apart, and how long to wait."""

    frames: int = 4
    gap_s: float = 0.2
    open_timeout_s: float = 5.0
    read_timeout_s: float = 3.0

    def frame_stride(self, fps: float) -> int:
        """Frames to advance between analysed frames at ``fps`` (at least one)."""
        return max(1, round(self.gap_s * fps))

    def deadline_s(self) -> float:
        """The longest a capture may take when every limit is used in full, plus playback time."""
        return self.open_timeout_s + self.read_timeout_s * 2 + self.frames * self.gap_s


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a stream is: codec, size, frame rate, and how long its first frame took."""

    codec: str
    width: int
    height: int
    fps: float | None
    ttff_ms: float  # time to first frame: open plus first read

    def same_format(self, other: StreamInfo | None) -> bool:
        """Whether ``other`` has the same codec, size and frame rate (a new probe row otherwise)."""
        return (
            other is not None
            and (self.codec, self.width, self.height) == (other.codec, other.width, other.height)
            and _same_fps(self.fps, other.fps)
        )


def _same_fps(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0.01)


@dataclass(frozen=True, slots=True)
class Capture:
    """The frames grabbed from a stream, what it is, and why it stopped short if it did."""

    frames: list[Frame]
    info: StreamInfo | None
    lost: LostReason | None
    error: str  # for people; never contains the stream's login


def _fourcc(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ").lower()
    return text if text.isprintable() and text else "unknown"


_MJPEG = frozenset({"mjpg", "mjpeg", "jpeg", "avrn"})
_RAW_SCHEMES = ("http", "https", "file")  # where MJPEG is common: try packets first


def _open(target: str, plan: CapturePlan, *, raw: bool) -> cv2.VideoCapture:
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(plan.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(plan.read_timeout_s * 1000),
        cv2.CAP_PROP_N_THREADS,
        1,  # the patrol runs many streams at once: one decoding thread each
    ]
    if raw:
        params += [cv2.CAP_PROP_FORMAT, -1]  # packets as they come, not decoded
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)


def capture(url: str, plan: CapturePlan, cancel: threading.Event | None = None) -> Capture:
    """Open ``url``, grab ``plan.frames`` frames ``plan.gap_s`` apart, and close it.

    MJPEG (HTTP cameras, MJPEG files) is read as packets: every frame is a JPEG of its own, so only
    the analysed frames are decoded and the ones between are skipped undecoded, which at 1080p is
    most of a check's cost (measured: 16 full decodes per check against 4). Other codecs (H.264 and
    H.265 over RTSP) need every frame decoded, since each depends on the previous ones; frames between
    the analysed ones are decoded but not converted to BGR (``grab`` without ``retrieve``). A stream
    that ends early (a short file) returns the frames it had.
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    cancel = cancel or threading.Event()
    target = urls.capture_target(url)
    raw = url.split(":", 1)[0].lower() in _RAW_SCHEMES
    start = time.perf_counter()
    cap = _open(target, plan, raw=raw)
    try:
        if raw and cap.isOpened() and _fourcc(cap.get(cv2.CAP_PROP_FOURCC)) not in _MJPEG:
            cap.release()  # not MJPEG after all (H.264 over HTTP, an MP4 file): decode it
            raw = False
            cap = _open(target, plan, raw=False)
        if not cap.isOpened():
            waited = time.perf_counter() - start
            return Capture(
                [], None, LostReason.CANNOT_OPEN, f"cannot open the stream ({waited:.1f} s)"
            )
        return _grab(_Reader(cap, raw=raw), url, plan, cancel, start)
    except cv2.error as exc:
        return Capture([], None, LostReason.CANNOT_OPEN, urls.scrub(f"OpenCV: {exc}", url))
    finally:
        cap.release()


class _Reader:
    """Frames from a capture, decoding MJPEG packets itself when the capture gives packets."""

    def __init__(self, cap: cv2.VideoCapture, *, raw: bool) -> None:
        self.cap = cap
        self.raw = raw

    def read(self) -> Frame | None:
        import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

        ok, data = self.cap.read()
        if not ok or data is None:
            return None
        if not self.raw:
            return as_frame(data)
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return None if frame is None else as_frame(frame)

    def skip(self) -> bool:
        return bool(self.cap.grab())


def _grab(
    reader: _Reader, url: str, plan: CapturePlan, cancel: threading.Event, start: float
) -> Capture:
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    first = reader.read()
    if first is None:
        waited = time.perf_counter() - start
        return Capture([], None, LostReason.NO_FRAME, f"no frame within {waited:.1f} s of opening")
    ttff_ms = (time.perf_counter() - start) * 1000
    cap = reader.cap
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    info = StreamInfo(
        codec=_fourcc(cap.get(cv2.CAP_PROP_FOURCC)),
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        fps=fps if 0 < fps < 1000 else None,
        ttff_ms=ttff_ms,
    )
    stride = plan.frame_stride(info.fps or _DEFAULT_FPS)
    frames: list[Frame] = [first]
    while len(frames) < plan.frames:
        for _ in range(stride - 1):
            if cancel.is_set() or not reader.skip():
                return _short(frames, info, cancel, url)
        if cancel.is_set():
            return _short(frames, info, cancel, url)
        frame = reader.read()
        if frame is None:
            return _short(frames, info, cancel, url)
        frames.append(frame)
    return Capture(frames, info, None, "")


def _short(frames: list[Frame], info: StreamInfo, cancel: threading.Event, url: str) -> Capture:
    """The frames so far: a file that ended is fine, a live stream that stopped has stalled."""
    if cancel.is_set():
        return Capture(frames, info, LostReason.STALLED, "the check ran out of time")
    if urls.capture_target(url) != url:  # a file: it simply ended
        return Capture(frames, info, None, "")
    return Capture(
        frames, info, LostReason.STALLED, f"the stream stopped after {len(frames)} frames"
    )
