"""The hub's MQTT transport against a real Mosquitto: its own packet reader and its batched PUBACKs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt import MqttOptions, MqttTransport, puback_packets
from tests.conftest import Broker
from tests.publisher import Publisher

pytestmark = pytest.mark.broker


class Received:
    """What a transport handed to its handler, in order, with a way to wait for a count."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, int]] = []
        self._cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self._cond:
            self.messages.append((topic, payload, mid, qos))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0, prefix: str = "") -> None:
        """Wait until ``count`` messages whose topic starts with ``prefix`` have arrived."""

        def arrived() -> int:
            return sum(1 for topic, *_ in self.messages if topic.startswith(prefix))

        with self._cond:
            got = self._cond.wait_for(lambda: arrived() >= count, timeout)
        assert got, f"received {arrived()} of {count} messages"


@contextmanager
def transport(broker: Broker, client_id: str, received: Received) -> Iterator[MqttTransport]:
    """A started transport with a persistent session subscribed to ``t/#`` at QoS 1."""
    t = MqttTransport(
        MqttOptions(host=broker.host, port=broker.port, client_id=client_id),
        [("t/#", 1)],
        received,
    )
    t.start()
    try:
        assert t.connected.wait(10), "transport did not connect"
        yield t
    finally:
        t.stop()


def wait_until_disconnected(broker: Broker, client_id: str, times: int) -> None:
    """Wait until the broker has logged ``times`` clean disconnects of ``client_id``.

    A session taken over by a new connection before the broker has read the old one's last packets
    loses them (Mosquitto closes the old socket unread), PUBACKs included: a test that reconnects at
    once would see acknowledged messages again, with paho's own acknowledgements as with ours.
    """
    line = f"Client {client_id} disconnected."
    deadline = time.monotonic() + 10
    while broker.log.read_text().count(line) < times:
        assert time.monotonic() < deadline, f"the broker never saw {client_id} disconnect"
        time.sleep(0.02)


def test_pubacks_are_mqtt5_success_acknowledgements() -> None:
    # Type 4 (PUBACK), remaining length 2, the packet id big-endian; no reason code means success.
    assert puback_packets([1, 258, 65535]) == bytes(
        [0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 0xFF, 0xFF]
    )
    assert puback_packets([]) == b""


def test_every_message_arrives_whole_and_in_order(private_broker: Broker) -> None:
    # Sizes around each boundary of MQTT's variable-length remaining length (1, 2, 3 bytes), and
    # payloads larger than one socket read, so that packets straddle reads of the transport's buffer.
    sizes = [0, 1, 100, 127, 128, 16_000, 16_383, 16_384, 70_000, 300_000, 2_100_000] * 2
    sizes += [3_500] * 500  # many batched-size messages, several per read
    sent = [
        (f"t/{i}/größe-{size}", bytes((i + k) % 256 for k in range(size)), i % 2)
        for i, size in enumerate(sizes)
    ]
    received = Received()
    with transport(private_broker, "hub-reader", received):
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
        pub.connect(private_broker.host, private_broker.port)
        pub.loop_start()
        try:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = [("origin", "test"), ("k" * 300, "v" * 300)]
            props.ContentType = "application/octet-stream"
            for i, (topic, payload, qos) in enumerate(sent):
                # Every other message carries properties, which the reader must step over.
                info = pub.publish(topic, payload, qos=qos, properties=props if i % 2 else None)
                info.wait_for_publish(30)
        finally:
            pub.disconnect()
            pub.loop_stop()
        received.wait_for(len(sent))
    got = [(topic, payload, qos) for topic, payload, _mid, qos in received.messages]
    assert got == sent
    mids = [mid for _topic, _payload, mid, qos in received.messages if qos == 1]
    assert all(mid > 0 for mid in mids)
    assert len(set(mids)) == len(mids), "in-flight QoS 1 messages have distinct packet ids"


def test_acknowledged_messages_are_never_redelivered_and_the_others_are(
    private_broker: Broker,
) -> None:
    payloads = [uuid.uuid4().bytes for _ in range(600)]
    received = Received()
    with transport(private_broker, "hub-acks", received) as t:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send((f"t/{i}", p) for i, p in enumerate(payloads))
        received.wait_for(len(payloads))
        first = list(received.messages)
        # Acknowledge every other message, all in one call (one write of 300 PUBACKs).
        t.ack_many([(mid, qos) for k, (_t, _p, mid, qos) in enumerate(first) if k % 2 == 0])
    wait_until_disconnected(private_broker, "hub-acks", 1)
    # The same persistent session again: the broker resends exactly the unacknowledged ones.
    again = Received()
    with transport(private_broker, "hub-acks", again) as t:
        again.wait_for(len(payloads) // 2)
        time.sleep(0.5)  # anything more would be a redelivery of an acknowledged message
        assert sorted(p for _t, p, _m, _q in again.messages) == sorted(payloads[1::2])
        t.ack_many([(mid, qos) for _t, _p, mid, qos in again.messages])
    wait_until_disconnected(private_broker, "hub-acks", 2)
    # And after those acknowledgements, nothing at all.
    last = Received()
    with transport(private_broker, "hub-acks", last):
        time.sleep(1.0)
    assert last.messages == []


def test_the_reader_starts_clean_after_the_broker_restarts(private_broker: Broker) -> None:
    received = Received()
    with transport(private_broker, "hub-restart", received) as t:
        with Publisher(private_broker.host, private_broker.port, client_id="pub-1") as pub:
            pub.send([(f"t/before/{i}", b"x" * 5000) for i in range(200)])
        received.wait_for(200)
        t.ack_many([(mid, qos) for _t, _p, mid, qos in received.messages])
        private_broker.restart()
        deadline = time.monotonic() + 20
        while not (t.connected.is_set() and t.connects >= 2):
            assert time.monotonic() < deadline, "transport did not reconnect"
            time.sleep(0.05)
        with Publisher(private_broker.host, private_broker.port, client_id="pub-2") as pub:
            pub.send([(f"t/after/{i}", b"y" * (i * 97)) for i in range(200)])
        received.wait_for(200, prefix="t/after/")
    # (Messages from before the restart may come again if the broker stopped before it read their
    # acknowledgements: what matters here is that the new connection's packets are read whole.)
    after = [(t, p) for t, p, _m, _q in received.messages if t.startswith("t/after/")]
    assert after == [(f"t/after/{i}", b"y" * (i * 97)) for i in range(200)]


def test_a_publish_queued_during_a_large_read_goes_out_before_the_read_is_handled(
    private_broker: Broker,
) -> None:
    """An alert event queued while the network thread works through a burst is not held behind it.

    A backlog of 3,000 messages reaches the transport in reads of hundreds or thousands of
    packets; its handler (slowed to 0.5 ms a message) queues one publish at the 5th. The watcher
    must see that publish long before the handler is through the read it came in.
    """
    client_id = "hub-midread"
    received = Received()
    with transport(private_broker, client_id, received):
        pass  # the persistent session, subscribed; the backlog queues for it meanwhile
    wait_until_disconnected(private_broker, client_id, 1)
    with Publisher(private_broker.host, private_broker.port) as pub:
        pub.send((f"t/{i}", b"x" * 20) for i in range(3000))

    handled: list[int] = []
    seen_at: list[int] = []
    arrived = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv5)

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        seen_at.append(len(handled))
        arrived.set()

    watcher.on_message = on_message
    watcher.connect(private_broker.host, private_broker.port)
    watcher.subscribe("out/#", qos=1)
    watcher.loop_start()
    holder: list[MqttTransport] = []

    def slow(topic: str, payload: bytes, mid: int, qos: int) -> None:
        handled.append(mid)
        if len(handled) == 5:
            holder[0].publish("out/alert", b"red", 1)
        time.sleep(0.0005)

    try:
        time.sleep(0.3)  # the watcher's subscription is in place
        t = MqttTransport(
            MqttOptions(host=private_broker.host, port=private_broker.port, client_id=client_id),
            [("t/#", 1)],
            slow,
        )
        holder.append(t)
        t.start()
        try:
            assert arrived.wait(30), "the queued publish never went out"
            deadline = time.monotonic() + 30
            while len(handled) < 3000 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            t.stop()
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    assert len(handled) == 3000
    # Written after at most a few dozen more packets (ingest/mqtt.py _WRITE_EVERY), not at the
    # end of a read: 0.5 ms a message, so 200 messages are 100 ms of delay.
    assert seen_at[0] < 200, seen_at
