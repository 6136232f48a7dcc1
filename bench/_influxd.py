"""A Debian ``influxd`` (InfluxDB 1.x) on free loopback ports in a temporary directory, for benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from bench._broker import free_port


class BenchInfluxd:
    """``influxd -config <tmp>/influxdb.conf``; stopped by PID on exit, its data removed."""

    def __init__(self, data_settings: str = "") -> None:
        """``data_settings``: more lines for the ``[data]`` section (e.g. compaction timings)."""
        self.data_settings = data_settings
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-influxd-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BenchInfluxd:
        exe = shutil.which("influxd") or "/usr/bin/influxd"
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n'
            "  query-log-enabled = false\n"
            + "".join(
                f"  {line.strip()}\n" for line in self.data_settings.splitlines() if line.strip()
            )
            + f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        log = (self.dir / "influxd.log").open("wb")
        self.proc = subprocess.Popen(
            [exe, "-config", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:  # noqa: S310 - our http URL
                    self.version = r.headers.get("X-Influxdb-Version", "")
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise SystemExit("influxd did not start in 30 s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._tmp.cleanup()
