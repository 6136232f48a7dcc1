"""The MQTT transport: the only module that imports paho-mqtt.

paho-mqtt 2.x with ``manual_ack`` is used instead of aiomqtt because the hub acknowledges a message only
after its readings are durable, and aiomqtt 2.x cannot delay the acknowledgement (empicano/aiomqtt#345).
Messages are handed to a callback on paho's network thread; acknowledgements may be sent from any thread.
Back-pressure is MQTT 5's Receive Maximum: the broker sends at most that many unacknowledged messages, so
a slow store slows the broker's delivery instead of filling memory.

Two of paho's per-message costs are cut here (see `_HubClient`): its reader takes three or four socket
reads and one select() per packet and builds a message object with parsed properties before a callback
ever runs; and each manual acknowledgement is queued as a packet of its own, with a wake-up write and a
socket write each. The hub's client reads the socket in large chunks and hands PUBLISH packets straight
to the handler, and `MqttTransport.ack_many` queues all the PUBACKs of a flush as one write.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, int, int], None]
"""Called on the network thread with (topic, payload, mid, qos)."""

_PUBLISH = 0x30
_PUBACK = 0x40
_RECV_SIZE = 256 * 1024  # one read takes dozens of batched messages off the socket
_WRITE_EVERY = 32
"""While handling a large read, queued outgoing packets are written after every this many PUBLISHes."""


def puback_packets(mids: Sequence[int]) -> bytes:
    """MQTT 5 PUBACKs (success, no properties: type 0x40, remaining length 2, packet id) for ``mids``."""
    return struct.pack(f">{len(mids)}I", *[0x4002_0000 | mid for mid in mids])


class _HubClient(mqtt.Client):
    """paho's client with a buffered reader that hands QoS 0/1 PUBLISH packets straight to a handler.

    paho reads a packet with one recv() for its first byte, one per byte of its length and one or more
    for its body, and goes back to select() after each packet; then it decodes the PUBLISH into an
    `MQTTMessage` with parsed `Properties` and matches its topic against callbacks. For 100-reading
    messages that was as much CPU as decoding the readings. Here one recv() takes whatever is there,
    every complete packet in the buffer is handled before returning (so nothing is left waiting for a
    select() that will not fire), and a PUBLISH is parsed in a few slices. The hub's subscriptions are
    QoS 1 and it sets no Topic Alias Maximum, so the broker sends neither QoS 2 nor topic aliases;
    QoS 2 and every other packet type still go through paho's own handling, with paho's reader state
    set up as its reader would have left it.
    """

    def __init__(self, client_id: str, on_publish_packet: MessageHandler) -> None:
        super().__init__(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._rbuf = bytearray()
        self._publish_handler = on_publish_packet

    def reconnect(self) -> MQTTErrorCode:
        """Reconnect, dropping unread bytes of the old connection (they mean nothing on the new one)."""
        self._rbuf = bytearray()
        return super().reconnect()

    def _packet_read(self) -> MQTTErrorCode:
        try:
            data = self._sock_recv(_RECV_SIZE)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # TimeoutError and ConnectionError included
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        buf = self._rbuf
        buf += data
        pos, rc = self._handle_buffered(buf)
        del buf[:pos]
        return rc

    def _handle_buffered(self, buf: bytearray) -> tuple[int, MQTTErrorCode]:
        """Handle every complete packet in ``buf``; returns how many bytes were used, and paho's code."""
        end_of_data = len(buf)
        pos = 0
        handled = 0
        with memoryview(buf) as view:
            while end_of_data - pos >= 2:
                command = buf[pos]
                # The remaining length: 1 to 4 bytes, 7 bits each, least significant first.
                length, shift, at = 0, 0, pos + 1
                while True:
                    if at >= end_of_data:
                        return pos, MQTTErrorCode.MQTT_ERR_SUCCESS  # the rest has not arrived
                    byte = buf[at]
                    length |= (byte & 0x7F) << shift
                    at += 1
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        return pos, MQTTErrorCode.MQTT_ERR_PROTOCOL
                end = at + length
                if end > end_of_data:
                    return pos, MQTTErrorCode.MQTT_ERR_SUCCESS
                if command & 0xF0 == _PUBLISH and not command & 0x04:  # QoS 0 or 1 (2 and 3: paho)
                    # Released on the spot: an exception kept by the handler (a decode error in a
                    # dead letter) keeps this frame's caller frames, and a live view of the buffer
                    # would stop it from being resized.
                    with view[at:end] as body:
                        self._publish(command, body)
                    handled += 1
                    if handled % _WRITE_EVERY == 0 and self._out_packet:
                        # An alert event or the last flush's PUBACKs, queued from another thread:
                        # out now, not after the rest of a read that may hold a thousand messages
                        # (tens of ms of decoding). This is the network thread, paho's only writer;
                        # a failed write keeps its packet queued for paho's loop to deal with.
                        self._packet_write()
                else:
                    rc = self._paho_handle(command, bytearray(view[at:end]))
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return end, rc
                pos = end
        return pos, MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publish(self, command: int, body: memoryview) -> None:
        """Parse a QoS 0/1 PUBLISH (topic, packet id, properties skipped, payload) and hand it over."""
        size = len(body)
        if size < 2:
            self._easy_log(mqtt.MQTT_LOG_ERR, "dropped a PUBLISH too short for its topic")
            return
        topic_end = 2 + (body[0] << 8 | body[1])
        qos = (command >> 1) & 0x03
        at = topic_end
        mid = 0
        if qos:
            mid = body[at] << 8 | body[at + 1] if at + 2 <= size else 0
            at += 2
        # MQTT 5 properties: a variable byte integer length, then the properties (not used here).
        skip, shift = 0, 0
        while at < size:
            byte = body[at]
            at += 1
            skip |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        at += skip
        if at > size or (qos and mid == 0):
            self._easy_log(mqtt.MQTT_LOG_ERR, "dropped a malformed PUBLISH")
            return
        # A topic that is not UTF-8 (the broker should refuse it) is still handed over, to be
        # rejected and acknowledged like any other bad topic rather than stop the network thread.
        topic = str(body[2:topic_end], "utf-8", "replace")
        try:
            self._publish_handler(topic, bytes(body[at:]), mid, qos)
        except Exception:  # not acknowledged: the broker redelivers it after a reconnect
            logger.exception("message handler failed on %s", topic)

    def _paho_handle(self, command: int, body: bytearray) -> MQTTErrorCode:
        """Let paho handle a packet, with its reader state as its own reader would have set it."""
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": body,
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc: MQTTErrorCode = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(),
            "to_process": 0,
            "pos": 0,
        }
        return rc


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
    tls_ca: str | None = None  # set: TLS, verifying the broker against this CA file
    tls_cert: str | None = None  # client certificate for mutual TLS
    tls_key: str | None = None


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
        # Topic filters added at run time (an ingest worker's own devices, devices/partitions.py):
        # wanted, and asked of the broker on this connection; SUBACKs the connect still waits for.
        self._sub_lock = threading.Lock()
        self._wanted: set[str] = set()
        self._asked: set[str] = set()
        self._connect_subacks: set[int] = set()
        self.connected = threading.Event()
        self.connects = 0
        self._stopping = False
        self._client = _HubClient(options.client_id, on_message)
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        if options.tls_ca is not None:
            self._client.tls_set(
                ca_certs=options.tls_ca, certfile=options.tls_cert, keyfile=options.tls_key
            )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        # At most 2 s between attempts: after a long broker outage paho's backoff would otherwise
        # sit at its ceiling, and the hub must be back within 5 s of the broker (fault suite).
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)

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
        # paho closes its socket and wake-up socket pair only when the client is collected, and a
        # collector that reaches the sockets first warns of them as unclosed.
        self._client._reset_sockets()

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge one message (thread-safe). QoS 0 messages need none."""
        if qos > 0:
            self._client.ack(mid, qos)

    def ack_many(self, mids: Sequence[tuple[int, int]]) -> None:
        """Acknowledge many (mid, qos) pairs (thread-safe).

        The QoS 1 ones go out as one write: all their PUBACKs in one queued packet, so paho's network
        thread is woken once and makes one socket write however many there are. paho writes a queued
        packet whole (resuming a partial write) and drops the queue on reconnect, as it does for its
        own acknowledgements.
        """
        ones = [mid for mid, qos in mids if qos == 1]
        if ones:
            self._client._packet_queue(_PUBACK, puback_packets(ones), 0, 0)
        for mid, qos in mids:
            if qos > 1:
                self._client.ack(mid, qos)

    def want_subscriptions(self, filters: Iterable[str]) -> None:
        """Keep exactly ``filters`` subscribed (QoS 1) besides the fixed ones (thread-safe).

        An ingest worker of several subscribes to its own devices' topics only, so the broker sends
        it nothing of the others'. Before the connection is up they are subscribed with the fixed
        ones (`connected` then waits for them too); afterwards the difference is sent.
        """
        with self._sub_lock:
            self._wanted = set(filters)
        if self.connected.is_set():
            self._follow_wanted()

    def _follow_wanted(self) -> None:
        with self._sub_lock:
            added = sorted(self._wanted - self._asked)
            removed = sorted(self._asked - self._wanted)
            self._asked = set(self._wanted)
        for chunk in _chunks([(t, 1) for t in added]):
            self._client.subscribe(chunk)
        for gone in _chunks(removed):
            self._client.unsubscribe(gone)

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
        with self._sub_lock:
            self._asked = set(self._wanted)
            filters = [*self._subscriptions, *((t, 1) for t in sorted(self._asked))]
            # `connected` waits for every SUBACK: a message published before the broker holds the
            # subscription would not be queued for this session.
            for chunk in _chunks(filters):
                _rc, mid = client.subscribe(chunk)
                if mid is not None:
                    self._connect_subacks.add(mid)
            if not self._connect_subacks:
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
            logger.error("broker refused subscriptions (SUBSCRIBE %s): %s", _mid, refused)
            return
        with self._sub_lock:
            waiting = _mid in self._connect_subacks
            self._connect_subacks.discard(_mid)
            if not waiting or self._connect_subacks:
                return
        self.connected.set()
        self._follow_wanted()  # what changed while the connect's subscriptions were on their way

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


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int = 1000) -> list[list[_T]]:
    """``items`` in lists of at most ``size``: one SUBSCRIBE each stays well under packet limits."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
