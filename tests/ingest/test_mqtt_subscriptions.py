"""Run-time subscriptions of the MQTT transport, on a real Mosquitto (an ingest worker's own devices).

A worker of several subscribes to its devices' topics one by one and follows the registry: what it
wants before connecting is subscribed before `connected` is set; what changes later is subscribed or
unsubscribed on the live connection, so the broker sends it exactly its devices' messages.
"""

from __future__ import annotations

import threading
import time

from ingest.mqtt import MqttOptions, MqttTransport
from tests.conftest import Broker
from tests.publisher import Publisher


class Inbox:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self.lock:
            self.topics.append(topic)

    def settle(self, want: int, timeout: float = 10.0) -> list[str]:
        """The topics received, once ``want`` arrived (and a moment for anything extra)."""
        deadline = time.monotonic() + timeout
        while len(self.topics) < want and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        with self.lock:
            got, self.topics = self.topics, []
        return got


def _topic(i: int) -> str:
    return f"sensors/acme/dev-{i:05d}/up"


def test_wanted_topics_are_subscribed_before_connected_and_followed_after(
    private_broker: Broker,
) -> None:
    inbox = Inbox()
    transport = MqttTransport(
        MqttOptions(host=private_broker.host, port=private_broker.port, client_id="worker-w1"),
        [("sensors/+/+/status", 1)],
        inbox,
    )
    # 2,500 filters: three SUBSCRIBE packets, all acknowledged before `connected`.
    transport.want_subscriptions(_topic(i) for i in range(0, 5000, 2))
    transport.start()
    try:
        assert transport.connected.wait(10)
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send([(_topic(i), b"{}") for i in range(5000)])
            got = inbox.settle(2500)
            assert sorted(got) == sorted(_topic(i) for i in range(0, 5000, 2))
            # The registry moved: odd devices now, and device 0 stays.
            transport.want_subscriptions([_topic(0), *(_topic(i) for i in range(1, 5000, 2))])
            time.sleep(0.5)  # the SUBACK/UNSUBACK round trip
            pub.send([(_topic(i), b"{}") for i in range(5000)])
            got = inbox.settle(2501)
            assert sorted(got) == sorted([_topic(0), *(_topic(i) for i in range(1, 5000, 2))])
            # Status topics stay subscribed for everyone.
            pub.send([("sensors/acme/dev-00002/status", b"online")])
            assert inbox.settle(1) == ["sensors/acme/dev-00002/status"]
    finally:
        transport.stop()
