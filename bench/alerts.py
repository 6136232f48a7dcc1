"""Alerting benchmark: the rule engine alone, and the hub from publish to alert event on MQTT, under load.

Method.
1. Engine alone (`bench/alerts_engine.py`'s method): 10,000 devices, 50 rules, 5,000-reading batches
   on a virtual clock; prints ``alerts_eval_readings_s`` with its same-run numpy baseline.
2. The hub end to end: one Mosquitto (the hub's no-loss configuration) and the hub as a separate
   process (``python -m hub run``, its own registry of the same 10,000 devices and a rule file of the
   same 50 rules, one of which is an offline rule for streetlights with ``after_s: 5``). This process
   publishes steady load at ``--msgs`` MQTT messages/s (default 20,000, the issue's figure; acme's flat
   JSON, 2-4 readings a message, so ~60,000 readings/s; every device with normal values) at QoS 1,
   and meanwhile:
   - *probes*: ``--probe-rate`` times a second a smoke detector not used before reports an alarm
     (rule ``smoke-alarm``: red at once); latency = publish -> the ``created`` event for that
     detector arriving on ``hub/alerts/#`` (both clocks in this process);
   - *offline*: all streetlights report every second; at the probe phase's start 20 of them stop.
     Lag = arrival of their offline alert - (their last publish + 5 s);
   - *baseline*: the same publisher sends an echo message with each probe to a topic this process
     subscribes to: publish -> receive through the same broker under the same load is the floor of
     any MQTT-in-MQTT-out latency on this machine, measured in the same run.

Prints name=value lines: alerts_eval_readings_s, alerts_eval_baseline_readings_s, alerts_eval_ratio,
alerts_load_readings_s, alerts_load_msgs_s (achieved), alerts_latency_p50_ms, alerts_latency_p99_ms,
alerts_latency_max_ms, alerts_probes, alerts_probes_answered, alerts_mqtt_baseline_p50_ms,
alerts_mqtt_baseline_p99_ms, alerts_latency_ratio_p99 (hub p99 / baseline p99), offline_detect_lag_s
(the worst of 20), offline_detect_lag_p50_s, alerts_hub_readings_stored.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker, free_port
from bench._rawpub import RawPublisher
from bench.alerts_engine import baseline, build_batches, build_registry, build_rules, run

OFFLINE_AFTER_S = 5.0
DARK = 20  # streetlights that stop reporting
ECHO = "bench/echo"

OFFLINE_RULE = {
    "id": "bench-streetlight-offline",
    "kind": "offline",
    "name": "Streetlight silent (bench: 5 s)",
    "device_type": "streetlight",
    "after_s": OFFLINE_AFTER_S,
    "level": "yellow",
}

# Normal values per acme profile: (payload keys and values, readings per message).
NORMAL: dict[str, dict[str, float]] = {
    "acme-mc": {"tilt": 0.4, "open": 0, "water": 0, "bat": 81},
    "acme-smoke": {"smoke": 0.1, "alarm": 0, "bat": 90},
    "acme-gas": {"lel": 1.0, "bat": 88},
    "acme-bin": {"fill": 40.0, "temp": 21.0, "bat": 77},
    "acme-noise": {"laeq": 55.0, "lamax": 63.0},
    "acme-light": {"on": 1, "power": 80.0},
    "acme-tilt": {"dx": 0.2, "dy": 0.1, "tilt": 0.1},
}


def engine_alone(devices: int, rules: int, repeats: int) -> dict[str, float]:
    """`bench/alerts_engine.py`'s figures: readings/s of `RuleEngine.evaluate`, and its baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = build_registry(Path(tmp) / "hub.db", devices)
        rule_set = build_rules(rules)
        batches = build_batches(registry, 300, 5_000)
        runs, bases = [], []
        for _ in range(repeats):
            runs.append(run(registry, rule_set, batches, profile=False))
            bases.append(baseline(batches, devices))
        registry.engine.dispose()
    readings = sum(len(b) for b in batches[1:])
    rate = readings / float(np.median([r.seconds for r in runs]))
    base = sum(len(b) for b in batches) / float(np.median(bases))
    return {"eval": rate, "base": base}


class Listener:
    """Subscribes ``hub/alerts/#`` and the echo topic; records arrival times (monotonic)."""

    def __init__(self, port: int) -> None:
        self.created: dict[tuple[str, str], float] = {}
        # Wall-clock ms the engine decided (the event's time) and the message arrived, per device.
        self.decided: dict[str, tuple[float, float]] = {}
        self.echo: dict[int, float] = {}
        self._ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-alert-listener")
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_: self._ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([("hub/alerts/#", 1), (ECHO, 1)])
        self.c.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("listener could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic == ECHO:
            self.echo[int(msg.payload)] = now
            return
        body = json.loads(msg.payload)
        if body.get("change") == "created":
            alert = body["alert"]
            self.created.setdefault((alert["rule"], alert["device"] or alert["source"]), now)
            at = datetime.fromisoformat(body["at"]).timestamp() * 1000
            self.decided.setdefault(alert["device"] or "", (at, time.time() * 1000))

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Background:
    """The steady load and the streetlights, published from a process of its own (paced, QoS 1)."""

    def __init__(
        self, port: int, devices: list[tuple[str, str]], msgs_s: float, skip: set[str]
    ) -> None:
        self.port = port
        self.lights = [d for d, p in devices if p == "acme-light"]
        self.dark = self.lights[:DARK]
        self.background = [(d, p) for d, p in devices if p != "acme-light" and d not in skip]
        # The streetlights send one message a second each; the rest of the rate is background.
        self.msgs_s = max(0.0, msgs_s - len(self.lights))

    def run(self, go_dark: Any, stop: Any, results: Any) -> None:  # noqa: ANN401 - mp events
        """Publish until ``stop``; the dark streetlights stop once ``go_dark`` is set."""
        pub = RawPublisher("127.0.0.1", self.port, "bench-load")
        dark = set(self.dark)
        last_light: dict[str, float] = {}
        messages = readings = 0
        # Topic and payload template per device, built once; only the time changes per message.
        templates = {
            d: (
                f"sensors/acme/{d}/up".encode(),
                ('{"ts":%d,' + json.dumps(NORMAL[p])[1:]).encode(),
                len(NORMAL[p]),
            )
            for d, p in [*self.background, *((d, "acme-light") for d in self.lights)]
        }

        def packet(device: str) -> bytes:
            nonlocal messages, readings
            topic, template, n = templates[device]
            messages += 1
            readings += n
            return pub.packet(topic, template % (time.time_ns() // 1_000_000))

        t_start = time.monotonic()
        cursor = sent = 0
        next_light = t_start
        while not stop.is_set():
            now = time.monotonic()
            due = int((now - t_start) * self.msgs_s) - sent
            out = []
            for _ in range(max(0, min(due, 5000))):
                out.append(packet(self.background[cursor % len(self.background)][0]))
                cursor += 1
                sent += 1
            if now >= next_light:  # every streetlight once a second (the dark ones stop)
                next_light += 1.0
                dark_now = go_dark.is_set()
                for device in self.lights:
                    if not (dark_now and device in dark):
                        out.append(packet(device))
                        last_light[device] = time.monotonic()
            pub.send(out)
            time.sleep(max(0.0, 0.01 - (time.monotonic() - now)))
        elapsed = time.monotonic() - t_start
        time.sleep(1.0)  # the last PUBACKs
        acked = pub.acked
        pub.close()
        results.put(
            {
                "msgs_s": messages / elapsed,
                "readings_s": readings / elapsed,
                "messages": messages,
                "acked": acked,
                "readings": readings,
                "last_light": {d: last_light[d] for d in self.dark if d in last_light},
            }
        )


class Probes:
    """Smoke alarms from detectors not used before, with an echo beside each (the MQTT baseline)."""

    def __init__(self, port: int, probes: list[str], rate: float) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probes")
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.probes = probes
        self.rate = rate
        self.sent: dict[str, float] = {}
        self.echo_sent: dict[int, float] = {}
        self.stop = threading.Event()
        self.sent_wall: dict[str, float] = {}

    def run(self) -> None:
        t0 = time.monotonic()
        for k, device in enumerate(self.probes):
            pause = t0 + k / self.rate - time.monotonic()
            if self.stop.wait(max(0.0, pause)):
                return
            body = {"ts": time.time_ns() // 1_000_000, "smoke": 9.0, "alarm": 1, "bat": 90}
            self.sent[device] = time.monotonic()
            self.sent_wall[device] = time.time() * 1000
            self.c.publish(f"sensors/acme/{device}/up", json.dumps(body), qos=1)
            self.echo_sent[k] = time.monotonic()
            self.c.publish(ECHO, str(k), qos=1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def start_hub(
    data: Path,
    port: int,
    http_port: int,
    rules_file: Path,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "HUB_DATA_DIR": str(data),
        "HUB_MQTT__EMBEDDED": "false",
        "HUB_MQTT__HOST": "127.0.0.1",
        "HUB_MQTT__PORT": str(port),
        "HUB_HTTP__PORT": str(http_port),
        "HUB_RULES__SHIPPED": "false",
        "HUB_RULES__PATHS": json.dumps([str(rules_file)]),
    }
    log = (data / "hub.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], data: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub exited: {(data / 'hub.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json().get("broker_connected"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("hub did not become ready in 60 s")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp, BenchBroker() as broker:
        data = Path(tmp)
        registry = build_registry(data / "hub.db", args.devices)
        devices = [(d, e.profile) for d, e in registry.interner.devices.items()]
        registry.engine.dispose()
        rules = [r.model_dump(mode="json") for r in build_rules(args.rules - 1)] + [OFFLINE_RULE]
        rules_file = data / "bench-rules.yaml"
        rules_file.write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True))
        http_port = free_port()
        url = f"http://127.0.0.1:{http_port}"
        hub = start_hub(data, broker.port, http_port, rules_file)
        acme = [(d, p) for d, p in devices if p in NORMAL]
        smoke = [d for d, p in acme if p == "acme-smoke"]
        probe_ids = smoke[: len(smoke) * 3 // 4]
        ctx = mp.get_context("fork")
        go_dark, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
        background = Background(broker.port, acme, args.msgs, set(probe_ids))
        listener = probes = None
        loader = ctx.Process(target=background.run, args=(go_dark, stop, results), daemon=True)
        try:
            wait_ready(url, hub, data)
            listener = Listener(broker.port)
            probes = Probes(broker.port, probe_ids, args.probe_rate)
            loader.start()
            time.sleep(args.warmup)
            go_dark.set()
            prober = threading.Thread(target=probes.run, name="probes", daemon=True)
            prober.start()
            time.sleep(args.duration)
            probes.stop.set()
            stop.set()
            load = results.get(timeout=60)
            loader.join(10)
            prober.join(5)
            time.sleep(2.0)  # the last probes' alerts
            password = (data / "initial-admin-password").read_text().strip()
            token = httpx.post(
                f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}
            ).json()["access_token"]
            status = httpx.get(
                f"{url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
            ).json()
        finally:
            stop.set()
            if loader.is_alive():
                loader.terminate()
            if probes is not None:
                probes.close()
            if listener is not None:
                listener.close()
            hub.terminate()
            try:
                hub.wait(30)
            except subprocess.TimeoutExpired:
                hub.kill()
        lat = [
            (listener.created[("smoke-alarm", d)] - t) * 1000
            for d, t in probes.sent.items()
            if ("smoke-alarm", d) in listener.created
        ]
        decide = [
            listener.decided[d][0] - t for d, t in probes.sent_wall.items() if d in listener.decided
        ]
        notify = [  # the probes' alerts only (the streetlights' offline alerts come from the tick)
            arrived - at for d, (at, arrived) in listener.decided.items() if d in probes.sent_wall
        ]
        echo = [
            (listener.echo[k] - t) * 1000 for k, t in probes.echo_sent.items() if k in listener.echo
        ]
        last_light: dict[str, float] = load["last_light"]
        lags = [
            listener.created[(OFFLINE_RULE["id"], d)] - (t + OFFLINE_AFTER_S)
            for d, t in last_light.items()
            if (OFFLINE_RULE["id"], d) in listener.created
        ]
        return {
            "load_readings_s": load["readings_s"],
            "load_msgs_s": load["msgs_s"],
            "load_acked": load["acked"] / max(load["messages"], 1),
            "published": load["readings"] + 3 * len(probes.sent),
            "probes": len(probes.sent),
            "answered": len(lat),
            "p50": pct(lat, 50),
            "decide_p50": pct(decide, 50),
            "decide_p99": pct(decide, 99),
            "notify_p50": pct(notify, 50),
            "notify_p99": pct(notify, 99),
            "p99": pct(lat, 99),
            "max": max(lat) if lat else float("nan"),
            "echo_p50": pct(echo, 50),
            "echo_p99": pct(echo, 99),
            "lag_max": max(lags) if len(lags) == DARK else float("inf"),
            "lag_p50": pct(lags, 50),
            "dark_detected": len(lags),
            "stored": status["readings_stored"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument(
        "--msgs", type=float, default=20_000, help="MQTT messages per second offered"
    )
    parser.add_argument("--probe-rate", type=float, default=20.0, help="alarms per second")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load before probing")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of probing")
    parser.add_argument("--repeats", type=int, default=3, help="engine-alone runs (median)")
    args = parser.parse_args()

    alone = engine_alone(args.devices, args.rules, args.repeats)
    print(f"alerts_eval_readings_s={alone['eval']:.0f}")
    print(f"alerts_eval_baseline_readings_s={alone['base']:.0f}")
    print(f"alerts_eval_ratio={alone['eval'] / alone['base']:.3f}")
    e2e = end_to_end(args)
    print(f"alerts_load_readings_s={e2e['load_readings_s']:.0f}")
    print(f"alerts_load_msgs_s={e2e['load_msgs_s']:.0f}")
    print(f"alerts_load_acked_fraction={e2e['load_acked']:.3f}")
    print(f"alerts_probes={e2e['probes']}")
    print(f"alerts_probes_answered={e2e['answered']}")
    print(f"alerts_latency_p50_ms={e2e['p50']:.1f}")
    print(f"alerts_latency_p99_ms={e2e['p99']:.1f}")
    print(f"alerts_latency_max_ms={e2e['max']:.1f}")
    # The two halves: publish -> the engine's decision, and decision -> the alert message arriving.
    print(f"alerts_decide_p50_ms={e2e['decide_p50']:.1f}")
    print(f"alerts_decide_p99_ms={e2e['decide_p99']:.1f}")
    print(f"alerts_notify_p50_ms={e2e['notify_p50']:.1f}")
    print(f"alerts_notify_p99_ms={e2e['notify_p99']:.1f}")
    print(f"alerts_mqtt_baseline_p50_ms={e2e['echo_p50']:.2f}")
    print(f"alerts_mqtt_baseline_p99_ms={e2e['echo_p99']:.2f}")
    print(f"alerts_latency_ratio_p99={e2e['p99'] / max(e2e['echo_p99'], 1e-3):.1f}")
    print(f"offline_detect_lag_s={e2e['lag_max']:.2f}")
    print(f"offline_detect_lag_p50_s={e2e['lag_p50']:.2f}")
    print(f"offline_detected={e2e['dark_detected']}/{DARK}")
    print(f"alerts_hub_readings_stored={e2e['stored']}")
    print(f"alerts_readings_published={e2e['published']}")


if __name__ == "__main__":
    main()
