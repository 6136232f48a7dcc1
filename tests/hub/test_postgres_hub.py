"""The whole hub on PostgreSQL: it migrates an empty database at start and serves from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.db import current, head_revision
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_hub(private_broker: Broker, tmp_path: Path, postgres_url: str) -> Iterator[ServedHub]:
    """A hub whose every SQL table lives in a fresh PostgreSQL database (nothing made beforehand)."""
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


def test_the_hub_migrates_postgresql_at_start_and_works_on_it(
    pg_hub: ServedHub, postgres_url: str
) -> None:
    assert current(postgres_url) == head_revision()
    assert not (pg_hub.settings.data_dir / "hub.db").exists()  # nothing went to SQLite
    r = pg_hub.http.post(
        "/api/v1/devices", json={"id": "wl-77777", "profile": "hydrox-wl", "vendor": "hydrox"}
    )
    assert r.status_code in (200, 201), r.text
    r = pg_hub.http.get("/api/v1/devices", params={"limit": 500})
    r.raise_for_status()
    assert "wl-77777" in r.text
    rule = {"id": "pg-gas", "kind": "threshold", "metric": "gas_lel", "levels": {"red": 50}}
    r = pg_hub.http.post("/api/v1/rules", json=rule)
    assert r.status_code in (200, 201), r.text
    r = pg_hub.http.get("/api/v1/rules/history")
    r.raise_for_status()
    assert "pg-gas" in r.text
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:  # the rows are in PostgreSQL itself
            devices = conn.execute(sa.text("SELECT count(*) FROM devices WHERE id = 'wl-77777'"))
            assert devices.scalar() == 1
            edits = conn.execute(
                sa.text("SELECT count(*) FROM rules_history WHERE rule = 'pg-gas'")
            )
            assert edits.scalar() == 1
            users = conn.execute(sa.text("SELECT count(*) FROM users WHERE name = 'admin'"))
            assert users.scalar() == 1
    finally:
        engine.dispose()
