"""A Mosquitto on a free loopback port with the hub's no-loss settings, for benchmarks."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from hub.embedded_broker import CONFIG_TEMPLATE, find_mosquitto, port_open, run_as


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchBroker:
    """Mosquitto with the hub's configuration, in a temporary directory; stopped by PID on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-broker-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BenchBroker:
        exe = find_mosquitto()
        if exe is None:
            raise SystemExit("mosquitto is not installed: run scripts/ensure-system-packages")
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            CONFIG_TEMPLATE.format(
                host="127.0.0.1", port=self.port, data=self.dir, user=run_as()
            ).replace("persistence true", "persistence false")
        )
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise SystemExit("mosquitto did not start")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        self._tmp.cleanup()
