"""The MQTT transport: the only module that imports paho-mqtt.

paho-mqtt 2.x with ``manual_ack`` is used instead of aiomqtt because the hub acknowledges a message only
after its readings are durable, and aiomqtt 2.x cannot delay the acknowledgement (empicano/aiomqtt#345).
Messages are handed to a callback on paho's network thread; acknowledgements may be sent from any thread.
Back-pressure is MQTT 5's Receive Maximum: the broker sends at most that many unacknowledged messages, so
a slow store slows the broker's delivery instead of filling memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, int, int], None]
"""Called on the network thread with (topic, payload, mid, qos)."""


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """How to reach the broker and which session to keep."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "hub-ingest"
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    receive_maximum: int = 10_000
    session_expiry_s: int = 7 * 24 * 3600  # queued messages survive a week of hub downtime
    clean_start: bool = False


class MqttTransport:
    """A persistent MQTT 5 session with manual acknowledgements."""

    def __init__(
        self,
        options: MqttOptions,
        subscriptions: Sequence[tuple[str, int]],
        on_message: MessageHandler,
    ) -> None:
        """Prepare a session that subscribes to ``subscriptions`` (topic filter, QoS) on every connect."""
        self.options = options
        self._subscriptions = list(subscriptions)
        self._handler = on_message
        self.connected = threading.Event()
        self.connects = 0
        self._stopping = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)

    def start(self) -> None:
        """Connect (retrying in the background if the broker is not up yet) and start the network thread."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.options.session_expiry_s
        props.ReceiveMaximum = self.options.receive_maximum
        self._client.connect_async(
            self.options.host,
            self.options.port,
            keepalive=self.options.keepalive,
            clean_start=self.options.clean_start,
            properties=props,
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker) and stop the network thread."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge one message (thread-safe). QoS 0 messages need none."""
        if qos > 0:
            self._client.ack(mid, qos)

    def ack_many(self, mids: Sequence[tuple[int, int]]) -> None:
        """Acknowledge many (mid, qos) pairs."""
        ack = self._client.ack
        for mid, qos in mids:
            if qos > 0:
                ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Publish a message (thread-safe; queued by paho if the connection is down)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error(
                "broker %s:%s refused the connection: %s",
                self.options.host,
                self.options.port,
                reason_code,
            )
            return
        self.connects += 1
        logger.info(
            "connected to %s:%s as %s (session present: %s)",
            self.options.host,
            self.options.port,
            self.options.client_id,
            flags.session_present,
        )
        if self._subscriptions:
            # `connected` waits for the SUBACK: a message published before the broker holds the
            # subscription would not be queued for this session.
            client.subscribe(self._subscriptions)
        else:
            self.connected.set()

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reason_codes if r.is_failure]
        if refused:
            logger.error("broker refused the subscriptions %s: %s", self._subscriptions, refused)
            return
        self.connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if self._stopping:
            logger.info("disconnected from broker %s:%s", self.options.host, self.options.port)
        else:
            logger.warning("lost the broker: %s (reconnecting)", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._handler(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
