"""Ingest benchmark: the hub from publish to durable-in-store, against a subscriber that only counts.

Method. One Mosquitto (the hub's configuration: no queue limit) on loopback. For each consumer, a
persistent QoS 1 session is created and left offline, N messages are published into it, then the
consumer connects and drains the backlog; the clock runs from connect to the last message counted (the
baseline) or to the last reading durable in the store (the hub). Draining a backlog measures what a
consumer sustains without the publisher's speed in the way; both consumers drain the same broker in the
same run, so the ratio is robust to how busy the machine is. Each consumer runs in its own process.

Prints name=value lines: ingest_baseline_msgs_s, ingest_hub_msgs_s, ingest_ratio,
ingest_batched_readings_s, ingest_rss_mb (the hub's RSS after the run, 100,000 devices registered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker

DEVICES = 5000
REGISTERED = 100_000
VENDOR = "bench"
T0_S = 1_763_798_400


def _session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 10_000
    return props


def create_session(port: int, client_id: str) -> None:
    """Subscribe a persistent session and leave it offline, so the broker queues for it."""
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda cl, *a: cl.subscribe("sensors/+/+/up", qos=1)
    c.connect("127.0.0.1", port, clean_start=True, properties=_session_props())
    c.loop_start()
    if not done.wait(10):
        raise SystemExit("subscribe timed out")
    c.disconnect()
    c.loop_stop()


def single_payload(i: int) -> tuple[str, bytes]:
    """One reading; half the devices speak SenML, half the gateway vendor's JSON (one record)."""
    n = i % DEVICES
    dev = f"d{n:06d}"
    ts = T0_S + i // DEVICES
    value = 100.0 + (i % 97)
    if n < DEVICES // 2:
        body: object = [{"bn": f"{dev}:", "bt": ts, "n": "water_level", "u": "cm", "v": value}]
    else:
        body = {"data": [{"id": dev, "t": ts, "wl": value}]}
    return f"sensors/{VENDOR}/{dev}/up", json.dumps(body).encode()


def batched_payload(i: int, per: int = 100) -> tuple[str, bytes]:
    gw = f"d{DEVICES // 2 + i % (DEVICES // 2):06d}"  # a gateway-profile device
    base = (i * per) % DEVICES
    ts = T0_S + (i * per) // DEVICES
    data = [{"id": f"d{(base + k) % DEVICES:06d}", "t": ts, "wl": 100.0 + k} for k in range(per)]
    return f"sensors/{VENDOR}/{gw}/up", json.dumps({"data": data}).encode()


def publish(port: int, payloads: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker takes them; returns msgs/s."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t = time.perf_counter()
    for start in range(0, len(payloads), 5000):
        infos = [c.publish(topic, body, qos=1) for topic, body in payloads[start : start + 5000]]
        for info in infos:
            info.wait_for_publish(60)
    rate = len(payloads) / (time.perf_counter() - t)
    c.disconnect()
    c.loop_stop()
    return rate


# -- the consumers, each run in its own process --------------------------------------------------


def run_counter(port: int, expected: int) -> None:
    """Baseline: a paho subscriber that only counts (auto-ack QoS 1)."""
    done = threading.Event()
    count = 0

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=mqtt.MQTTv5
    )
    c.on_message = on_message
    t = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=_session_props())
    c.loop_start()
    if not done.wait(600):
        raise SystemExit(f"counter saw {count} of {expected}")
    elapsed = time.perf_counter() - t
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"messages": count, "seconds": elapsed}))


def _bench_registry(path: Path) -> None:
    from devices.profiles import Device, DeviceProfile, MetricSpec, Vendor
    from devices.registry import Registry

    reg = Registry(f"sqlite:///{path}")
    reg.put_vendors([Vendor(id=VENDOR, name="Benchmark vendor")])
    reg.put_profiles(
        [
            DeviceProfile(
                id="bench-senml",
                name="bench SenML level",
                type="water_level",
                domain="water",
                metrics=(MetricSpec(name="water_level", unit="m", min=-5, max=60),),
                report_interval_s=60,
                codec={"codec": "senml"},
            ),
            DeviceProfile(
                id="bench-gw",
                name="bench gateway",
                type="water_level",
                domain="water",
                metrics=(MetricSpec(name="water_level", unit="m", min=-5, max=60),),
                report_interval_s=60,
                codec={
                    "codec": "mapping",
                    "records": "/data",
                    "device": "/id",
                    "time": {"path": "/t", "format": "epoch_s"},
                    "fields": [{"path": "/wl", "metric": "water_level", "unit": "cm"}],
                },
            ),
        ]
    )
    devices = [
        Device(
            id=f"d{i:06d}",
            vendor=VENDOR,
            profile="bench-senml" if i < DEVICES // 2 or i >= DEVICES else "bench-gw",
        )
        for i in range(REGISTERED)
    ]
    reg.put_devices(devices)
    reg.engine.dispose()


def run_hub(port: int, expected_readings: int, registry_path: str, store_dir: str) -> None:
    """The hub's ingest pipeline: decode, normalise, store durably, ack, update live state."""
    from devices.registry import Registry
    from hub.state import LiveState
    from ingest.deadletter import DeadLetterStore
    from ingest.mqtt import MqttOptions
    from ingest.pipeline import IngestPipeline
    from ingest.store.filestore import FileStore

    registry = Registry(f"sqlite:///{registry_path}")
    store = FileStore(Path(store_dir) / "readings.duckdb")
    dead = DeadLetterStore(f"sqlite:///{Path(store_dir) / 'dead.db'}")
    state = LiveState(registry.interner.device_count, registry.interner.metric_count)

    async def to_state(batch: object) -> None:
        state.apply(batch)  # type: ignore[arg-type]

    pipeline = IngestPipeline(
        registry, store, dead, MqttOptions(port=port, client_id="bench-hub"), on_batch=[to_state]
    )

    async def main() -> float:
        t = time.perf_counter()
        task = asyncio.create_task(pipeline.run())
        progress, last_change = -1, t
        while (done := pipeline.stats.stored + pipeline.stats.duplicates) < expected_readings:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            if done != progress:
                progress, last_change = done, now
            elif now - last_change > 15:
                c = pipeline.consumer.counters
                raise SystemExit(
                    f"hub stalled: stored {done} of {expected_readings} readings; "
                    f"{c.messages} messages, {c.dead_letters} dead letters"
                )
        elapsed = time.perf_counter() - t
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return elapsed

    elapsed = asyncio.run(main())
    rss = psutil.Process().memory_info().rss / 2**20
    stored = store.count()
    store.close()
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "stored": stored,
                "rss_mb": rss,
                "rejected": pipeline.consumer.counters.dead_letters,
                "messages": pipeline.consumer.counters.messages,
            }
        )
    )


def _child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batched-messages", type=int, default=10_000)
    parser.add_argument("--role", choices=["counter", "hub"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "counter":
        run_counter(args.port, args.expected)
        return
    if args.role == "hub":
        run_hub(args.port, args.expected, args.registry, args.store_dir)
        return

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, BenchBroker() as broker:
        reg_path = Path(tmp) / "registry.db"
        t = time.perf_counter()
        _bench_registry(reg_path)
        print(
            f"# registry with {REGISTERED} devices built in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )

        single = [single_payload(i) for i in range(args.messages)]
        create_session(broker.port, "bench-counter")
        rate = publish(broker.port, single)
        print(
            f"# published {len(single)} single-reading messages at {rate:.0f} msg/s",
            file=sys.stderr,
        )
        base = _child(
            "--role", "counter", "--port", str(broker.port), "--expected", str(len(single))
        )

        create_session(broker.port, "bench-hub")
        publish(broker.port, single)
        store1 = Path(tmp) / "s1"
        store1.mkdir()
        hub = _child(
            "--role",
            "hub",
            "--port",
            str(broker.port),
            "--expected",
            str(len(single)),
            "--registry",
            str(reg_path),
            "--store-dir",
            str(store1),
        )
        if hub["stored"] != len(single):
            raise SystemExit(f"hub stored {hub['stored']} readings of {len(single)}")

        batched = [batched_payload(i) for i in range(args.batched_messages)]
        readings = 100 * len(batched)
        store2 = Path(tmp) / "s2"
        store2.mkdir()
        create_session(broker.port, "bench-hub")  # fresh session: nothing left from the first run
        publish(broker.port, batched)
        hub_b = _child(
            "--role",
            "hub",
            "--port",
            str(broker.port),
            "--expected",
            str(readings),
            "--registry",
            str(reg_path),
            "--store-dir",
            str(store2),
        )

    baseline = base["messages"] / base["seconds"]
    hub_rate = len(single) / hub["seconds"]
    print(f"ingest_baseline_msgs_s={baseline:.0f}")
    print(f"ingest_hub_msgs_s={hub_rate:.0f}")
    print(f"ingest_ratio={hub_rate / baseline:.2f}")
    print(f"ingest_batched_readings_s={readings / hub_b['seconds']:.0f}")
    print(f"ingest_rss_mb={max(hub['rss_mb'], hub_b['rss_mb']):.0f}")
    print(
        f"# single: {len(single)} messages, hub {hub['seconds']:.2f} s vs counter {base['seconds']:.2f} s; "
        f"batched: {len(batched)} messages x 100 readings in {hub_b['seconds']:.2f} s, "
        f"stored {hub_b['stored']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
