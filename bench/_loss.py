"""Issue 9 item 5: Mosquitto's defaults drop QoS 1 messages for a subscriber that falls behind; the hub's
shipped configuration (hub/embedded_broker.py's CONFIG_TEMPLATE) does not.

For each configuration: a persistent QoS 1 session is subscribed and left offline (the slowest
subscriber there is: one that is away), ``messages`` QoS 1 messages are published (all acknowledged by
the broker to the publisher), then the subscriber comes back and ``mosquitto_sub`` counts what it gets.
With the defaults (``max_queued_messages 1000``) the broker keeps the first 1,000 and drops the rest
although it acknowledged every one of them to the publisher.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench._broker import BenchBroker, free_port
from bench._rawpub import RawPublisher
from hub.embedded_broker import find_mosquitto, port_open, run_as

TOPIC = "bench/loss"


def _session(port: int) -> None:
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", "bench-slow", "-c", "-q", "1", "-t", TOPIC, "-E"],
        check=True,
        timeout=20,
    )


def _publish(port: int, messages: int) -> int:
    pub = RawPublisher("127.0.0.1", port, "bench-loss-pub")
    for start in range(0, messages, 1000):
        pub.send(
            [
                pub.packet(TOPIC.encode(), b"%d" % i)
                for i in range(start, min(start + 1000, messages))
            ]
        )
    deadline = time.monotonic() + 30
    while pub.acked < messages and time.monotonic() < deadline:
        time.sleep(0.005)
    acked = pub.acked
    pub.close()
    return acked


def _received(port: int, messages: int) -> int:
    out = subprocess.run(
        [
            *("mosquitto_sub", "-p", str(port), "-i", "bench-slow", "-c", "-q", "1", "-t", TOPIC),
            *("-C", str(messages), "-W", "4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # "Timed out" when -W ends it
        timeout=30,
        check=False,  # -W ends it with a non-zero code when fewer than -C arrived
    )
    return len(out.stdout.splitlines())


def _through(port: int, messages: int) -> dict[str, int]:
    _session(port)
    acked = _publish(port, messages)
    return {"published": messages, "acked": acked, "received": _received(port, messages)}


def run(messages: int = 5000) -> dict[str, dict[str, int]]:
    """Published, acknowledged and received, with Mosquitto's defaults and with the hub's config."""
    exe = find_mosquitto()
    if exe is None:
        raise SystemExit("mosquitto is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-loss-") as tmp:
        port = free_port()
        conf = Path(tmp) / "defaults.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{run_as()}")
        proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while not port_open("127.0.0.1", port):
                if time.monotonic() > deadline:
                    raise SystemExit("mosquitto (defaults) did not start")
                time.sleep(0.05)
            defaults = _through(port, messages)
        finally:
            proc.terminate()
            proc.wait(10)
    with BenchBroker() as broker:
        shipped = _through(broker.port, messages)
    return {"defaults": defaults, "shipped": shipped}
