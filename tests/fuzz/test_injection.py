"""SQL and InfluxQL injection in every filter parameter: a 4xx or nothing found, and nothing touched.

Every GET operation of the OpenAPI document is called with injection strings in each of its string
query parameters and path parameters, as the administrator (who sees everything, so a filter widened
by an injection would show). A filter by a name (area, device, vendor, metric...: hub/filters.py) must
answer 422 with the parameter named; any other a 4xx problem, or a 2xx whose lists are empty; and
afterwards the hub holds exactly what it held before: devices, users, rules, readings, dead letters.
The readings route is the one filter that reaches InfluxQL (``ingest/store/influx.py``): it runs
against a hub on the real InfluxDB too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.loader import load_shipped
from devices.registry import Registry
from hub.filters import NAME_FILTERS
from hub.settings import HttpSettings, HubSettings, MqttSettings, StoreSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY, ServedHub
from tests.influxd import Influxd
from tests.publisher import Publisher

pytestmark = pytest.mark.broker

INJECTIONS = (
    "' OR '1'='1",
    "x' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE devices; --",
    "x'; DELETE FROM users; --",
    "x' UNION SELECT name, password_hash FROM users --",
    "%",
    "*",
    "water_level' OR metric =~ /.*/ --",
    "water_level'; DROP MEASUREMENT readings; --",
    "\\' OR 1=1 --",
    "1 OR 1=1",
)
# Not filters: they choose a representation, a page, or a time, and are checked by type.
NOT_FILTERS = {"limit", "offset", "start", "end", "since", "until", "every", "format"}


def _items(body: Any) -> int:
    """How many things an answer lists (0 for an object that lists nothing)."""
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        if "items" in body and isinstance(body["items"], list):
            return len(body["items"])
        if body.get("type") == "FeatureCollection":
            return len(body.get("features", []))
    return 0


def snapshot(hub: ServedHub) -> dict[str, Any]:
    """What the hub holds, as the administrator reads it."""
    get = hub.http.get
    return {
        "devices": get("/api/v1/devices", params={"limit": 1000}).json()["total"],
        "users": len(get("/api/v1/users").json()),
        "rules": len(get("/api/v1/rules").json()),
        "rejects": get("/api/v1/rejects").json()["total"],
        "readings": hub.health()["readings_stored"],
        "bin": get(
            "/api/v1/devices/bin-00001/readings",
            params={"metric": "fill_level", "start": "2020-01-01T00:00:00Z"},
        ).json()["ts"],
    }


def filter_calls(hub: ServedHub) -> Iterator[tuple[str, dict[str, str], str]]:
    """``(path, query, injected parameter)`` for every string filter of every GET operation."""
    spec = hub.http.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None or path in ("/metrics", "/healthz"):
            continue
        params = op.get("parameters", [])
        required = {
            p["name"]: "fill_level" if p["name"] == "metric" else "1"
            for p in params
            if p.get("in") == "query" and p.get("required")
        }
        for p in params:
            schema = json.dumps(p.get("schema", {}))
            if p["name"] in NOT_FILTERS or '"string"' not in schema or "date-time" in schema:
                continue
            for text in INJECTIONS:
                if p["in"] == "query":
                    yield path, {**required, p["name"]: text}, p["name"]
                elif p["in"] == "path":
                    filled = path.replace("{" + p["name"] + "}", text.replace("/", "%2F"))
                    for other in [q for q in params if q["in"] == "path" and q is not p]:
                        filled = filled.replace("{" + other["name"] + "}", "1")
                    yield filled, required, p["name"]


def inject_everywhere(hub: ServedHub) -> int:
    calls = 0
    for path, query, name in filter_calls(hub):
        r = hub.http.get(path, params=query)
        calls += 1
        where = f"GET {path} {name}={query.get(name, '(path)')!r}: {r.status_code} {r.text[:200]}"
        assert r.status_code < 500, where
        if name in NAME_FILTERS and name in query:
            # Filters by a name refuse what cannot be one (hub/filters.py), with its reason.
            assert r.status_code == 422, where
            assert name in r.json()["detail"], where
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), where
        else:
            assert _items(r.json()) == 0, where
    return calls


def publish_city(hub: ServedHub, broker: Broker) -> None:
    now_ms = int(time.time() * 1000)
    pub = Publisher(broker.host, broker.port, "inject-pub")
    try:
        pub.send(
            [
                (f"sensors/acme/bin-{i:05d}/up", json.dumps({"ts": now_ms - 1000, "fill": 40.0}))
                for i in range(30)
            ]
            + [("sensors/acme/bin-00001/up", b"not json")]
        )
    finally:
        pub.close()
    hub.wait_stored(30)


def test_injection_in_every_filter_is_refused_or_finds_nothing_sqlite(
    hub: ServedHub, private_broker: Broker
):
    publish_city(hub, private_broker)
    before = snapshot(hub)
    assert before["bin"]
    assert before["rejects"] == 1
    calls = inject_everywhere(hub)
    assert calls > 100
    assert snapshot(hub) == before


@pytest.fixture
def influx_hub(private_broker: Broker, influxd: Influxd, tmp_path: Path) -> Iterator[ServedHub]:
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        store=StoreSettings(backend="influx", influx=influxd.settings(stats_interval_s=0.3)),
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


@pytest.mark.influx
def test_injection_in_the_readings_filters_never_reaches_influxql(
    influx_hub: ServedHub, private_broker: Broker
):
    publish_city(influx_hub, private_broker)
    before = snapshot(influx_hub)
    assert before["bin"]
    for text in INJECTIONS:
        for params in (
            {"metric": text},
            {"metric": "fill_level", "every": text},
            {"metric": "fill_level", "start": text},
        ):
            r = influx_hub.http.get("/api/v1/devices/bin-00001/readings", params=params)
            assert 400 <= r.status_code < 500, (params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = influx_hub.http.get(
            f"/api/v1/devices/{text.replace('/', '%2F')}/readings", params={"metric": "fill_level"}
        )
        assert r.status_code == 404, r.text
    assert inject_everywhere(influx_hub) > 100
    assert snapshot(influx_hub) == before
