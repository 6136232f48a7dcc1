"""Fixtures for the hostile-input tests: the codec tests' registry (shipped profiles, test devices)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.registry import Registry
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.ingest.codecs.conftest import make_test_registry


@pytest.fixture(scope="session")
def fuzz_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on a SQLite file with every shipped profile and one test device per profile."""
    reg = make_test_registry(tmp_path_factory.mktemp("fuzz-registry") / "registry.db")
    yield reg
    reg.engine.dispose()


# The served hub (real uvicorn, real Mosquitto) of the hub tests.
from tests.hub.conftest import hub  # noqa: E402, F401


@pytest.fixture
def pg_hub(private_broker: Broker, tmp_path: Path, postgres_url: str) -> Iterator[ServedHub]:
    """The hub with every SQL table in PostgreSQL, which refuses what SQLite stores (NUL, overlong)."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        registry_url=postgres_url,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
    )
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()
