"""Alert notifications: the fan-out, MQTT out through a real Mosquitto, webhooks against a real server."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.errors import WebhookConfigError
from alerts.events import ConditionEvent, Evidence, Level
from alerts.lifecycle import Action, AlertChange
from alerts.notify import AlertFeed, MqttNotifier, NotifySettings, alert_topic
from alerts.store import AlertStore
from alerts.webhook import Delivery, Outcome, WebhookNotifier, backoff, classify
from alerts.wire import change_body
from devices.access import Role
from ingest.mqtt import MqttOptions, MqttTransport
from tests.conftest import Broker, free_port


def firing(
    level: Level = Level.RED, *, rule: str = "wl-high", at_ms: int = 1_763_798_400_000
) -> ConditionEvent:
    return ConditionEvent(
        rule=rule,
        source="device:wl-00001",
        kind="threshold",
        level=level,
        firing=True,
        at_ms=at_ms,
        summary="water level 5.32 m above red 5.20 m",
        device="wl-00001",
        area="sh/huangpu/bund",
        metric="water_level",
        value=5.32,
        evidence=(Evidence("wl-00001", "water_level", at_ms - 1000, 5.32),),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(f"sqlite:///{tmp_path / 'hub.db'}")
    yield s
    s.dispose()


def change(store: AlertStore, rule: str = "wl-high") -> AlertChange:
    c = store.apply(firing(rule=rule))
    assert c is not None
    return c


# -- the payload and the fan-out --------------------------------------------------------------


def test_the_payload_says_what_changed_and_carries_the_alert(store: AlertStore) -> None:
    c = change(store)
    body = change_body(c)
    assert body["id"] == f"{c.alert.id}-1"
    assert body["change"] == "created"
    assert (body["action"], body["actor"], body["from_state"], body["to_state"]) == (
        "raise",
        "system",
        None,
        "raised",
    )
    assert body["at"] == "2025-11-22T08:00:00.000Z"
    assert body["alert"]["level"] == "red"
    assert body["alert"]["condition"] == "firing"
    assert "vendor" not in body["alert"]
    assert alert_topic(c) == f"hub/alerts/red/{c.alert.id}"
    assert json.loads(json.dumps(body)) == body


def test_the_feed_fans_out_and_survives_a_failing_subscriber(store: AlertStore) -> None:
    feed = AlertFeed()
    got: list[tuple[str, int]] = []

    def broken(_c: AlertChange) -> None:
        raise RuntimeError("bug")

    feed.subscribe(lambda c: got.append(("a", c.entry.seq)))
    feed.subscribe(broken)
    unsubscribe = feed.subscribe(lambda c: got.append(("b", c.entry.seq)))
    c = change(store)
    feed.publish(c)
    unsubscribe()
    feed.publish(c)
    assert got == [("a", 1), ("b", 1), ("a", 1)]
    assert feed.failures == 2


@pytest.mark.parametrize(
    ("status", "delivered", "recoverable"),
    [
        (200, True, False),
        (204, True, False),
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, False, True),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
    ],
)
def test_classify(status: int, delivered: bool, recoverable: bool) -> None:
    verdict = classify(status)
    assert (verdict.delivered, verdict.recoverable) == (delivered, recoverable)


def test_backoff_grows_exponentially_within_its_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(20):
            assert ceiling / 2 <= backoff(attempt, 0.5, 30.0, rng) <= ceiling


def test_a_webhook_needs_an_http_url() -> None:
    for url in ("ftp://x/y", "http://", "hooks.example.com/x"):
        with pytest.raises(WebhookConfigError):
            WebhookNotifier(url)


# -- MQTT out through a real broker -----------------------------------------------------------


@pytest.mark.broker
def test_an_applied_event_arrives_on_hub_alerts(private_broker: Broker, tmp_path: Path) -> None:
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    arrived = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="screen", protocol=mqtt.MQTTv5)
    sub.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        if len(received) >= 2:
            arrived.set()

    sub.on_message = on_message
    sub.on_connect = lambda c, *_a: c.subscribe("hub/alerts/#", qos=1)
    sub.connect(private_broker.host, private_broker.port)
    sub.loop_start()
    transport = MqttTransport(
        MqttOptions(host=private_broker.host, port=private_broker.port, client_id="hub-alerts"),
        [],
        lambda *_a: None,
    )
    transport.start()
    try:
        assert subscribed.wait(10)
        assert transport.connected.wait(10)
        feed = AlertFeed()
        notifier = MqttNotifier(transport)
        feed.subscribe(notifier)
        store = AlertStore(f"sqlite:///{tmp_path / 'hub.db'}", on_change=feed.publish)
        created = store.apply(firing(Level.ORANGE))
        assert created is not None
        acked = store.act(created.alert.id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
        assert arrived.wait(10), received
        first, second = received
        assert first.topic == f"hub/alerts/orange/{created.alert.id}"
        assert first.qos == 1
        assert not first.retain
        body = json.loads(first.payload)
        assert (body["change"], body["alert"]["id"], body["alert"]["level"]) == (
            "created",
            created.alert.id,
            "orange",
        )
        assert json.loads(second.payload)["id"] == f"{acked.alert.id}-2"
        assert json.loads(second.payload)["to_state"] == "acknowledged"
        assert notifier.published == 2
        store.dispose()
    finally:
        transport.stop()
        sub.disconnect()
        sub.loop_stop()


# -- webhooks against a real HTTP server ------------------------------------------------------


class Receiver:
    """A local HTTP server answering POSTs with scripted statuses (then 200), recording each one."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.gate.wait(30)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((headers, body, time.monotonic()))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                for k, v in receiver.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.stop()


class Log:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.done = threading.Condition()

    def record_delivery(self, delivery: Delivery) -> None:
        with self.done:
            self.deliveries.append(delivery)
            self.done.notify_all()

    def wait(self, n: int, timeout: float = 10) -> list[Delivery]:
        with self.done:
            assert self.done.wait_for(lambda: len(self.deliveries) >= n, timeout), self.deliveries
            return list(self.deliveries)


def webhook(url: str, log: Log | AlertStore, **kw: float) -> WebhookNotifier:
    options = {"base_delay_s": 0.05, "max_delay_s": 0.5, "timeout_s": 2.0, **kw}
    hook = WebhookNotifier(url, log=log, rng=random.Random(0), **options)  # type: ignore[arg-type]
    hook.start()
    return hook


def test_webhook_retries_a_503_then_delivers(receivers: list[Receiver], store: AlertStore) -> None:
    r = Receiver([503])
    receivers.append(r)
    hook = webhook(r.url, store)
    c = change(store)
    hook(c)
    deadline = time.monotonic() + 10
    while not store.deliveries(c.alert.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    hook.stop()
    (d,) = store.deliveries(c.alert.id)
    assert (d.outcome, d.attempts, d.status, d.channel) == (Outcome.DELIVERED, 2, 200, "webhook")
    assert d.target.endswith("/hook")  # the query (a token) never reaches the log
    assert "s3cret" not in d.target
    (h1, b1, t1), (h2, b2, t2) = r.requests
    assert b1 == b2
    assert json.loads(b1)["alert"]["id"] == c.alert.id
    assert h1["idempotency-key"] == h2["idempotency-key"] == f"{c.alert.id}-1"
    assert h1["content-type"] == "application/json"
    assert t2 - t1 >= 0.025  # backed off (half the first delay at least)
    assert (hook.stats.delivered, hook.stats.retries) == (1, 1)


def test_webhook_gives_up_at_once_on_a_4xx(receivers: list[Receiver], store: AlertStore) -> None:
    r = Receiver([400])
    receivers.append(r)
    log = Log()
    hook = webhook(r.url, log)
    hook(change(store))
    (d,) = log.wait(1)
    hook.stop()
    assert (d.outcome, d.attempts, d.status, d.error) == (Outcome.FAILED, 1, 400, "HTTP 400")
    assert len(r.requests) == 1


def test_webhook_honours_retry_after_on_429(receivers: list[Receiver], store: AlertStore) -> None:
    r = Receiver([429, 429], headers={"Retry-After": "0"})
    receivers.append(r)
    log = Log()
    hook = webhook(r.url, log, base_delay_s=30, max_delay_s=60)  # backoff alone would take 30 s
    hook(change(store))
    (d,) = log.wait(1)
    hook.stop()
    assert (d.outcome, d.attempts) == (Outcome.DELIVERED, 3)


def test_webhook_retries_connection_errors_then_gives_up(store: AlertStore) -> None:
    log = Log()
    hook = webhook(f"http://127.0.0.1:{free_port()}/hook", log, max_attempts=3)
    hook(change(store))
    (d,) = log.wait(1)
    hook.stop()
    assert (d.outcome, d.attempts, d.status) == (Outcome.FAILED, 3, None)
    assert "ConnectError" in d.error
    assert hook.stats.retries == 2


def test_a_stalled_webhook_never_blocks_and_drops_its_oldest(
    receivers: list[Receiver], store: AlertStore
) -> None:
    r = Receiver([])
    r.gate.clear()  # the receiver hangs on the first request
    receivers.append(r)
    log = Log()
    hook = webhook(r.url, log, queue_size=3, timeout_s=20)
    changes = [change(store, rule=f"r{i}") for i in range(8)]
    hook(changes[0])
    deadline = time.monotonic() + 5
    while hook.pending and time.monotonic() < deadline:  # the worker holds #0 in its request
        time.sleep(0.01)
    started = time.monotonic()
    for c in changes[1:]:
        hook(c)
    assert time.monotonic() - started < 0.1  # queuing never waits for the receiver
    assert hook.pending == 3
    r.gate.set()
    deliveries = log.wait(8)
    hook.stop()
    dropped = [d.alert_id for d in deliveries if d.outcome is Outcome.DROPPED]
    delivered = [d.alert_id for d in deliveries if d.outcome is Outcome.DELIVERED]
    ids = [c.alert.id for c in changes]
    assert dropped == ids[1:5]  # the oldest queued went first
    assert delivered == [ids[0], *ids[5:]]
    assert hook.stats.dropped == 4


def test_settings_build_the_notifiers(receivers: list[Receiver], store: AlertStore) -> None:
    r = Receiver([])
    receivers.append(r)
    settings = NotifySettings.model_validate(
        {"webhooks": [{"url": r.url, "headers": {"Authorization": "Bearer x"}}]}
    )
    (hook,) = settings.webhook_notifiers(store)
    hook.start()
    c = change(store)
    hook(c)
    deadline = time.monotonic() + 10
    while not store.deliveries(c.alert.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    hook.stop()
    assert r.requests[0][0]["authorization"] == "Bearer x"
    assert store.deliveries(c.alert.id)[0].outcome is Outcome.DELIVERED
