"""Load faults against a real hub: one device flooding at 50x its rate, and 500 websocket clients churning.

Called by `bench/faults.py` (``run(args)`` returns the figures) or alone (``python bench/_faults_load.py``
prints ``name=value`` lines). Real processes on loopback: Mosquitto with the hub's configuration, the hub
in a process of its own (uvicorn, as `hub run` serves it), a publisher process, and the websocket
clients in this process.

**Flood.** ``DEVICES`` normal devices report once a second, which is what their profile expects
(``report_interval_s: 1``); one more device of the same profile floods at 50 a second (50x) in every
other segment of ``segment_s`` seconds, after a calm warm-up that is not counted. The hub runs with the rate limit on (10x, over 10 intervals).
Every reading carries its publish time; the hub process records, for each reading of a normal device,
when it was stored (the pipeline's ``on_batch`` hook runs once the store has it and the message is
acknowledged). ``fault_flood_p99_delta_ms`` is the p99 publish->stored of normal devices in flood
segments minus that in calm segments (interleaved, so drift of a shared machine hits both alike).

**Clock skew.** Then one device sends a reading two hours ahead and another three readings two hours
behind (1.3 s apart; the hub confirms a steady lag after 1 s here): ``fault_skew_devices_flagged``
(both should be, with an ``ingest.clock_skew`` alert each) and ``fault_skew_readings_flagged``.

**Websocket churn.** After the flood the publishers stop; ``ws_clients`` clients connect to
``/ws/situation``, send the hello, take the snapshot and drop, for ``ws_rounds`` rounds. The hub
process's RSS is read (psutil) after a first warm-up round and after the last:
``fault_ws_churn_rss_growth_mb`` is the difference; a per-connection leak of even 10 kB would show as
several MB over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker, free_port
from bench._rawpub import RawPublisher

DEVICES = 200
PROFILE = "bench-noise-1s"
FLOOD_DEVICE = "flood-0"
FLOOD_FACTOR = 50
SKEWED = ("skew-ahead", "skew-behind")  # clocks two hours ahead and behind
TWO_HOURS_MS = 2 * 3600_000
TICK_S = 0.02


# -- the hub process ------------------------------------------------------------------------------


def prepare(data: Path) -> None:
    """The registry: shipped profiles, a one-second noise profile, its normal devices and the flooder."""
    from devices.loader import load_shipped
    from devices.profiles import Device
    from devices.registry import Registry
    from hub.db import upgrade

    url = f"sqlite:///{data / 'hub.db'}"
    upgrade(url)
    reg = Registry(url)
    load_shipped(reg)
    fast = reg.profile("acme-noise").model_copy(update={"id": PROFILE, "report_interval_s": 1})
    reg.put_profiles([fast])
    devices = [Device(id=f"n{i:05d}", vendor="acme", profile=PROFILE) for i in range(DEVICES)]
    others = [FLOOD_DEVICE, *SKEWED]
    reg.put_devices([*devices, *(Device(id=d, vendor="acme", profile=PROFILE) for d in others)])
    reg.engine.dispose()


def hub_role(ns: argparse.Namespace) -> None:
    """Serve the hub; record publish->stored of every normal device's reading; dump them at exit."""
    import uvicorn

    from hub.app import create_app
    from hub.settings import (
        HttpSettings,
        HubSettings,
        IngestSettings,
        MqttSettings,
        RulesSettings,
    )
    from ingest.batch import ReadingBatch

    data = Path(ns.data)
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(
            embedded=False, port=ns.broker_port, auth=False, client_id="bench-load-hub"
        ),
        http=HttpSettings(port=ns.http_port),
        # A clock behind is confirmed after 1 s of steady lag here (20 s by default).
        ingest=IngestSettings(
            rate_limit_factor=10, rate_limit_window_intervals=10, skew_confirm_s=1
        ),
        rules=RulesSettings(shipped=False),
    )
    sent: list[np.ndarray[Any, Any]] = []
    stored: list[np.ndarray[Any, Any]] = []

    def dump() -> None:
        np.savez(
            ns.out,
            sent=np.concatenate(sent) if sent else np.zeros(0, np.int64),
            stored=np.concatenate(stored) if stored else np.zeros(0, np.int64),
        )

    app = create_app(settings, before_shutdown=[dump], tune_gc=True)  # as `hub run` does

    def attach() -> None:
        while getattr(app.state, "components", None) is None:
            time.sleep(0.05)
        components = app.state.components
        devices = components.registry.interner.devices
        normal = np.zeros(components.registry.interner.device_count, dtype=np.bool_)
        for i in range(DEVICES):
            normal[devices[f"n{i:05d}"].index] = True

        async def on_stored(batch: ReadingBatch) -> None:
            now = time.time_ns() // 1_000_000
            rows = normal[batch.device] & (batch.metric == batch.metric[0])  # one per report
            sent.append(batch.ts[rows])
            stored.append(np.full(int(rows.sum()), now, dtype=np.int64))

        components.pipeline.add_batch_handler(on_stored)

    threading.Thread(target=attach, daemon=True).start()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=ns.http_port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )


# -- the publisher process ------------------------------------------------------------------------


def publish_role(ns: argparse.Namespace) -> None:
    """Normal devices once a second each; the flooder at 50/s in odd segments; segments to a file."""
    normal = RawPublisher("127.0.0.1", ns.broker_port, "bench-load-normal")
    flood = RawPublisher("127.0.0.1", ns.broker_port, "bench-load-flood")
    per_tick = max(1, round(DEVICES * TICK_S))
    segments: list[dict[str, float | bool]] = []
    next_device = 0
    t0 = time.monotonic()
    # A calm warm-up first (the hub's first batches are slow: caches, first writes), not counted.
    ends = np.cumsum([ns.flood_warmup_s] + [ns.flood_segment_s] * ns.flood_segments)
    for seg in range(ns.flood_segments + 1):
        flooding = seg % 2 == 0 and seg > 0
        start_wall = time.time()
        end = t0 + float(ends[seg])
        tick = time.monotonic()
        while time.monotonic() < end:
            ts = time.time_ns() // 1_000_000
            packets = []
            for _ in range(per_tick):
                device = f"n{next_device:05d}"
                next_device = (next_device + 1) % DEVICES
                body = b'{"ts":%d,"laeq":55.0,"lamax":61.5}' % ts
                packets.append(normal.packet(f"sensors/acme/{device}/up".encode(), body))
            normal.send(packets)
            if flooding:
                body = b'{"ts":%d,"laeq":99.0,"lamax":120.0}' % ts
                flood.send([flood.packet(f"sensors/acme/{FLOOD_DEVICE}/up".encode(), body)])
            tick += TICK_S
            time.sleep(max(0.0, tick - time.monotonic()))
        segments.append(
            {"start": start_wall, "end": time.time(), "flood": flooding, "warmup": seg == 0}
        )
    # Clocks two hours off: one message ahead, three behind, more than the confirmation apart.
    for k in range(3):
        ts = time.time_ns() // 1_000_000
        packets = [
            normal.packet(
                b"sensors/acme/skew-behind/up", b'{"ts":%d,"laeq":50}' % (ts - TWO_HOURS_MS)
            )
        ]
        if k == 0:
            body = b'{"ts":%d,"laeq":50}' % (ts + TWO_HOURS_MS)
            packets.append(normal.packet(b"sensors/acme/skew-ahead/up", body))
        normal.send(packets)
        time.sleep(1.3)
    time.sleep(1.0)  # the last PUBACKs
    Path(ns.out).write_text(
        json.dumps({"segments": segments, "normal_acked": normal.acked, "flood_acked": flood.acked})
    )
    normal.close()
    flood.close()


# -- the orchestration ----------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: the lifespan's hooks run
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = "the hub process exited before it was ready"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json().get("broker_connected"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = "the hub did not become ready in 60 s"
    raise RuntimeError(msg)


def _p99(values: np.ndarray[Any, Any]) -> float:
    return float(np.percentile(values, 99)) if len(values) else float("nan")


def flood_figures(samples: Path, segments: list[dict[str, Any]]) -> dict[str, float]:
    """p99 publish->stored of normal devices in calm and in flood segments, and their difference."""
    with np.load(samples) as z:
        sent, stored = z["sent"], z["stored"]
    latency = (stored - sent).astype(np.float64)
    calm = np.zeros(len(sent), dtype=np.bool_)
    flood = np.zeros(len(sent), dtype=np.bool_)
    for seg in segments:
        if seg["warmup"]:
            continue
        inside = (sent >= seg["start"] * 1000) & (sent < seg["end"] * 1000)
        (flood if seg["flood"] else calm)[inside] = True
    base, under = _p99(latency[calm]), _p99(latency[flood])
    return {
        "fault_flood_p99_base_ms": round(base, 2),
        "fault_flood_p99_flood_ms": round(under, 2),
        "fault_flood_p99_delta_ms": round(under - base, 2),
        "fault_flood_normal_samples": float(calm.sum() + flood.sum()),
    }


async def _churn_round(url: str, token: str, clients: int) -> int:
    """``clients`` screens connect, say hello, take their snapshot and drop; returns how many did."""
    from websockets.asyncio.client import connect

    hello = json.dumps({"type": "hello", "token": token, "since": None, "filter": None})

    async def one() -> int:
        async with connect(url, max_size=None, compression=None, open_timeout=30) as ws:
            await ws.send(hello)
            first = json.loads(await asyncio.wait_for(ws.recv(), 30))
            return 1 if first.get("type") == "snapshot" else 0

    done = await asyncio.gather(*(one() for _ in range(clients)))
    return sum(done)


def ws_churn(
    base_url: str, token: str, hub_pid: int, clients: int, rounds: int
) -> dict[str, float]:
    """RSS of the hub after a warm-up round and after ``rounds`` more of ``clients`` connections."""
    ws_url = base_url.replace("http://", "ws://") + "/ws/situation"
    proc = psutil.Process(hub_pid)
    ok = asyncio.run(_churn_round(ws_url, token, clients))
    time.sleep(2.0)
    baseline = proc.memory_info().rss
    peak = baseline
    for _ in range(rounds):
        ok += asyncio.run(_churn_round(ws_url, token, clients))
        peak = max(peak, proc.memory_info().rss)
    time.sleep(3.0)  # the server's closes and the feed's cleanup
    after = proc.memory_info().rss
    status = httpx.get(
        f"{base_url}/api/v1/feed/status", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    return {
        "fault_ws_churn_connections": float(ok),
        "fault_ws_churn_rss_baseline_mb": round(baseline / 2**20, 1),
        "fault_ws_churn_rss_peak_mb": round(peak / 2**20, 1),
        "fault_ws_churn_rss_growth_mb": round((after - baseline) / 2**20, 2),
        "fault_ws_churn_clients_left": float(status.get("screens", -1)),
    }


def run(args: Any = None) -> dict[str, float]:  # noqa: ANN401 - bench/faults.py's argparse namespace
    """Both scenarios, with the options of `add_arguments` (defaults when ``args`` lacks them)."""
    segment_s = float(getattr(args, "flood_segment_s", 1.5))
    segments = int(getattr(args, "flood_segments", 20))
    warmup_s = float(getattr(args, "flood_warmup_s", 5.0))
    clients = int(getattr(args, "ws_clients", 500))
    rounds = int(getattr(args, "ws_rounds", 4))
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-faults-load-") as tmp, BenchBroker() as broker:
        data = Path(tmp) / "hub"
        data.mkdir()
        prepare(data)
        http_port = free_port()
        url = f"http://127.0.0.1:{http_port}"
        samples = Path(tmp) / "samples.npz"
        pub_out = Path(tmp) / "publisher.json"
        hub = _spawn(
            "--role", "hub", "--data", str(data), "--broker-port", str(broker.port),
            "--http-port", str(http_port), "--out", str(samples),
        )  # fmt: skip
        try:
            _wait_ready(url, hub)
            password = (data / "initial-admin-password").read_text().strip()
            login = httpx.post(
                f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}
            )
            login.raise_for_status()
            token = login.json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            pub = _spawn(
                "--role", "publish", "--broker-port", str(broker.port), "--out", str(pub_out),
                "--flood-segments", str(segments), "--flood-segment-s", str(segment_s),
                "--flood-warmup-s", str(warmup_s),
            )  # fmt: skip
            pub.wait(warmup_s + segments * segment_s + 60)
            published = json.loads(pub_out.read_text())
            time.sleep(2.0)  # the last flush, the alert applier
            status = httpx.get(f"{url}/api/v1/status", headers=auth, timeout=10).json()
            alerts = httpx.get(
                f"{url}/api/v1/alerts", params={"active": True, "limit": 100}, headers=auth
            ).json()["items"]
            flagged = [
                a
                for a in alerts
                if a["rule"] == "ingest.rate_limit" and a["device"] == FLOOD_DEVICE
            ]
            figures["fault_flood_published"] = float(published["flood_acked"])
            figures["fault_flood_rejected"] = float(status["rate_limited"])
            figures["fault_flood_flagged"] = float(len(flagged))
            skewed = {
                a["device"]
                for a in alerts
                if a["rule"] == "ingest.clock_skew" and a["device"] in SKEWED
            }
            figures["fault_skew_devices_flagged"] = float(len(skewed))
            figures["fault_skew_readings_flagged"] = float(status["clock_skewed"])
            figures |= ws_churn(url, token, hub.pid, clients, rounds)
        finally:
            _stop(hub)
        figures |= flood_figures(samples, published["segments"])
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This part's options (`bench/faults.py` adds them to its own)."""
    parser.add_argument("--flood-segments", type=int, default=20, help="flood: calm/flood segments")
    parser.add_argument("--flood-segment-s", type=float, default=1.5, help="flood: segment, s")
    parser.add_argument("--flood-warmup-s", type=float, default=5.0, help="flood: warm-up, s")
    parser.add_argument("--ws-clients", type=int, default=500, help="websocket churn: clients")
    parser.add_argument("--ws-rounds", type=int, default=4, help="websocket churn: rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["run", "hub", "publish"], default="run")
    parser.add_argument("--data")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--out")
    add_arguments(parser)
    ns = parser.parse_args()
    if ns.role == "hub":
        hub_role(ns)
    elif ns.role == "publish":
        publish_role(ns)
    else:
        for name, value in run(ns).items():
            print(f"{name}={value:g}")


if __name__ == "__main__":
    main()
