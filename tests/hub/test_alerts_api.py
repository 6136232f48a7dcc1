"""The alert API through a real hub (uvicorn, Mosquitto): list, read, act, roles, problem details."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.events import ConditionEvent, Evidence, Level
from alerts.notify import NotifySettings
from alerts.store import AlertStore
from devices.access import Role
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from devices.users import UserStore
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.alerts.test_notify import Receiver
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub

PASSWORD = "a long enough password"
# Now, to the second: the hub's router escalates alerts raised 15 minutes before its clock.
T0 = (int(time.time()) - 1) * 1000


def iso(ms: int) -> str:
    """A time as the API writes it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def hub_store(hub: ServedHub) -> AlertStore:
    """The running hub's own store: what it applies goes out through the hub's MQTT notifier."""
    store: AlertStore = hub.server.config.app.state.alert_store  # type: ignore[attr-defined]
    return store


def fire(
    hub: ServedHub,
    device: str = "wl-00001",
    level: Level = Level.ORANGE,
    *,
    rule: str = "wl-high",
    firing: bool = True,
    at_ms: int = T0,
    area: str = "sh/huangpu/bund",
    kind: str = "threshold",
) -> int:
    change = hub_store(hub).apply(
        ConditionEvent(
            rule=rule,
            source=f"device:{device}",
            kind=kind,
            level=level,
            firing=firing,
            at_ms=at_ms,
            summary=f"water level {level.label}",
            device=device,
            area=area,
            metric="water_level",
            value=5.32,
            evidence=(Evidence(device, "water_level", at_ms - 500, 5.32),),
        )
    )
    assert change is not None
    return change.alert.id


@pytest.fixture
def people(hub: ServedHub) -> dict[Role, httpx.Client]:
    users = UserStore(hub.settings.registry)
    clients = {}
    for role in Role:
        name = f"{role.value}-1"
        vendor = "acme" if role is Role.VENDOR else None
        users.create_user(name, role, vendor=vendor, password=PASSWORD)
        clients[role] = hub.client(name, PASSWORD)
    users.engine.dispose()
    return clients


@pytest.fixture
def alerts_topic(hub: ServedHub) -> Iterator[list[dict[str, object]]]:
    """Everything the hub publishes on hub/alerts/#, decoded, with its topic."""
    got: list[dict[str, object]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wall", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_a: c.subscribe("hub/alerts/#", qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = lambda _c, _u, m: got.append({"topic": m.topic, **json.loads(m.payload)})
    client.connect(hub.settings.mqtt.host, hub.settings.mqtt.port)
    client.loop_start()
    assert subscribed.wait(10)
    yield got
    client.disconnect()
    client.loop_stop()


def wait_for(got: list[dict[str, object]], n: int) -> list[dict[str, object]]:
    done = threading.Event()
    for _ in range(500):
        if len(got) >= n:
            break
        done.wait(0.02)
    assert len(got) >= n, got
    return got


def test_an_alert_from_raise_to_close(
    hub: ServedHub, people: dict[Role, httpx.Client], alerts_topic: list[dict[str, object]]
) -> None:
    officer, commander = people[Role.OFFICER], people[Role.COMMANDER]
    aid = fire(hub, level=Level.YELLOW)
    fire(hub, level=Level.RED, at_ms=T0 + 60_000)
    listed = officer.get("/api/v1/alerts", params={"active": "true"}).json()
    assert listed["total"] == 1
    item = listed["items"][0]
    assert (item["id"], item["level"], item["state"], item["condition"]) == (
        aid,
        "red",
        "raised",
        "firing",
    )
    assert item["first_at"] == iso(T0)
    assert item["allowed_actions"] == ["acknowledge", "assign", "comment"]

    r = officer.post(f"/api/v1/alerts/{aid}/resolve", json={})
    assert r.status_code == 409
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert (problem["state"], problem["action"]) == ("raised", "resolve")
    assert problem["allowed"] == ["acknowledge", "assign", "dispatch", "comment"]
    assert "raised" in problem["detail"]

    assert officer.post(f"/api/v1/alerts/{aid}/ack", json={"note": "on it"}).status_code == 200
    r = officer.post(f"/api/v1/alerts/{aid}/dispatch", json={"unit": "pump team 2"})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    r = commander.post(
        f"/api/v1/alerts/{aid}/dispatch", json={"unit": "pump team 2", "note": "bund gate 3"}
    )
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["unit"]) == ("dispatched", "pump team 2")
    assert officer.post(f"/api/v1/alerts/{aid}/resolve", json={"note": "drained"}).is_success
    r = commander.post(f"/api/v1/alerts/{aid}/close", json={})
    assert r.status_code == 409
    assert "still holds" in r.json()["detail"]
    fire(hub, level=Level.RED, firing=False, at_ms=T0 + 120_000)
    r = commander.post(f"/api/v1/alerts/{aid}/close", json={"note": "verified on site"})
    assert r.status_code == 200
    assert r.json()["state"] == "closed"
    assert r.json()["allowed_actions"] == ["comment"]

    detail = officer.get(f"/api/v1/alerts/{aid}").json()
    history = [(h["action"], h["actor"], h["to_state"], h["to_level"]) for h in detail["history"]]
    assert history == [
        ("raise", "system", "raised", "yellow"),
        ("escalate", "system", "raised", "red"),
        ("acknowledge", "officer-1", "acknowledged", "red"),
        ("dispatch", "commander-1", "dispatched", "red"),
        ("resolve", "officer-1", "resolved", "red"),
        ("clear", "system", "resolved", "red"),
        ("close", "commander-1", "closed", "red"),
    ]
    assert detail["history"][3]["target"] == "pump team 2"
    assert detail["history"][3]["note"] == "bund gate 3"
    assert [e["seq"] for e in detail["evidence"]] == [1, 2, 6]  # raise, escalate, clear
    assert detail["evidence"][0]["ts"] == iso(T0 - 500)

    # Every change went out on MQTT, at the level of the moment, in order.
    got = wait_for(alerts_topic, len(history))
    assert [(m["topic"], m["action"]) for m in got] == [
        (f"hub/alerts/yellow/{aid}", "raise"),
        *[(f"hub/alerts/red/{aid}", h[0]) for h in history[1:]],
    ]

    # Closed is not active: the condition firing again raises a new alert.
    again = fire(hub, level=Level.BLUE, at_ms=T0 + 180_000)
    assert again != aid
    assert officer.get("/api/v1/alerts", params={"active": "true"}).json()["total"] == 1


def test_roles_on_actions(hub: ServedHub, people: dict[Role, httpx.Client]) -> None:
    aid = fire(hub, "bin-00001", area="sh/huangpu/street-1")
    for role in (Role.VIEWER, Role.VENDOR):
        for action, body in (("ack", {}), ("comment", {"note": "x"}), ("close", {})):
            r = people[role].post(f"/api/v1/alerts/{aid}/{action}", json=body)
            assert r.status_code == 403, (role, action, r.text)
    r = people[Role.OFFICER].post(f"/api/v1/alerts/{aid}/close", json={"force": True})
    assert r.status_code == 403
    assert people[Role.OFFICER].post(f"/api/v1/alerts/{aid}/comment", json={"note": "x"}).is_success
    r = people[Role.ADMIN].post(f"/api/v1/alerts/{aid}/dispatch", json={"unit": "u1"})
    assert r.status_code == 200
    assert people[Role.VIEWER].get(f"/api/v1/alerts/{aid}").json()["allowed_actions"] == []


def test_a_vendor_sees_only_its_own_devices_alerts(
    hub: ServedHub, people: dict[Role, httpx.Client]
) -> None:
    own = fire(hub, "bin-00001", area="sh/huangpu/street-1")
    other = fire(hub, "wl-00001")
    vendor = people[Role.VENDOR]  # acme
    listed = vendor.get("/api/v1/alerts").json()
    assert [a["id"] for a in listed["items"]] == [own]
    assert listed["total"] == 1
    assert vendor.get(f"/api/v1/alerts/{own}").status_code == 200
    r = vendor.get(f"/api/v1/alerts/{other}")
    assert r.status_code == 404
    assert r.json()["title"] == "Alert not found"
    assert people[Role.VIEWER].get("/api/v1/alerts").json()["total"] == 2


def test_filters_sorting_and_pages(hub: ServedHub, people: dict[Role, httpx.Client]) -> None:
    fire(hub, "wl-00001", Level.BLUE, at_ms=T0)
    fire(hub, "wl-00002", Level.RED, at_ms=T0 + 1000)
    fire(hub, "bin-00003", Level.ORANGE, at_ms=T0 + 2000, area="sh/xuhui/street-0", kind="offline")
    fire(hub, "bin-00003", Level.ORANGE, firing=False, at_ms=T0 + 3000, area="sh/xuhui/street-0")
    viewer = people[Role.VIEWER]

    def devices(**params: object) -> list[str]:
        r = viewer.get("/api/v1/alerts", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return [a["device"] for a in r.json()["items"]]

    assert devices() == ["bin-00003", "wl-00002", "wl-00001"]
    assert devices(sort="severity") == ["wl-00002", "bin-00003", "wl-00001"]
    assert devices(level="orange") == ["bin-00003", "wl-00002"]
    assert devices(area="sh/huangpu") == ["wl-00002", "wl-00001"]
    assert devices(kind="offline") == ["bin-00003"]
    assert devices(condition="cleared") == ["bin-00003"]
    assert devices(device="wl-00001") == ["wl-00001"]
    assert devices(rule="wl-high", limit=1, offset=1) == ["wl-00002"]
    assert devices(until=iso(T0 + 1000)) == ["wl-00001"]
    assert devices(state=["raised", "closed"]) == ["bin-00003", "wl-00002", "wl-00001"]
    assert devices(state="closed") == []
    r = viewer.get(
        "/api/v1/alerts",
        params={"since": iso(T0 + 1000), "until": iso(T0)},
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert viewer.get("/api/v1/alerts", params={"level": "purple"}).status_code == 422
    assert viewer.get("/api/v1/alerts/999").status_code == 404


def test_assign_needs_a_person_who_can_take_alerts(
    hub: ServedHub, people: dict[Role, httpx.Client]
) -> None:
    aid = fire(hub)
    officer = people[Role.OFFICER]
    for who in ("nobody", "viewer-1", "vendor-1"):
        r = officer.post(f"/api/v1/alerts/{aid}/assign", json={"assignee": who})
        assert r.status_code == 400, (who, r.text)
    r = officer.post(f"/api/v1/alerts/{aid}/assign", json={"assignee": "commander-1"})
    assert r.status_code == 200
    assert (r.json()["assignee"], r.json()["state"]) == ("commander-1", "raised")
    assert officer.post(f"/api/v1/alerts/{aid}/comment", json={"note": ""}).status_code == 422
    assert officer.post(f"/api/v1/alerts/{aid}/dispatch", json={}).status_code == 403


def test_silences(hub: ServedHub, people: dict[Role, httpx.Client]) -> None:
    commander, officer = people[Role.COMMANDER], people[Role.OFFICER]
    body = {
        "matchers": [{"name": "area", "op": "=~", "value": "sh/huangpu(/.*)?"}],
        "ends_at": "2100-01-01T00:00:00Z",
        "comment": "flood gate maintenance",
    }
    assert officer.post("/api/v1/silences", json=body).status_code == 403
    assert people[Role.VENDOR].get("/api/v1/silences").status_code == 403
    r = commander.post("/api/v1/silences", json=body)
    assert r.status_code == 201, r.text
    silence = r.json()
    assert (silence["state"], silence["created_by"]) == ("active", "commander-1")
    assert [s["id"] for s in officer.get("/api/v1/silences").json()] == [silence["id"]]
    # The router mutes what it matches (the hub's own router, fed by the hub's own store).
    aid = fire(hub)
    router = hub.server.config.app.state.components.notifications.people  # type: ignore[attr-defined]
    assert router.muted() == {aid: "silenced"}
    r = commander.delete(f"/api/v1/silences/{silence['id']}")
    assert r.json()["state"] == "expired"
    assert officer.get("/api/v1/silences", params={"current": "true"}).json() == []
    assert router.muted() == {}
    assert commander.delete("/api/v1/silences/999").status_code == 404
    bad = commander.post("/api/v1/silences", json={**body, "matchers": []})
    assert bad.status_code == 422
    past = commander.post("/api/v1/silences", json={**body, "ends_at": "2000-01-01T00:00:00Z"})
    assert past.status_code == 400
    assert "end after" in past.json()["detail"]


def test_changes_and_escalations_reach_webhooks(private_broker: Broker, tmp_path: Path) -> None:
    """A hub configured with webhooks: every change to one, grouped and escalated to others."""
    changes, people, commanders = Receiver([503]), Receiver([]), Receiver([])
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        notify=NotifySettings.model_validate(
            {
                "webhooks": [{"url": changes.url}],
                "webhook_base_delay_s": 0.05,
                "people": {
                    "receivers": [{"url": people.url}],
                    "escalation_receivers": [{"url": commanders.url}],
                    "group_wait_s": 0,
                    "escalate_after_s": 0.5,
                    "tick_s": 0.1,
                },
            }
        ),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(
        [Device(id="wl-00001", vendor="hydrox", profile="hydrox-wl", area="sh/huangpu/bund")]
    )
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        aid = fire(served, at_ms=int(time.time() * 1000))
        deadline = time.monotonic() + 15
        while not (commanders.requests and people.requests and len(changes.requests) >= 3):
            assert time.monotonic() < deadline, (changes.requests, people.requests)
            time.sleep(0.05)
        escalated = json.loads(commanders.requests[0][1])
        assert (escalated["alert_id"], escalated["action"]) == (aid, "escalate_unacked")
        grouped = json.loads(people.requests[0][1])
        assert grouped["reason"] == "first_notification"
        assert [a["id"] for a in grouped["alerts"]] == [aid]
        sent = [json.loads(body)["action"] for _, body, _ in changes.requests]
        assert sent == ["raise", "raise", "escalate_unacked"]  # the 503 was retried
        detail = served.http.get(f"/api/v1/alerts/{aid}").json()
        assert detail["escalated_at"] is not None
        outcomes = {(d["channel"], d["seq"], d["outcome"]) for d in detail["deliveries"]}
        assert {("webhook", 1, "delivered"), ("people", 1, "delivered")} <= outcomes
    finally:
        served.stop()
        for r in (changes, people, commanders):
            r.stop()
