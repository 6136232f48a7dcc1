"""The hub's app served by a real uvicorn on a free port, consuming from a real Mosquitto."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from hub.app import create_app
from hub.feed import CameraSource
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port

# A small city: 30 bins across two districts, 10 water levels, one decommissioned smoke detector.
CITY = (
    [
        Device(
            id=f"bin-{i:05d}",
            vendor="acme",
            profile="acme-bin",
            name=f"Bin {i}",
            lat=31.2 + i / 1000,
            lon=121.4,
            area=f"sh/{'huangpu' if i < 20 else 'xuhui'}/street-{i % 3}",
        )
        for i in range(30)
    ]
    + [
        Device(
            id=f"wl-{i:05d}",
            vendor="hydrox",
            profile="hydrox-wl",
            area="sh/huangpu/bund",
            tags={"river": "huangpu"},
        )
        for i in range(10)
    ]
    + [Device(id="sm-00001", vendor="acme", profile="acme-smoke", status="decommissioned")]
)


class ServedHub:
    """A running hub: its base URL, an HTTP client, and its settings."""

    def __init__(self, settings: HubSettings, cameras: CameraSource | None = None) -> None:
        self.settings = settings
        self.url = f"http://{settings.http.host}:{settings.http.port}"
        config = uvicorn.Config(
            create_app(settings, cameras=cameras),
            host=settings.http.host,
            port=settings.http.port,
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",  # as `hub run` serves it
            ws_per_message_deflate=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "the hub failed to start"
            assert time.monotonic() < deadline, "the hub did not start in 30 s"
            time.sleep(0.02)
        self.anonymous = httpx.Client(base_url=self.url, timeout=10)
        self._clients: list[httpx.Client] = [self.anonymous]
        # A fresh hub creates user "admin" and leaves its password in a 0600 file.
        admin_password = (settings.data_dir / "initial-admin-password").read_text().strip()
        self.http = self.client("admin", admin_password)

    def client(self, user: str, password: str) -> httpx.Client:
        """An HTTP client logged in as ``user``."""
        r = self.anonymous.post("/api/v1/auth/login", json={"username": user, "password": password})
        r.raise_for_status()
        token = r.json()["access_token"]
        client = httpx.Client(
            base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )
        self._clients.append(client)
        return client

    def health(self) -> dict[str, object]:
        r = self.http.get("/api/v1/status")
        r.raise_for_status()
        body: dict[str, object] = r.json()
        return body

    def wait_stored(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (h := self.health())["readings_stored"] < n:  # type: ignore[operator]
            assert time.monotonic() < deadline, f"only {h['readings_stored']} of {n} stored"
            time.sleep(0.05)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    """The hub with the shipped profiles and `CITY`, its ingest on ``private_broker``."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()
