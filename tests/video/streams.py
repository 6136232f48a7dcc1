"""Real camera streams on loopback: an HTTP MJPEG server, GStreamer's RTSP server, and clip files.

- `MjpegServer` serves ``multipart/x-mixed-replace`` JPEG streams (what most IP cameras' HTTP
  endpoints send), one path per stream, paced at the stream's frame rate. A stream can require Basic
  auth, stall for good after some frames (the socket stays open, nothing more comes), or never answer
  at all after accepting the connection.
- `RtspServer` runs GStreamer's RTSP server (Debian's ``gir1.2-gst-rtsp-server-1.0``, driven by the
  system Python with ``python3-gi``) over H.264 clips encoded by Debian's ``ffmpeg``.
- `write_h264` / `write_mjpeg_avi` write clips with ffmpeg and with OpenCV's ``VideoWriter``.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
BOUNDARY = b"hubframe"


def jpegs(frames: Iterable[NDArray[np.uint8]], quality: int = 85) -> list[bytes]:
    """Frames as JPEG bytes, encoded by OpenCV."""
    return [
        cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for f in frames
    ]


@dataclass
class Stream:
    """What one MJPEG path serves."""

    frames: list[bytes]
    fps: float = 25.0
    stall_after: int | None = None  # send this many frames, then nothing (socket kept open)
    silent: bool = False  # accept the connection, never answer
    login: tuple[str, str] | None = None  # Basic auth required


class MjpegServer:
    """HTTP MJPEG streams on 127.0.0.1, each path its own `Stream`; a thread per connection."""

    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append((self.path, self.headers.get("Authorization")))
                stream = server.streams.get(path)
                if stream is None:
                    self.send_error(404)
                    return
                if stream.silent:
                    server._stop.wait(120)
                    return
                if stream.login is not None:
                    user, password = stream.login
                    token = base64.b64encode(f"{user}:{password}".encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.end_headers()
                        return
                server._serve(self, stream)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg", daemon=True)

    def url(self, path: str, login: tuple[str, str] | None = None) -> str:
        auth = f"{login[0]}:{login[1]}@" if login else ""
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def add(self, path: str, stream: Stream) -> str:
        self.streams[path] = stream
        return self.url(path, stream.login)

    def _serve(self, handler: BaseHTTPRequestHandler, stream: Stream) -> None:
        handler.send_response(200)
        handler.send_header(
            "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
        )
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        start = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                if stream.stall_after is not None and n >= stream.stall_after:
                    self._stop.wait(120)  # stalled: the connection stays open, nothing comes
                    return
                jpeg = stream.frames[n % len(stream.frames)]
                handler.wfile.write(
                    b"--"
                    + BOUNDARY
                    + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpeg)).encode()
                    + b"\r\n\r\n"
                    + jpeg
                    + b"\r\n"
                )
                handler.wfile.flush()
                n += 1
                delay = start + n / stream.fps - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
        except OSError:  # the client went away
            return

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rtsp_available() -> str | None:
    """None if GStreamer's RTSP server can run here, else why not."""
    if shutil.which("ffmpeg") is None:
        return "Debian's ffmpeg is not installed (apt-get install ffmpeg)"
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('Gst', '1.0');"
            "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
            "assert all(Gst.ElementFactory.find(e) for e in ('rtph264pay', 'qtdemux', 'h264parse'))",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return (
            "GStreamer's RTSP server is not installed (apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad): "
            + probe.stderr.decode(errors="replace")[-300:]
        )
    return None


class RtspServer:
    """GStreamer's RTSP server on 127.0.0.1 serving ``{mount: mp4 file}`` (H.264), from the start per client."""

    def __init__(self, mounts: dict[str, Path]) -> None:
        self.mounts = mounts
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def __enter__(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port)]
        args += [f"{m}={p}" for m, p in self.mounts.items()]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.__exit__()
            raise RuntimeError(f"the RTSP server did not start: {line!r} {err[-500:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
            self.proc = None


def write_h264(
    path: Path, frames: Iterator[NDArray[np.uint8]], width: int, height: int, fps: int = 25
) -> Path:
    """An H.264 MP4 of ``frames`` (BGR), encoded by Debian's ffmpeg (libx264), a keyframe a second."""
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-crf", "20",
        "-g", str(fps), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for f in frames:
        proc.stdin.write(np.ascontiguousarray(f).tobytes())
    proc.stdin.close()
    if proc.wait(60) != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}")
    return path


def write_mjpeg_avi(path: Path, frames: Iterator[NDArray[np.uint8]], fps: float = 25.0) -> Path:
    """An MJPEG AVI of ``frames`` written by OpenCV's VideoWriter."""
    writer: cv2.VideoWriter | None = None
    for f in frames:
        if writer is None:
            h, w = f.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
            assert writer.isOpened(), "OpenCV cannot write MJPEG AVI here"
        writer.write(f)
    assert writer is not None
    writer.release()
    return path


if __name__ == "__main__":  # pragma: no cover - a manual check
    print(rtsp_available() or "RTSP ok", file=sys.stderr)
