"""``GET /metrics`` on a real hub: Prometheus text with ingest, rejects, queues, latencies; a token to scrape it."""

from __future__ import annotations

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devices.access import Role
from devices.users import UserStore
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

T0 = (int(time.time()) - 3600) * 1000


def scrape(client: httpx.Client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_ingest_rejects_and_time_writes_and_rules(hub: ServedHub) -> None:
    m = hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send(
            [
                (f"sensors/acme/bin-{i:05d}/up", json.dumps({"ts": T0 + i, "fill": 40, "bat": 90}))
                for i in range(10)
            ]
            + [("sensors/acme/bin-00001/up", "{not json"), ("sensors/acme/ghost-1/up", "{}")]
        )
    hub.wait_stored(20)
    deadline = time.monotonic() + 10
    while True:
        got = scrape(hub.http)
        # Dead letters are written after the readings they travelled with are stored: a scrape
        # right after `wait_stored` may come before them.
        rejects = sum(got.get("hub_rejects_total", {}).values())
        done = got["hub_rule_evaluation_seconds_count"][()] >= 1 and rejects >= 2
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got["hub_mqtt_messages_total"][()] == 12
    assert got["hub_readings_stored_total"][()] == 20
    assert got["hub_readings_decoded_total"][()] == 20
    assert got["hub_rejects_total"] == {
        (("reason", "malformed_json"),): 1.0,
        (("reason", "unknown_device"),): 1.0,
    }
    assert got["hub_store_write_seconds_count"][()] >= 1
    assert got["hub_store_write_seconds_sum"][()] > 0
    assert got["hub_rule_evaluation_seconds_count"][()] >= 1
    assert got["hub_ingest_in_flight_messages"][()] == 0
    assert got["hub_alert_queue_bursts"][()] >= 0
    assert got["hub_devices"][()] == 41
    assert got["hub_broker_connected"][()] == 1
    assert got["hub_feed_screens"][()] == 0
    assert "hub_camera_checks_total" in got
    assert got["process_resident_memory_bytes"][()] > 0


def test_a_scraper_uses_a_viewer_s_api_token_and_vendors_are_refused(hub: ServedHub) -> None:
    assert hub.anonymous.get("/metrics").status_code == 401
    users = UserStore(hub.settings.registry)
    users.create_user("prometheus", Role.VIEWER, password="a long enough password")
    users.create_user("acme-ops", Role.VENDOR, vendor="acme", password="a long enough password")
    viewer = hub.client("prometheus", "a long enough password")
    token = viewer.post("/api/v1/auth/tokens", json={"name": "prometheus scrape"}).json()
    with httpx.Client(
        base_url=hub.url, headers={"Authorization": f"Bearer {token['access_token']}"}
    ) as scraper:
        assert "hub_mqtt_messages_total" in scrape(scraper)
    vendor = hub.client("acme-ops", "a long enough password")
    assert vendor.get("/metrics").status_code == 403
