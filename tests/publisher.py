"""A real paho-mqtt publisher for tests: publishes at QoS 1 and waits until the broker has every message."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    """A connected MQTT 5 client; `send` returns once the broker acknowledged every message."""

    def __init__(self, host: str, port: int, client_id: str = "test-publisher") -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.max_inflight_messages_set(500)
        self._client.connect(host, port)
        self._client.loop_start()

    def send(self, messages: Iterable[tuple[str, bytes | str]], qos: int = 1) -> int:
        """Publish ``(topic, payload)`` pairs in chunks; returns how many were published."""
        sent = 0
        chunk: list[mqtt.MQTTMessageInfo] = []
        for topic, payload in messages:
            chunk.append(self._client.publish(topic, payload, qos=qos))
            sent += 1
            if len(chunk) >= 2000:
                self._wait(chunk)
                chunk = []
        self._wait(chunk)
        return sent

    @staticmethod
    def _wait(infos: list[mqtt.MQTTMessageInfo]) -> None:
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published(), f"broker did not acknowledge message {info.mid}"

    def close(self) -> None:
        """Disconnect cleanly."""
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
