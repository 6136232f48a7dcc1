"""A served hub for the security review: real Mosquitto, real uvicorn, a password on the MQTT login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from devices.loader import load_shipped
from devices.registry import Registry
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY, ServedHub

MQTT_PASSWORD = "mqtt-Secret-0f9b2c7d1e"


@pytest.fixture
def secure_hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    """The hub with the shipped profiles and the test city; it logs in to the broker with a password."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(
            embedded=False,
            host=private_broker.host,
            port=private_broker.port,
            username="hub-ingest",
            password=SecretStr(MQTT_PASSWORD),
        ),
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
