"""Grafana's provisioning and dashboards: checked statically, and every panel's InfluxQL run on demo data.

Grafana itself does not run here, so the dashboards' JSON is checked for the structure Grafana
needs (ids, grid, datasource, targets, variables), and every query each panel sends is run, with
Grafana's macros filled in as Grafana would, against a real InfluxDB 1.6 that a real hub filled:
the demo city's simulated sensors over Mosquitto, a storm that raises alerts, a duty officer
acknowledging some, and a few bad payloads.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from devices.loader import load_shipped
from devices.registry import Registry
from hub.democity import demo_devices
from hub.settings import HttpSettings, HubSettings, MqttSettings, StoreSettings
from hub.simulator import run_simulation
from hub.storm import DEMO_DISTRICT, Storm
from ingest.store.influx import InfluxStore
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.influxd import Influxd
from tests.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "table", "barchart", "bargauge", "gauge"}
DEVICES = 800
RATE = 400.0


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel, query) of every panel target and every query variable."""
    out = []
    for path in DASHBOARDS:
        d = load(path)
        for p in d["panels"]:
            out += [(path.stem, p["title"], t["query"]) for t in p["targets"]]
        out += [(path.stem, f"${v['name']}", v["query"]) for v in d["templating"]["list"]]
    return out


def test_the_dashboards_are_what_the_builder_writes() -> None:
    rendered = builder().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == rendered[path.name], (
            f"{path.name} is stale: run .venv/bin/python grafana/build_dashboards.py"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_a_dashboard_has_the_structure_grafana_needs(path: Path) -> None:
    d = load(path)
    datasource = provisioned_datasource()
    assert d["uid"].startswith("cityhub-")
    assert len(d["uid"]) <= 40
    assert d["title"]
    assert d["schemaVersion"] >= 36
    assert d["panels"]
    variables = {v["name"] for v in d["templating"]["list"]}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] < g["x"] + g["w"] <= 24, p["title"]
        assert g["h"] > 0, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["datasource"] == {"type": "influxdb", "uid": datasource["uid"]}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["rawQuery"] is True
            assert t["resultFormat"] in {"time_series", "table"}
            assert t["datasource"] == p["datasource"]
            assert "$timeFilter" in t["query"], (p["title"], "a query must follow the time picker")
            used = set(re.findall(r"\$(\w+)", t["query"])) - {"timeFilter", "__interval"}
            assert used <= variables, (p["title"], used - variables)
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values) or values == sorted(values, reverse=True), p["title"]


def provisioned_datasource() -> dict[str, Any]:
    conf = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    (ds,) = conf["datasources"]
    return dict(ds)


def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_provisioning_names_an_influxql_datasource_and_the_dashboards() -> None:
    ds = provisioned_datasource()
    assert ds["type"] == "influxdb"
    assert ds["uid"] == "cityhub-influx"
    assert ds["access"] == "proxy"
    assert ds["jsonData"]["dbName"] == "cityhub"
    assert ds["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    assert (
        ds["user"] == "${INFLUX_GRAFANA_USER}"
    )  # a read-only user made by deploy/influxdb/init.sh
    assert ds["secureJsonData"]["password"] == "${INFLUX_GRAFANA_PASSWORD}"
    grafana_env = compose_file()["services"]["grafana"]["environment"]
    assert {"INFLUX_URL", "INFLUX_GRAFANA_USER", "INFLUX_GRAFANA_PASSWORD"} <= set(grafana_env)
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/cityhub.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    mounts = compose_file()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# -- every query on demo data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_influx(
    tmp_path_factory: pytest.TempPathFactory, influxd: Influxd
) -> Iterator[InfluxStore]:
    """A hub on InfluxDB that ran the demo city through a storm, then stopped."""
    tmp = tmp_path_factory.mktemp("grafana")
    broker = Broker(tmp / "mosquitto")
    broker.start()
    settings = HubSettings(
        data_dir=tmp / "hub",
        mqtt=MqttSettings(embedded=False, host=broker.host, port=broker.port),
        http=HttpSettings(port=free_port()),
        store=StoreSettings(backend="influx", influx=influxd.settings(stats_interval_s=0.5)),
    )
    settings.data_dir.mkdir()
    registry = Registry(settings.registry)
    load_shipped(registry)
    devices = demo_devices(DEVICES)
    registry.put_devices(devices)
    registry.engine.dispose()
    hub = ServedHub(settings)
    started = int(time.time() * 1000)
    try:
        storm = Storm(
            DEMO_DISTRICT,
            time.time() + 2,
            peak_mm_h=100.0,
            ramp_s=4.0,
            rise_m_h=400.0,
            open_covers=0.3,
        )
        stop = threading.Event()
        sim = threading.Thread(
            target=run_simulation,
            args=(broker.host, broker.port, devices, RATE, 14.0),
            kwargs={"stop": stop, "scenarios": [storm]},
            daemon=True,
        )
        sim.start()
        with Publisher(broker.host, broker.port) as pub:  # a vendor's firmware bug
            pub.send([("sensors/acme/mc-00001/up", "{not json"), ("sensors/acme/ghost-9/up", "{}")])
        acked: set[int] = set()
        deadline = time.monotonic() + 40
        while len(acked) < 3 and time.monotonic() < deadline:
            time.sleep(1)
            items = hub.http.get("/api/v1/alerts", params={"active": True, "limit": 50}).json()[
                "items"
            ]
            for a in items:
                if a["state"] == "raised" and len(acked) < 3:
                    hub.http.post(f"/api/v1/alerts/{a['id']}/ack", json={}).raise_for_status()
                    acked.add(a["id"])
        assert len(acked) == 3, "the storm raised fewer than three alerts"
        sim.join(30)
        time.sleep(1.5)  # a few more hub_stats points
        store: InfluxStore = hub.server.config.app.state.store  # type: ignore[attr-defined]
        store.rollup(started - 120_000, int(time.time() * 1000) + 60_000)
        yield store
    finally:
        stop.set()
        hub.stop()
        broker.stop()


def fill_macros(query: str) -> str:
    """The query as Grafana sends it for the last hour, every district, 2 s intervals."""
    return (
        query.replace("$timeFilter", "time >= now() - 1h")
        .replace("$__interval", "2s")
        .replace("$district", ".*")
    )


@pytest.mark.slow
@pytest.mark.influx
@pytest.mark.parametrize(
    ("dashboard", "panel", "query"), targets(), ids=[f"{d}:{p}" for d, p, _ in targets()]
)
def test_every_panel_query_returns_rows_on_demo_data(
    demo_influx: InfluxStore, dashboard: str, panel: str, query: str
) -> None:
    found = demo_influx.http.query(fill_macros(query), rp="raw")
    rows = [r for s in found for r in s.values]
    assert rows, f"{dashboard} / {panel}: no rows for {fill_macros(query)}"
    assert any(v is not None for r in rows for v in r[1:]), f"{dashboard} / {panel}: only nulls"
