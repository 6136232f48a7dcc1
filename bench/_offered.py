"""Latency under offered load: paced QoS 1 load, probes through it, what each system answers and when.

A separate process (fork) publishes one-reading SenML messages at a fixed rate through the raw
publisher, each with its own time. Meanwhile this process publishes *probes* at ``probe_rate``: a
reading over the threshold from a probe device never used before, so each one must raise a fresh
alert. Per system:

- the hub: publish -> stored (the readings API polled every 20 ms for the probe's reading until it
  is there) and publish -> alert (the ``created`` event arriving on ``hub/alerts/#``);
- Node-RED: publish -> its switch's alert arriving on ``bench/nodered/alerts``;
- paho: publish -> the counting subscriber receiving the probe (the floor for MQTT in, anything out).

Achieved throughput is what the consumer took from the load's start until it had taken everything
(or ``drain_s`` after the load ended, for a system that cannot keep up); when it is below the offered
rate the broker queue grows (the no-loss configuration keeps it) and latency grows with it: the knee.
A probe not answered by then counts with the time waited (a lower bound).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._fleet import HALF, device_id, probe_id, probe_payload, senml_template, topic
from bench._rawpub import RawPublisher


@dataclass
class Point:
    """One system at one offered rate."""

    system: str
    offered_msgs_s: float
    achieved_msgs_s: float
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    probes: int = 0
    answered: dict[str, int] = field(default_factory=dict)

    def pct(self, kind: str, q: float) -> float:
        v = self.latency_ms.get(kind, [])
        return float(np.percentile(v, q)) if v else float("nan")


def _load(port: int, rate: float, seconds: float, devices: int, out: Any) -> None:  # noqa: ANN401
    """The load process: ``rate`` messages/s for ``seconds``; reports what it sent and when."""
    pub = RawPublisher("127.0.0.1", port, "bench-load")
    senml = [device_id(2 * j, 2 * devices) for j in range(min(devices // 2, HALF))]
    templates = [(topic(d), senml_template(d)) for d in senml]
    start_wall, t0 = time.time(), time.monotonic()
    sent = 0
    while (now := time.monotonic()) - t0 < seconds:
        due = min(int((now - t0) * rate) - sent, 5000)
        packets = []
        for k in range(sent, sent + max(due, 0)):
            tp, tmpl = templates[k % len(templates)]
            packets.append(pub.packet(tp, tmpl % (start_wall + k / rate)))
        sent += max(due, 0)
        pub.send(packets)
        time.sleep(max(0.0, 0.005 - (time.monotonic() - now)))
    end_wall = time.time()
    deadline = time.monotonic() + 30
    while pub.acked < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    acked = pub.acked
    pub.close()
    out.put({"sent": sent, "acked": acked, "start": start_wall, "end": end_wall})


class Listener:
    """Arrival wall times per probe device on one topic filter (a paho client in this process)."""

    def __init__(self, port: int, filter_: str, device_of: Callable[[bytes], str | None]) -> None:
        self.arrived: dict[str, float] = {}
        self._device_of = device_of
        ready = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-listen-{time.time_ns()}"
        )
        self.c.on_message = self._on
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(filter_, qos=1)
        self.c.loop_start()
        if not ready.wait(10):
            raise SystemExit(f"could not subscribe {filter_}")

    def _on(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        dev = self._device_of(bytes(msg.payload))
        if dev is not None:
            self.arrived.setdefault(dev, now)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def hub_alert_device(payload: bytes) -> str | None:
    body = json.loads(payload)
    if body.get("change") != "created":
        return None
    return str(body["alert"]["device"])


def nodered_alert_device(payload: bytes) -> str | None:
    body = json.loads(payload)
    return str(body[0]["bn"]).rstrip(":") if isinstance(body, list) else None


class Probes:
    """Over-threshold readings from fresh probe devices, ``rate`` a second, from this process."""

    def __init__(self, port: int, first: int, rate: float) -> None:
        self.pub = RawPublisher("127.0.0.1", port, f"bench-probes-{time.time_ns()}")
        self.next = first
        self.rate = rate
        self.sent: dict[str, float] = {}
        self.stop = threading.Event()
        self.on_sent: Callable[[str, float], None] | None = None
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self.stop.wait(max(0.0, t0 + k / self.rate - time.monotonic())):
            dev = probe_id(self.next)
            self.next += 1
            k += 1
            now = time.time()
            self.pub.send([self.pub.packet(topic(dev), probe_payload(dev, now))])
            self.sent[dev] = now
            if self.on_sent is not None:
                self.on_sent(dev, now)

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(5)
        self.pub.close()


def _latencies(sent: dict[str, float], arrived: dict[str, float], gave_up: float) -> list[float]:
    """Latency per probe, ms; a probe never answered counts as answered when the wait ended (a lower
    bound), so an overloaded system's percentiles are not flattered by the probes it never answered."""
    return [(arrived.get(d, gave_up) - t) * 1000 for d, t in sent.items()]


def _run_load(port: int, rate: float, seconds: float, devices: int) -> tuple[Any, Any]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_load, args=(port, rate, seconds, devices, q), daemon=True)
    proc.start()
    return q, proc


@dataclass
class Offer:
    """What every point shares: the broker, the load's shape, the probes' pace, the wait for a drain."""

    port: int
    devices: int
    seconds: float
    probe_rate: float
    drain_s: float
    next_probe: int = 0


def _offer(
    offer: Offer, rate: float, on_sent: Callable[[str, float], None] | None = None
) -> tuple[dict[str, Any], Probes]:
    """Run the load and the probes for ``offer.seconds``; the load's report and the probes."""
    probes = Probes(offer.port, offer.next_probe, offer.probe_rate)
    probes.on_sent = on_sent
    q, proc = _run_load(offer.port, rate, offer.seconds, offer.devices)
    probes.start()
    load: dict[str, Any] = q.get(timeout=offer.seconds + 60)
    probes.finish()
    proc.join(10)
    offer.next_probe = probes.next
    return load, probes


def _drained(done: Callable[[], bool], drain_s: float) -> float:
    """Wait until ``done()`` or ``drain_s``; the wall time it ended."""
    deadline = time.monotonic() + drain_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return time.time()


def hub_point(offer: Offer, rate: float, http: httpx.Client) -> Point:
    """The hub (already running) at one offered rate: stored and alert latencies."""
    listener = Listener(offer.port, "hub/alerts/#", hub_alert_device)
    stored_at: dict[str, float] = {}
    pool = ThreadPoolExecutor(8, thread_name_prefix="stored-poll")
    stop = threading.Event()

    def stored() -> int:
        return int(http.get("/api/v1/status").json()["readings_stored"])

    def poll(dev: str, t: float) -> None:
        start = datetime.fromtimestamp(t - 60, tz=UTC).isoformat()
        while not stop.is_set():
            r = http.get(
                f"/api/v1/devices/{dev}/readings", params={"metric": "water_level", "start": start}
            )
            if r.status_code == 200 and r.json()["ts"]:
                stored_at[dev] = time.time()
                return
            time.sleep(0.02)

    before = stored()

    def start_poll(dev: str, t: float) -> None:
        pool.submit(poll, dev, t)

    load, probes = _offer(offer, rate, start_poll)
    expected = before + load["acked"] + len(probes.sent)
    last = [before]

    def done() -> bool:
        last[0] = stored()
        answered = min(len(listener.arrived), len(stored_at))
        return last[0] >= expected and answered >= len(probes.sent)

    ended = _drained(done, offer.drain_s)
    stop.set()
    pool.shutdown()
    listener.close()
    return Point(
        "hub",
        load["sent"] / (load["end"] - load["start"]),
        (last[0] - before) / (ended - load["start"]),
        {
            "stored": _latencies(probes.sent, stored_at, ended),
            "alert": _latencies(probes.sent, listener.arrived, ended),
        },
        len(probes.sent),
        {"stored": len(stored_at), "alert": len(listener.arrived)},
    )


def nodered_point(offer: Offer, rate: float, counts: Callable[[], dict[str, int]]) -> Point:
    """A fresh Node-RED at one offered rate: alert latency; achieved from its count node's clock."""
    from bench._nodered import ALERT_TOPIC

    listener = Listener(offer.port, ALERT_TOPIC, nodered_alert_device)
    load, probes = _offer(offer, rate)
    expected = load["acked"] + len(probes.sent)
    last: list[dict[str, int]] = [{"n": 0, "first": 0, "last": 0}]

    def done() -> bool:
        try:
            last[0] = counts()
        except httpx.HTTPError:  # its event loop is busy with the backlog
            return False
        return bool(last[0]["n"] >= expected)

    ended = _drained(done, offer.drain_s)
    listener.close()
    c = last[0]
    return Point(
        "nodered",
        load["sent"] / (load["end"] - load["start"]),
        c["n"] / max((c["last"] / 1000 if c["n"] else ended) - load["start"], 1e-3),
        {"alert": _latencies(probes.sent, listener.arrived, ended)},
        len(probes.sent),
        {"alert": len(listener.arrived)},
    )


def paho_point(offer: Offer, rate: float) -> Point:
    """The counting paho subscriber (its own process) at one offered rate: publish -> received."""
    sub = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("_pahosub.py")),
            str(offer.port),
            str(offer.drain_s),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if sub.stdin is None or sub.stdout is None:
        raise RuntimeError("no pipes to the paho subscriber")
    if sub.stdout.readline().strip() != "ready":
        raise SystemExit("paho subscriber did not start")
    load, probes = _offer(offer, rate)
    sub.stdin.write(f"expect {load['acked'] + len(probes.sent)}\n")
    sub.stdin.flush()
    res = json.loads(sub.stdout.readline())
    sub.wait(10)
    ended, count = res["marks"][-1]
    return Point(
        "paho",
        load["sent"] / (load["end"] - load["start"]),
        count / max(ended - load["start"], 1e-3),
        {"received": _latencies(probes.sent, res["probes"], ended)},
        len(probes.sent),
        {"received": len(res["probes"])},
    )
