"""Readings published over real Mosquitto become alerts on ``hub/alerts/#`` and in the API; rules edited over HTTP.

The hub runs as in production (uvicorn, its rule engine, its alert store); readings go in through a
real paho publisher; alert events are read back by a real MQTT subscriber.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.settings import HttpSettings, HubSettings, MqttSettings, RulesSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher


class AlertListener:
    """A real MQTT subscriber on ``hub/alerts/#``, keeping (topic, body) of every message."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-listener")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.subscribe("hub/alerts/#", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(10), "subscription to hub/alerts/# not acknowledged"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def wait_for(self, want: Any, timeout: float = 10) -> tuple[str, dict[str, Any]]:
        """The first message for which ``want(topic, body)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for topic, body in self.messages:
                    if want(topic, body):
                        return topic, body
            time.sleep(0.02)
        with self._lock:
            seen = [(t, b["change"], b["alert"]["rule"]) for t, b in self.messages]
        raise AssertionError(f"no such alert message in {timeout} s; seen: {seen}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def listener(private_broker: Broker) -> Iterator[AlertListener]:
    a = AlertListener(private_broker)
    try:
        yield a
    finally:
        a.close()


def _wl(device: str, ts_s: float, cm: float) -> tuple[str, str]:
    return (
        f"sensors/hydrox/{device}/up",
        json.dumps([{"bn": f"{device}:", "bt": ts_s, "n": "water_level", "u": "cm", "v": cm}]),
    )


def _bin(device: str, ts_ms: int, fill: float, temp: float = 20.0) -> tuple[str, str]:
    return f"sensors/acme/{device}/up", json.dumps({"ts": ts_ms, "fill": fill, "temp": temp})


def _alerts(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/alerts", params=params)
    r.raise_for_status()
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_high_water_raises_one_alert_on_mqtt_and_in_the_api(
    hub: ServedHub, private_broker: Broker, listener: AlertListener
) -> None:
    now = time.time()
    with Publisher(private_broker.host, private_broker.port) as pub:
        # The shipped rule wants two readings in a row (repeat: 2); wl-00001 has its own surveyed
        # levels (orange from 5.3 m). 560 cm is orange there.
        pub.send([_wl("wl-00001", now - 2, 560), _wl("wl-00001", now - 1, 561)])
    topic, body = listener.wait_for(
        lambda _t, b: b["alert"]["rule"] == "water-level-high" and b["change"] == "created"
    )
    alert_id = body["alert_id"]
    assert topic == f"hub/alerts/orange/{alert_id}"
    assert body["alert"]["device"] == "wl-00001"
    assert body["alert"]["value"] == pytest.approx(5.61)
    detail = hub.http.get(f"/api/v1/alerts/{alert_id}").json()
    assert detail["level"] == "orange"
    assert detail["state"] == "raised"
    assert [e["value"] for e in detail["evidence"]][-1] == pytest.approx(5.61)
    # More breaching readings update the one alert; a red one escalates it, recorded in its history.
    with Publisher(private_broker.host, private_broker.port) as pub:
        pub.send([_wl("wl-00001", now, 562), _wl("wl-00001", now + 0.5, 650)])
        pub.send([_wl("wl-00001", now + 0.7, 651)])
    listener.wait_for(lambda t, b: b["alert_id"] == alert_id and t.startswith("hub/alerts/red/"))
    mine = [a for a in _alerts(hub.http, rule="water-level-high") if a["device"] == "wl-00001"]
    assert [a["id"] for a in mine] == [alert_id]
    assert mine[0]["level"] == "red"
    # A duty officer acknowledges it: the change goes out on MQTT too, with who did it.
    r = hub.http.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "watching the bund"})
    assert r.status_code == 200, r.text
    _, ack = listener.wait_for(
        lambda _t, b: b["alert_id"] == alert_id and b["action"] == "acknowledge"
    )
    assert ack["actor"] == "admin"


def test_status_reports_the_engine(hub: ServedHub, private_broker: Broker) -> None:
    now = time.time()
    with Publisher(private_broker.host, private_broker.port) as pub:
        pub.send([_bin(f"bin-{i:05d}", int(now * 1000), 10.0) for i in range(5)])
    hub.wait_stored(10)
    deadline = time.monotonic() + 10
    while (status := hub.health())["alerts"]["readings_evaluated"] < 10:  # type: ignore[index]
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["alerts"]["rules"] > 20  # type: ignore[index]


def test_a_rule_added_over_the_api_fires_and_its_deletion_clears(
    hub: ServedHub, private_broker: Broker, listener: AlertListener
) -> None:
    rule = {
        "id": "bin-half-full",
        "kind": "threshold",
        "name": "Bins half full in Huangpu",
        "device_type": "bin_fill",
        "metric": "fill_level",
        "areas": ["sh/huangpu"],
        "levels": {"blue": 50},
    }
    r = hub.http.post("/api/v1/rules", json=rule)
    assert r.status_code == 201, r.text
    assert r.json()["origin"] == "api"
    assert hub.http.post("/api/v1/rules", json=rule).status_code == 409
    now_ms = int(time.time() * 1000)
    with Publisher(private_broker.host, private_broker.port) as pub:
        # bin-00001 is in huangpu, bin-00025 in xuhui: only the first is in the rule's area.
        pub.send([_bin("bin-00001", now_ms, 60.0), _bin("bin-00025", now_ms, 60.0)])
    _, raised = listener.wait_for(lambda _t, b: b["alert"]["rule"] == "bin-half-full")
    assert raised["alert"]["device"] == "bin-00001"
    assert raised["alert"]["level"] == "blue"
    r = hub.http.delete("/api/v1/rules/bin-half-full", params={"note": "too noisy"})
    assert r.status_code == 200, r.text
    assert r.json() is None
    listener.wait_for(
        lambda _t, b: b["alert"]["rule"] == "bin-half-full" and b["alert"]["condition"] == "cleared"
    )
    history = hub.http.get("/api/v1/rules/history", params={"rule": "bin-half-full"}).json()
    assert [(h["action"], h["actor"]) for h in history] == [("delete", "admin"), ("put", "admin")]
    assert history[0]["note"] == "too noisy"
    assert not [a for a in _alerts(hub.http, rule="bin-half-full") if a["device"] == "bin-00025"]


def test_an_override_of_a_shipped_rule_takes_effect_and_its_deletion_restores_the_file(
    hub: ServedHub,
) -> None:
    shipped = hub.http.get("/api/v1/rules/bin-full").json()
    assert shipped["origin"] == "alerts/data/rules.yaml"
    changed = {**shipped["definition"], "levels": {"blue": 70, "yellow": 90}}
    r = hub.http.put("/api/v1/rules/bin-full", json=changed, params={"note": "festival week"})
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == "alerts/data/rules.yaml"
    assert r.json()["definition"]["levels"]["blue"]["above"] == 70
    restored = hub.http.delete("/api/v1/rules/bin-full").json()
    assert restored["origin"] == "alerts/data/rules.yaml"
    assert restored["definition"]["levels"]["blue"]["above"] == 80
    # A file rule that was never edited cannot be deleted over the API: the file owns it.
    r = hub.http.delete("/api/v1/rules/bin-full")
    assert r.status_code == 409
    assert "alerts/data/rules.yaml" in r.json()["detail"]


def test_invalid_rules_are_refused_with_the_field_named(hub: ServedHub) -> None:
    bad = {"id": "x", "kind": "threshold", "metric": "fill_level", "levels": {"purple": 3}}
    r = hub.http.post("/api/v1/rules/validate", json=bad)
    assert r.status_code == 422
    assert "levels" in r.json()["detail"]
    dangling = {"id": "combo", "kind": "composite", "all_of": ["bin-full", "no-such-rule"]}
    r = hub.http.post("/api/v1/rules", json=dangling)
    assert r.status_code == 422
    assert "all_of[1]" in r.json()["detail"]
    assert "no-such-rule" in r.json()["detail"]
    r = hub.http.put("/api/v1/rules/other-id", json={**bad, "levels": {"blue": 1}})
    assert r.status_code == 422
    assert "does not match" in r.json()["detail"]
    assert hub.http.get("/api/v1/rules/combo").status_code == 404


def test_officers_read_rules_but_only_commanders_change_them(hub: ServedHub) -> None:
    from devices.access import Role  # noqa: PLC0415
    from devices.users import UserStore  # noqa: PLC0415

    users = UserStore(hub.settings.registry)
    users.create_user("duty", Role.OFFICER, password="a long enough password")
    users.create_user("chief", Role.COMMANDER, password="a long enough password")
    officer = hub.client("duty", "a long enough password")
    commander = hub.client("chief", "a long enough password")
    assert officer.get("/api/v1/rules").status_code == 200
    rule = {"id": "n", "kind": "threshold", "metric": "noise", "levels": {"blue": 90}}
    assert officer.post("/api/v1/rules", json=rule).status_code == 403
    assert commander.post("/api/v1/rules", json=rule).status_code == 201


def _settings(broker: Broker, data: Path, rules: Path) -> HubSettings:
    return HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=broker.host, port=broker.port),
        http=HttpSettings(port=free_port()),
        rules=RulesSettings(paths=(rules,), tick_s=0.2),
    )


def test_a_restart_in_the_middle_of_a_for_window_keeps_the_window(
    private_broker: Broker, tmp_path: Path, listener: AlertListener
) -> None:
    from devices.loader import load_shipped  # noqa: PLC0415
    from devices.registry import Registry  # noqa: PLC0415
    from tests.hub.conftest import CITY  # noqa: PLC0415

    rules = tmp_path / "city-rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: bin-hot-for-4s\n"
        "    kind: threshold\n"
        "    device_type: bin_fill\n"
        "    metric: temperature\n"
        "    levels: {red: 50}\n"
        "    for_s: 4\n"
    )
    data = tmp_path / "hub"
    data.mkdir()
    registry = Registry(_settings(private_broker, data, rules).registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()

    first = ServedHub(_settings(private_broker, data, rules))
    started = time.time()
    with Publisher(private_broker.host, private_broker.port) as pub:
        pub.send([_bin("bin-00003", int(started * 1000), 10.0, temp=70.0)])
    first.wait_stored(1)
    time.sleep(0.5)
    first.stop()  # saves the engine's state, with the window one second old
    assert not [m for m in listener.messages if m[1]["alert"]["rule"] == "bin-hot-for-4s"]

    # No reading after the restart: only the kept window can raise the alert, on the clock.
    second = ServedHub(_settings(private_broker, data, rules))
    try:
        _, raised = listener.wait_for(
            lambda _t, b: b["alert"]["rule"] == "bin-hot-for-4s", timeout=15
        )
        waited = time.time() - started
        assert 4 <= waited < 10, waited
        assert raised["alert"]["device"] == "bin-00003"
    finally:
        second.stop()
