"""A real InfluxDB 1.x (Debian's ``influxd``) for tests, and a loopback proxy that speaks the v2 write path to it.

`Influxd` runs ``influxd -config <tmp>/influxdb.conf`` on free 127.0.0.1 ports and stops it by PID.
`V2WriteProxy` is a *path-rewriting proxy, for tests only*: InfluxDB 1.6 has no ``/api/v2/write``
(1.8 added it), so the proxy turns ``POST /api/v2/write?bucket=db/rp&precision=ms`` into
``POST /write?db=db&rp=rp&precision=ms`` with the same body and headers, passes every other request
through, records what it saw, and can be told to fail requests (to test the writer's retries).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from ingest.store.influxconf import InfluxSettings
from tests.conftest import free_port, wait_for_port

INFLUXD = os.environ.get("HUB_TEST_INFLUXD", shutil.which("influxd") or "/usr/bin/influxd")


class Influxd:
    """An ``influxd`` process on 127.0.0.1 with its data in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.rpc_port = free_port()
        self.conf = workdir / "influxdb.conf"
        self.log = workdir / "influxd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf.write_text(
            f"""
reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  log-enabled = false
  # Continuous queries are checked every second, so a test with a 1 s rollup sees it run.
  run-interval = "1s"
"""
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it answers on its HTTP port."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [INFLUXD, "-config", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            msg = f"influxd did not listen on {self.port}; log:\n{self.log.read_text()[-2000:]}"
            raise RuntimeError(msg)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop it by its PID (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5.0)

    def settings(self, **overrides: object) -> InfluxSettings:
        """Store settings for a database of its own (a fresh name on every call)."""
        values: dict[str, object] = {
            "url": self.url,
            "database": f"t_{uuid.uuid4().hex[:12]}",
            "max_retries": 2,
        }
        values.update(overrides)
        return InfluxSettings.model_validate(values)


@dataclass
class Seen:
    """One request the proxy forwarded."""

    method: str
    path: str
    upstream_path: str
    headers: dict[str, str]
    status: int


@dataclass
class _ProxyState:
    upstream_port: int
    seen: list[Seen] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    fail_retry_after: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _rewrite(path: str) -> str:
    parts = urlsplit(path)
    if parts.path != "/api/v2/write":
        return path
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    db, _, rp = query.get("bucket", "").partition("/")
    params = {"db": db, "precision": query.get("precision", "ns")}
    if rp:
        params["rp"] = rp
    return "/write?" + urlencode(params)


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def _forward(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        upstream_path = _rewrite(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
        with state.lock:
            fail = state.fail_next > 0
            state.fail_next -= 1 if fail else 0
        reply: dict[str, str] = {}
        if fail:
            status, data = state.fail_status, b'{"error":"the test proxy says no"}'
            if state.fail_retry_after is not None:
                reply["Retry-After"] = state.fail_retry_after
        else:
            conn = http.client.HTTPConnection("127.0.0.1", state.upstream_port, timeout=30)
            try:
                conn.request(self.command, upstream_path, body=body, headers=headers)
                response = conn.getresponse()
                status, data = response.status, response.read()
                reply = {
                    k: v
                    for k, v in response.getheaders()
                    if k.lower() in {"content-type", "x-influxdb-version", "x-influxdb-build"}
                }
            finally:
                conn.close()
        with state.lock:
            state.seen.append(Seen(self.command, self.path, upstream_path, headers, status))
        self.send_response(status)
        for k, v in reply.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _forward  # noqa: N815 - http.server's naming
    do_POST = _forward  # noqa: N815


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    state: _ProxyState


class V2WriteProxy:
    """Loopback path-rewriting proxy in front of an `Influxd` (tests only; see the module docstring)."""

    def __init__(self, upstream: Influxd) -> None:
        self.server = _ProxyServer(("127.0.0.1", 0), _Handler)
        self.server.state = _ProxyState(upstream.port)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[Seen]:
        """Every request forwarded (or failed on purpose) so far."""
        with self.server.state.lock:
            return list(self.server.state.seen)

    def fail(self, count: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``Retry-After``), not forwarding."""
        with self.server.state.lock:
            self.server.state.fail_next = count
            self.server.state.fail_status = status
            self.server.state.fail_retry_after = retry_after

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _require_influxd() -> None:
    # Not a skip: a suite that quietly skips the real server proves nothing. `make test` installs it.
    if not Path(INFLUXD).exists():
        pytest.fail(
            f"influxd is not installed at {INFLUXD}: run scripts/ensure-system-packages test"
        )


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """A real InfluxDB 1.x shared by the session; each test takes a database of its own."""
    _require_influxd()
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_proxy(influxd: Influxd) -> Iterator[V2WriteProxy]:
    """The v2-write path-rewriting proxy in front of the session's influxd."""
    proxy = V2WriteProxy(influxd)
    try:
        yield proxy
    finally:
        proxy.close()
