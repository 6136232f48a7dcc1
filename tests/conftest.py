"""Shared fixtures: a real Mosquitto broker on a free port, free ports, and unique topics."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The real InfluxDB 1.x fixtures (``influxd``, ``influx_proxy``) live in their own module.
pytest_plugins = ("tests.influxd", "tests.postgres")

MOSQUITTO = os.environ.get("HUB_TEST_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something accepts TCP connections on ``host:port``, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


_topic_counter = itertools.count()


def unique_topic(prefix: str = "test") -> str:
    """A topic no other test uses, so tests sharing one broker do not see each other's messages."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}-{next(_topic_counter)}"


class Broker:
    """A Mosquitto process on 127.0.0.1, with persistence, that tests may stop, kill and restart.

    Attributes:
        host: where it listens.
        port: its port (kept across restarts, so clients can reconnect).
        workdir: config, log and persistence files.
    """

    def __init__(self, workdir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    # Tests publish fast: never drop queued QoS 1 messages of a persistent session.
                    "max_queued_messages 0",
                    "max_inflight_messages 0",
                    "persistence true",
                    f"persistence_location {self.data}/",
                    "autosave_interval 1",
                    # As root, Mosquitto would switch to user "mosquitto", who cannot write here.
                    "user root" if os.geteuid() == 0 else "",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        """``mqtt://host:port``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.pid is not None:
            return
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not wait_for_port(self.host, self.port, timeout):
            self.kill()
            msg = f"mosquitto did not listen on {self.port}; log:\n{self.log.read_text()[-2000:]}"
            raise RuntimeError(msg)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: it saves its persistence database first)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Kill at once (SIGKILL: a crash; only the last autosave survives)."""
        self._signal(signal.SIGKILL, 5.0)

    def restart(self) -> None:
        """Stop, then start again on the same port with the same persistence."""
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5.0)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto shared by the session; a test that stops it must start it again."""
    _require_mosquitto()
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own: no other test's persistent sessions or messages on it."""
    _require_mosquitto()
    b = Broker(tmp_path / "mosquitto")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _require_mosquitto() -> None:
    # Not a skip: a test suite that quietly skips the broker proves nothing. `make test` installs it.
    if not Path(MOSQUITTO).exists():
        pytest.fail(
            f"mosquitto is not installed at {MOSQUITTO}: run scripts/ensure-system-packages"
        )


@pytest.fixture
def mqtt_url(broker: Broker) -> str:
    """The shared broker's URL, started if a test before stopped it."""
    broker.start()
    return broker.url
