"""The limit in Python: a paho-mqtt subscriber that only counts (run as its own process).

Two modes. ``drain``: bench/ingest.py's counter (a persistent session drained from connect to the last
message). ``live`` (this file as a script): a clean session on ``sensors/+/+/up`` that counts while the
report offers load, keeps (wall time, count) every 1,000 messages and the arrival wall time of each
probe device's message, and once told on stdin how many to expect (``expect N``) waits for them
(``drain_s`` at most) and prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PROBE_PREFIX = "sensors/bench/p"


def live(port: int, drain_s: float) -> None:
    count = 0
    marks: list[tuple[float, int]] = []
    probes: dict[str, float] = {}
    ready = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count % 1000 == 0:
            marks.append((time.time(), count))
        if msg.topic.startswith(PROBE_PREFIX):
            probes[msg.topic.split("/")[2]] = time.time()

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-paho-live", protocol=mqtt.MQTTv311
    )
    c.on_message = on_message
    c.on_subscribe = lambda *_: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe("sensors/+/+/up", qos=1)
    c.loop_start()
    if not ready.wait(10):
        raise SystemExit("paho subscriber could not subscribe")
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    expected = int(line[1]) if len(line) == 2 and line[0] == "expect" else 0
    deadline = time.monotonic() + drain_s
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    marks.append((time.time(), count))
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"count": count, "marks": marks, "probes": probes}), flush=True)


if __name__ == "__main__":
    live(int(sys.argv[1]), float(sys.argv[2]))
