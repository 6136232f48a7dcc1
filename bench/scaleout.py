"""Scale-out benchmark: 1, 2 and 4 ingest workers on one Mosquitto, one InfluxDB, one SQL database.

Method. For each worker count, a fresh cluster (`bench/_scaleout.py`): ``--devices`` registered
devices (the alerting benchmark's city mix; the acme ones publish), each worker a real
``python -m hub run --role ingest`` process with its slot. One publisher sends ``--rounds`` rounds of
one QoS 1 message per acme device (acme's flat JSON, 2-4 readings a message) as fast as the broker
takes them; the clock stops when InfluxDB holds every reading. Printed per count W:

- ``scale_wW_msgs_s``: messages / (first publish -> last reading in InfluxDB);
- ``scale_cpu_us_per_reading_wW``: CPU seconds of all W workers over the run (from /proc) per
  reading, in microseconds. This machine has 2 cores, so W workers cannot run W times faster; what
  linear scaling means here is that the work per reading does not grow with W.
  ``scale_cpu_ratio_w2`` = w2 / w1 (target <= 1.1). Each worker reads every message's topic (the
  broker sends all messages to every worker, docs/scaleout.md) and decodes only its own devices'.
- ``scale_broker_cpu_us_per_msg_wW``: Mosquitto's CPU per published message: the price of the
  fan-out, paid by the broker, shown for honesty.

Then, with 2 workers: the same load with a kill: halfway through, worker 1 is SIGKILLed; the
publisher goes on; the worker is restarted (its supervisor's job) and catches up from its broker
session. ``scale_lost`` = readings published and never stored; ``scale_dup`` = readings stored more
than once (stored - published, InfluxDB keeps a (series, time) point once) plus smoke alarms raised
more than once (each detector alarms once, some on the killed worker's devices while it is down).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker
from bench._influxd import BenchInfluxd
from bench._scaleout import Cluster, Load, cpu_seconds
from ingest.store.influx import InfluxStore
from ingest.store.influxconf import InfluxSettings


def _pid(broker: BenchBroker) -> int:
    assert broker.proc is not None  # noqa: S101 - inside its `with`
    return broker.proc.pid


def _stored(store: InfluxStore, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = store.count()
    while count < want and time.monotonic() < deadline:
        time.sleep(0.25)
        count = store.count()
    return count


def throughput(
    workers: int, devices: int, rounds: int, broker: BenchBroker, influx: BenchInfluxd
) -> dict[str, float]:
    database = f"scale_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-w{workers}-") as tmp:
        cluster = Cluster(Path(tmp), broker.port, influx.url, database, workers, devices)
        store = InfluxStore(InfluxSettings(url=influx.url, database=database))
        try:
            cluster.start()
            load = Load(broker.port, cluster.acme_devices(), int(time.time() * 1000) - 86_400_000)
            broker_cpu0 = cpu_seconds(_pid(broker))
            cpu0 = cluster.cpu()
            t0 = time.perf_counter()
            for _ in range(rounds):
                load.round()
            stored = _stored(store, load.readings, 300)
            elapsed = time.perf_counter() - t0
            cpu = cluster.cpu() - cpu0
            broker_cpu = cpu_seconds(_pid(broker)) - broker_cpu0
            if stored < load.readings:
                print(f"# w{workers}: only {stored} of {load.readings} readings stored in time")
            return {
                "msgs_s": load.messages / elapsed,
                "readings_s": load.readings / elapsed,
                "cpu_us_per_reading": cpu / load.readings * 1e6,
                "broker_cpu_us_per_msg": broker_cpu / load.messages * 1e6,
                "messages": load.messages,
            }
        finally:
            cluster.stop()
            store.close()


def kill_run(
    devices: int, rounds: int, broker: BenchBroker, influx: BenchInfluxd
) -> dict[str, int]:
    database = f"scale_kill_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-scale-kill-") as tmp:
        cluster = Cluster(Path(tmp), broker.port, influx.url, database, 2, devices)
        store = InfluxStore(InfluxSettings(url=influx.url, database=database))
        try:
            cluster.start()
            acme = cluster.acme_devices()
            smoke = [d for d, p in acme if p == "acme-smoke"]
            load = Load(broker.port, acme, int(time.time() * 1000) - 86_400_000)
            for _ in range(rounds // 2):
                load.round()
            cluster.kill(1)  # mid-stream: the broker still holds what it had not acknowledged
            for _ in range(rounds // 2):
                load.round()
            load.alarm_round(smoke)
            load.wait_acked(120)
            cluster.restart(1)
            stored = _stored(store, load.readings, 300)
            time.sleep(2.0)  # anything stored twice or late would show now
            stored = store.count()
            deadline = time.monotonic() + 60
            alarms = cluster.alerts_per_source("smoke-alarm")
            while len(alarms) < len(smoke) and time.monotonic() < deadline:
                time.sleep(0.5)
                alarms = cluster.alerts_per_source("smoke-alarm")
            return {
                "lost": max(0, load.readings - stored),
                "dup": max(0, stored - load.readings) + sum(n - 1 for n in alarms.values()),
                "alarms_missing": len(smoke) - len(alarms),
                "readings": load.readings,
            }
        finally:
            cluster.stop()
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30, help="messages per acme device")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with BenchBroker() as broker, BenchInfluxd() as influx:
        results = {w: throughput(w, args.devices, args.rounds, broker, influx) for w in counts}
        for w, r in results.items():
            print(f"scale_w{w}_msgs_s={r['msgs_s']:.0f}")
            print(f"scale_w{w}_readings_s={r['readings_s']:.0f}")
            print(f"scale_cpu_us_per_reading_w{w}={r['cpu_us_per_reading']:.2f}")
            print(f"scale_broker_cpu_us_per_msg_w{w}={r['broker_cpu_us_per_msg']:.2f}")
        if 1 in results and 2 in results:
            ratio = results[2]["cpu_us_per_reading"] / results[1]["cpu_us_per_reading"]
            print(f"scale_cpu_ratio_w2={ratio:.3f}")
        if 4 in results and 1 in results:
            ratio = results[4]["cpu_us_per_reading"] / results[1]["cpu_us_per_reading"]
            print(f"scale_cpu_ratio_w4={ratio:.3f}")
        killed = kill_run(args.devices, args.rounds, broker, influx)
        print(f"scale_kill_readings={killed['readings']}")
        print(f"scale_lost={killed['lost']}")
        print(f"scale_dup={killed['dup']}")
        print(f"scale_alarms_missing={killed['alarms_missing']}")


if __name__ == "__main__":
    main()
