"""A served hub with a slice of Demo City and its response set-up: tree, units, roster, accounts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from alerts.response_settings import ResponseSettings
from devices.access import Role
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from devices.users import UserStore
from hub.demoareas import CREW, CREW_UNIT, RIVERSIDE_OFFICER, load_demo_response
from hub.democity import demo_devices
from hub.settings import HttpSettings, HubSettings, MqttSettings
from hub.simulator import Simulator
from hub.storm import Storm
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

DEVICES = 600
PASSWORD = "a long enough password"
OLDTOWN_OFFICER = "oldtown-officer"
ACCOUNTS = (
    ("commander", Role.COMMANDER, None),
    ("officer", Role.OFFICER, None),
    (RIVERSIDE_OFFICER, Role.OFFICER, "demo/riverside"),
    (OLDTOWN_OFFICER, Role.OFFICER, "demo/oldtown"),
    (CREW, Role.UNIT, None),
)

__all__ = ["CREW", "CREW_UNIT", "OLDTOWN_OFFICER", "RIVERSIDE_OFFICER", "City", "serve_city"]


class City:
    """The served hub, its demo devices, and a logged-in client per account."""

    def __init__(self, hub: ServedHub, devices: list[Device], broker: Broker) -> None:
        self.hub = hub
        self.devices = devices
        self.broker = broker
        self.clients = {name: hub.client(name, PASSWORD) for name, _, _ in ACCOUNTS}

    def __getitem__(self, name: str) -> httpx.Client:
        return self.clients[name]

    @property
    def app_state(self) -> Any:
        return self.hub.server.config.app.state  # type: ignore[attr-defined]

    def storm(self, district: str = "demo/riverside", steps: int = 3) -> int:
        """Publish ``steps`` rounds of every sender's message, a storm over ``district`` at its peak."""
        now = time.time()
        storm = Storm(district, now - 3600)  # an hour in: rain at its peak, the river 3 m up
        sent = 0
        with Publisher(self.broker.host, self.broker.port, client_id="storm") as pub:
            for k in range(steps):
                at = now - 10 * (steps - 1 - k)
                sim = Simulator(self.devices, seed=3 + k, scenarios=[storm], clock=lambda at=at: at)
                out: list[tuple[str, bytes | str]] = []
                sim.step(sim.senders, sim.moment(100.0), lambda t, p, out=out: out.append((t, p)))
                sent += pub.send(out)
        return sent

    def wait_alerts(
        self, rule: str, area: str, n: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.hub.http.get(
                "/api/v1/alerts", params={"rule": rule, "area": area, "active": True, "limit": 500}
            )
            r.raise_for_status()
            items: list[dict[str, Any]] = r.json()["items"]
            if len(items) >= n:
                return items
            assert time.monotonic() < deadline, f"{len(items)} {rule} alerts in {area}"
            time.sleep(0.2)


def serve_city(
    broker: Broker, tmp_path: Path, response: ResponseSettings | None = None
) -> Iterator[City]:
    """A hub over ``broker`` with `DEVICES` demo devices and the demo's response set-up."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=broker.host, port=broker.port),
        http=HttpSettings(port=free_port()),
        response=response or ResponseSettings(photo_max_bytes=64 * 1024),
    )
    devices = demo_devices(DEVICES)
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(devices)
    registry.engine.dispose()
    hub = ServedHub(settings)  # creates the administrator: the users table must be empty before
    try:
        load_demo_response(settings, devices)
        users = UserStore(settings.registry)
        for name, role, area in ACCOUNTS:
            users.create_user(name, role, password=PASSWORD, area=area)
        users.engine.dispose()
        yield City(hub, devices, broker)
    finally:
        hub.stop()


def events_of(city: City) -> list[dict[str, Any]]:
    """Subscribe to the response feed of the running hub; the list fills as changes commit."""
    seen: list[dict[str, Any]] = []
    city.app_state.response.feed.subscribe(lambda e: seen.append(json.loads(json.dumps(e.wire()))))
    return seen
