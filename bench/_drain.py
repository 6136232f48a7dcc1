"""Saturation throughput: every consumer drains the same backlog from the same broker, in turn.

bench/ingest.py's method, for four consumers: each has a persistent QoS 1 session, created and left
offline; the payloads are published once (the broker queues one copy for each session); then each
consumer connects alone and drains its queue. Draining a backlog measures what a consumer sustains
without a publisher's speed in the way, and all four drain the same messages on the same broker in
the same run.

- C: ``mosquitto_sub -c -q 1 -C N`` to /dev/null, clocked from its start to its exit;
- paho: bench/ingest.py's counting subscriber (its own process), clocked from connect to the last;
- Node-RED: the flow's count node, first to last arrival;
- the hub: ``python -m hub run``, started first and connected (its own session), then paused with
  SIGSTOP while the backlog is published and resumed: clocked from SIGCONT until its
  ``readings_stored`` (polled every 50 ms) reaches the readings published; its CPU time over the same
  span gives µs per reading. The hub drains first, the others after it, each alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import _profile
from bench._broker import BenchBroker
from bench._hubproc import HubProcess
from bench._nodered import CLIENT_ID as NODERED_ID
from bench._nodered import NodeRed
from bench._rawpub import RawPublisher
from bench.ingest import _child, create_session

C_ID = "bench-c"
PAHO_ID = "bench-counter"  # bench/ingest.py's counter uses this client id
HUB_ID = "hub-ingest"  # the hub's default client id
ALL = (C_ID, PAHO_ID, NODERED_ID, HUB_ID)
FILTER = "sensors/+/+/up"


@dataclass
class Drain:
    """One consumer's drain of ``messages`` messages (``readings`` readings)."""

    messages: int
    readings: int
    seconds: float
    cpu_s: float = float("nan")
    rss_mb: float = float("nan")
    stored: int = -1

    @property
    def msgs_s(self) -> float:
        return self.messages / self.seconds

    @property
    def readings_s(self) -> float:
        return self.readings / self.seconds


def _sub_session(port: int, client_id: str) -> None:
    """A persistent MQTT 3.1.1 session subscribed at QoS 1, left offline (mosquitto_sub -E)."""
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", client_id, "-c", "-q", "1", "-t", FILTER, "-E"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=20,
    )


def clear_sessions(port: int, *client_ids: str) -> None:
    """End persistent sessions (a clean-session connect replaces them), so nothing more queues there."""
    for client_id in client_ids:
        subprocess.run(
            ["mosquitto_sub", "-p", str(port), "-i", client_id, "-t", "bench/none", "-E"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=20,
        )


def make_sessions(port: int) -> None:
    """Offline sessions for the consumers other than the hub, so the next publish is queued for each.

    Cleared first: a consumer stopped right after its count may leave unacknowledged messages behind.
    """
    clear_sessions(port, C_ID, PAHO_ID, NODERED_ID)
    _sub_session(port, C_ID)
    create_session(port, PAHO_ID)
    _sub_session(port, NODERED_ID)


def publish_backlog(port: int, messages: list[tuple[bytes, bytes]]) -> float:
    """Publish at QoS 1 through the raw publisher until the broker acknowledged all; msgs/s."""
    pub = RawPublisher("127.0.0.1", port, "bench-backlog")
    t = time.perf_counter()
    for start in range(0, len(messages), 2000):
        pub.send([pub.packet(tp, body) for tp, body in messages[start : start + 2000]])
        while start + 2000 - pub.acked > 20_000:  # keep packet ids well inside 65,535
            time.sleep(0.001)
    deadline = time.monotonic() + 120
    while pub.acked < len(messages) and time.monotonic() < deadline:
        time.sleep(0.005)
    rate = len(messages) / (time.perf_counter() - t)
    pub.close()
    if pub.acked < len(messages):
        raise SystemExit(f"broker acknowledged {pub.acked} of {len(messages)} messages")
    return rate


def drain_c(port: int, n: int) -> Drain:
    t = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-i", C_ID, "-c", "-q", "1", "-t", FILTER, "-C", str(n)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    return Drain(n, n, time.perf_counter() - t)


def drain_paho(port: int, n: int) -> Drain:
    out = _child("--role", "counter", "--port", str(port), "--expected", str(n))
    return Drain(int(out["messages"]), int(out["messages"]), out["seconds"])


def drain_nodered(port: int, n: int, max_s: float) -> Drain:
    """Node-RED's rate over the whole backlog, or over its first ``max_s`` seconds of it (the rest
    is dropped with its session before the next payload set): it is the slowest by far."""
    with NodeRed(port) as red:
        progress, changed = -1, time.monotonic()
        while (c := red.counts())["n"] < n:
            now = time.monotonic()
            if c["n"] and (c["last"] - c["first"]) / 1000 > max_s:
                break
            if c["n"] != progress:
                progress, changed = c["n"], now
            elif now - changed > 20:
                raise SystemExit(f"node-red stalled at {c['n']} of {n} messages")
            time.sleep(0.1)
    return Drain(c["n"], c["n"], max(c["last"] - c["first"], 1) / 1000)


def drain_hub(
    broker: BenchBroker,
    data: Path,
    messages: list[tuple[bytes, bytes]],
    readings: int,
    profile: Path | None = None,
    env: dict[str, str] | None = None,
) -> Drain:
    """The hub, started and connected, is paused (SIGSTOP) while the backlog is published, then
    resumed: the clock runs from SIGCONT to the last reading durable, so start-up is not counted.
    With ``profile``, py-spy records the hub while it drains (raw collapsed stacks to that file).
    ``env``: the hub's settings for this drain. CPU time and memory are the hub's and its child
    processes' (decode workers)."""
    with HubProcess(data, broker.port, data / "bench-rules.yaml", env) as hub:
        hub.wait_ready()
        time.sleep(1.0)  # start-up work (live state, rules) done
        base = hub.stored()
        os.kill(hub.pid, signal.SIGSTOP)
        spy = None
        try:
            publish_backlog(broker.port, messages)
            if profile is not None:
                spy = _profile.start(hub.pid, profile)
                time.sleep(0.5)  # py-spy attached
        finally:
            t0, c0 = time.perf_counter(), hub.cpu_s()
            os.kill(hub.pid, signal.SIGCONT)
        progress, changed = -1, time.monotonic()
        while (s := hub.stored() - base) < readings:
            now = time.monotonic()
            if s != progress:
                progress, changed = s, now
            elif now - changed > 20:
                raise SystemExit(f"hub stalled: stored {s} of {readings} readings")
            time.sleep(0.05)
        t1, c1 = time.perf_counter(), hub.cpu_s()
        rss = hub.rss_mb()
        if spy is not None:
            _profile.stop(spy)
    return Drain(len(messages), s, t1 - t0, cpu_s=c1 - c0, rss_mb=rss, stored=s)
