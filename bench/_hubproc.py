"""The hub as a separate process (``python -m hub run``, as bench/alerts.py starts it), with its counters.

Everything the report reads from the hub comes over its HTTP API (``/api/v1/status``, the readings
route) or from the OS (psutil: CPU time and RSS of the hub process), so the hub is measured as shipped.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from bench._broker import free_port
from bench.alerts import start_hub, wait_ready


class HubProcess:
    """One run of the hub against an external broker; stopped by PID on exit."""

    def __init__(
        self,
        data: Path,
        broker_port: int,
        rules_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: settings for this run on top of the bench's (e.g. HUB_INGEST__DECODE_WORKERS)."""
        self.env = dict(env or {})
        self.data = data
        self.broker_port = broker_port
        self.rules_file = rules_file
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def __enter__(self) -> HubProcess:
        self.proc = start_hub(
            self.data, self.broker_port, self.http_port, self.rules_file, self.env
        )
        self.ps = psutil.Process(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        """The hub's process id."""
        if self.proc is None:
            raise RuntimeError("the hub was not started")
        return self.proc.pid

    def wait_ready(self) -> None:
        """Until the hub's HTTP answers and it is connected to the broker; then log in."""
        if self.proc is None:
            raise RuntimeError("the hub was not started")
        wait_ready(self.url, self.proc, self.data)
        password = (self.data / "initial-admin-password").read_text().strip()
        token = self.http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        ).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def http_up(self) -> bool:
        """Whether the hub answers HTTP yet (it may already be draining the broker)."""
        try:
            self.http.get("/healthz", timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    def stored(self) -> int:
        """Readings new to the store since this process started."""
        return int(self.http.get("/api/v1/status").json()["readings_stored"])

    def _family(self) -> list[psutil.Process]:
        """The hub and its children (decode workers, ingest/decodepool.py): all of it is the hub."""
        ps = self._ps()
        return [ps, *ps.children(recursive=True)]

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the hub has used, threads and child processes included."""
        total = 0.0
        for p in self._family():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        """Resident memory of the hub and its child processes, MiB."""
        total = 0
        for p in self._family():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20

    def _ps(self) -> psutil.Process:
        if self.ps is None:
            raise RuntimeError("the hub was not started")
        return self.ps

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
