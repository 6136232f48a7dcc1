"""GStreamer's RTSP server over H.264 MP4 files; run by the system Python (python3-gi), not the venv.

Usage: rtsp_server.py PORT MOUNT=FILE [MOUNT=FILE ...]. Prints "ready" once it listens on 127.0.0.1.
Each client gets its own pipeline from the start of the file (the factory is not shared).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    Gst.init(None)
    port, mounts = sys.argv[1], sys.argv[2:]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    points = server.get_mount_points()
    for item in mounts:
        mount, _, path = item.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        points.add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
