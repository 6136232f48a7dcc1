"""`hub run` killed with SIGKILL mid-stream and restarted: nothing lost, nothing stored twice.

The hub is the real process (uvicorn, FastAPI lifespan, ingest pipeline, DuckDB file) against a real
Mosquitto with a persistent session; a real publisher sends QoS 1 messages throughout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest

from devices.access import Role
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from devices.users import UserStore
from tests.conftest import Broker, free_port
from tests.publisher import Publisher

MESSAGES = 20_000
DEVICES = 200


class HubProcess:
    """`python -m hub run` with its settings in the environment; killed or stopped by PID."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["HUB_HTTP__PORT"])
        self._env = env
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run"], env=self._env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self._log.read_text()[-3000:]
            health = self.health()
            if health is not None and health["broker_connected"]:
                return
            time.sleep(0.1)
        raise AssertionError(f"hub did not become healthy:\n{self._log.read_text()[-3000:]}")

    def health(self) -> dict[str, Any] | None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/status",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as r:  # noqa: S310 - our own http URL
                return json.loads(r.read())  # type: ignore[no-any-return]
        except OSError:
            return None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait(30)
        self.proc = None


def _message(i: int) -> tuple[str, bytes]:
    device = f"bin-{i % DEVICES:05d}"
    ts_ms = 1_795_000_000_000 + (i // DEVICES) * 60_000
    return f"sensors/acme/{device}/up", json.dumps({"ts": ts_ms, "fill": i % 100}).encode()


@pytest.mark.parametrize("decode_workers", [0, 2], ids=["in-process", "decode-workers"])
def test_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice(
    private_broker: Broker, tmp_path: Path, decode_workers: int
) -> None:
    data = tmp_path / "hub"
    data.mkdir()
    registry = Registry(f"sqlite:///{data / 'hub.db'}")
    load_shipped(registry)
    registry.put_devices(
        [Device(id=f"bin-{i:05d}", vendor="acme", profile="acme-bin") for i in range(DEVICES)]
    )
    registry.engine.dispose()
    users = UserStore(f"sqlite:///{data / 'hub.db'}")
    users.create_user("ops", Role.OFFICER, password="correct horse battery")
    env = {
        **os.environ,
        "HUB_DATA_DIR": str(data),
        "HUB_MQTT__EMBEDDED": "false",
        "HUB_MQTT__PORT": str(private_broker.port),
        "HUB_HTTP__PORT": str(free_port()),
        # Decoding in worker processes: what they held unacknowledged when the hub died comes again.
        "HUB_INGEST__DECODE_WORKERS": str(decode_workers),
    }
    hub = HubProcess(env, tmp_path / "hub.log")
    hub.token = users.create_token("ops", "crash test").token
    hub.start()  # the persistent session exists from here: the broker queues for it

    published = threading.Event()
    killed = threading.Event()

    def publish() -> None:
        # Half while the hub takes them; the rest once it is dead, into its persistent session for
        # the restarted hub. (Sent in one go, a fast publisher could finish before the kill.)
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send(_message(i) for i in range(MESSAGES // 2))
            killed.wait(120)
            pub.send(_message(i) for i in range(MESSAGES // 2, MESSAGES))
        published.set()

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        deadline = time.monotonic() + 60
        while (h := hub.health()) is None or h["readings_stored"] < MESSAGES // 5:
            assert time.monotonic() < deadline, f"hub stored too little: {h}"
            time.sleep(0.02)
        assert h["readings_stored"] < MESSAGES // 2, "the hub stored the first half before the kill"
        assert hub.proc is not None
        workers = psutil.Process(hub.proc.pid).children()
        assert len(workers) == decode_workers
        hub.signal(signal.SIGKILL)  # mid-stream: decoded-but-unacknowledged messages die with it
        killed.set()
        # The hub's decode workers see their pipe close and end with it.
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"decode workers outlived the hub: {alive}"
        time.sleep(0.5)
        hub.start()
        publisher.join(120)
        assert published.is_set()
        # Drained: everything published was delivered and acknowledged, nothing in flight.
        deadline = time.monotonic() + 60
        stable, last = 0, -1
        while stable < 10:
            assert time.monotonic() < deadline, f"hub did not drain: {hub.health()}"
            h = hub.health()
            assert h is not None
            seen = h["readings_stored"] + h["duplicates_skipped"]
            stable = stable + 1 if seen == last and h["in_flight"] == 0 else 0
            last = seen
            time.sleep(0.1)
        assert h["dead_letters"] == 0
    finally:
        killed.set()  # a failure before the kill must not leave the publisher waiting
        if hub.proc is not None:
            hub.signal(signal.SIGTERM)

    con = duckdb.connect(str(data / "readings.duckdb"), read_only=True)
    total, distinct = con.execute(
        "SELECT count(*), count(DISTINCT (device, metric, ts)) FROM readings"
    ).fetchone() or (0, 0)
    con.close()
    assert distinct == MESSAGES, f"lost {MESSAGES - distinct} readings"
    assert total == distinct, f"{total - distinct} readings stored twice"
