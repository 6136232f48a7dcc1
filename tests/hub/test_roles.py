"""Split roles (issue 12): an ``ingest`` hub and an ``api`` hub, real processes sharing one broker.

Each node is a real ``python -m hub run`` (the ingest one told by ``--role ingest``, the api one by
``HUB_CLUSTER__ROLE=api``) against one real Mosquitto, one real InfluxDB (readings) and one real
PostgreSQL database (registry, users, alerts). Only the ingest node reads sensors; the api node's
screens must still see readings, device statuses and alerts (through the relay, hub/relay.py), its
REST API must read what the ingest node stored, and an acknowledgement made on it must hold on the
ingest node, which keeps evaluating the same rule.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from alerts.events import Level
from alerts.lifecycle import Action, Alert, AlertChange, AuditEntry, State
from alerts.wire import change_body, encode
from devices.loader import load_shipped
from devices.registry import Registry
from hub.db import upgrade
from hub.relay import (
    CameraRow,
    StatePublisher,
    StateRelay,
    change_from_wire,
    decode_cameras,
    decode_readings,
    decode_status,
    encode_cameras,
    encode_readings,
    encode_status,
    newest_per_series,
)
from ingest.batch import ReadingBatch
from ingest.consumer import StatusChange
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY
from tests.influxd import Influxd
from tests.publisher import Publisher

pytestmark = [pytest.mark.influx, pytest.mark.broker, pytest.mark.postgres]

Frame = dict[str, Any]


class Node:
    """One ``python -m hub run`` process, stopped by its PID."""

    def __init__(self, name: str, env: dict[str, str], args: list[str], log: Path) -> None:
        self.name = name
        self.port = int(env["HUB_HTTP__PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run", *args], env=env, stdout=out, stderr=out
            )
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} died:\n{self.tail()}"
            try:
                if self.http.get("/healthz").json().get("broker_connected"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not become healthy:\n{self.tail()}")

    def login(self, user: str, password: str) -> None:
        r = self.http.post("/api/v1/auth/login", json={"username": user, "password": password})
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def status(self) -> dict[str, Any]:
        r = self.http.get("/api/v1/status")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@dataclass
class Cluster:
    ingest: Node
    api: Node
    broker: Broker
    env: dict[str, str]
    workdir: Path
    password: str
    nodes: list[Node]

    def start(self, role: str, extra: dict[str, str] | None = None, name: str = "") -> Node:
        name = name or role
        env = {**self.env, "HUB_DATA_DIR": str(self.workdir / name), **(extra or {})}
        env["HUB_HTTP__PORT"] = str(free_port())
        node = Node(name, env, ["--role", role], self.workdir / f"{name}.log")
        self.nodes.append(node)
        node.wait_healthy()
        node.login("admin", self.password)
        return node


@pytest.fixture
def cluster(
    private_broker: Broker, influxd: Influxd, postgres_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    upgrade(postgres_url)
    registry = Registry(postgres_url)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    influx = influxd.settings()
    base = {
        **os.environ,
        "HUB_REGISTRY_URL": postgres_url,
        "HUB_MQTT__EMBEDDED": "false",
        "HUB_MQTT__HOST": private_broker.host,
        "HUB_MQTT__PORT": str(private_broker.port),
        "HUB_STORE__BACKEND": "influx",
        "HUB_STORE__INFLUX__URL": influx.url,
        "HUB_STORE__INFLUX__DATABASE": influx.database,
    }
    base.pop("HUB_CLUSTER__ROLE", None)
    nodes: list[Node] = []
    try:
        ingest_env = {**base, "HUB_DATA_DIR": str(tmp_path / "ingest")}
        ingest_env["HUB_HTTP__PORT"] = str(free_port())
        ingest = Node("ingest", ingest_env, ["--role", "ingest"], tmp_path / "ingest.log")
        nodes.append(ingest)
        ingest.wait_healthy()
        # The first node made the one administrator of the shared database.
        password = (tmp_path / "ingest" / "initial-admin-password").read_text().strip()
        api_env = {**base, "HUB_DATA_DIR": str(tmp_path / "api"), "HUB_CLUSTER__ROLE": "api"}
        api_env["HUB_VIDEO__FORWARD_TIMEOUT_S"] = "5"  # a forwarded check nobody answers: 504
        api_env["HUB_HTTP__PORT"] = str(free_port())
        api = Node("api", api_env, [], tmp_path / "api.log")
        nodes.append(api)
        api.wait_healthy()
        ingest.login("admin", password)
        api.login("admin", password)
        yield Cluster(ingest, api, private_broker, base, tmp_path, password, nodes)
    finally:
        for node in reversed(nodes):
            node.stop()


def publish(broker: Broker, messages: list[tuple[str, str]]) -> None:
    with Publisher(broker.host, broker.port, client_id=f"roles-{time.monotonic_ns()}") as pub:
        pub.send(messages)


def bin_reading(device: str, fill: float, ts: int) -> tuple[str, str]:
    return (f"sensors/acme/{device}/up", json.dumps({"ts": ts, "fill": fill, "bat": 90}))


async def open_feed(node: Node) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{node.port}/ws/situation")
    await ws.send(json.dumps({"type": "hello", "token": node.token}))
    return ws


async def frames_until(
    ws: ClientConnection, done: Callable[[list[Frame]], bool], within: float = 15
) -> list[Frame]:
    seen: list[Frame] = []
    deadline = time.monotonic() + within
    while not done(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"not seen in {within} s: {seen}"
        seen.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
    return seen


async def frames_for(ws: ClientConnection, seconds: float) -> list[Frame]:
    seen: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return seen


def readings(frames: list[Frame]) -> dict[tuple[str, str], tuple[float, int]]:
    return {(d, m): (v, ts) for f in frames for d, m, v, ts in f.get("readings", [])}


def alert_changes(frames: list[Frame], device: str) -> list[Frame]:
    return [a for f in frames for a in f.get("alerts", []) if a["alert"]["device"] == device]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


async def test_the_api_node_serves_what_the_ingest_node_reads_and_its_acks_hold(
    cluster: Cluster,
) -> None:
    ingest, api = cluster.ingest, cluster.api
    ws = await open_feed(api)
    snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert snap["type"] == "snapshot"

    # A full bin, read by the ingest node only: its reading and its alert reach the api's screens.
    now = int(time.time() * 1000)
    publish(cluster.broker, [bin_reading("bin-00003", 97.0, now)])
    seen = await frames_until(
        ws,
        lambda fs: (
            ("bin-00003", "fill_level") in readings(fs) and bool(alert_changes(fs, "bin-00003"))
        ),
    )
    assert readings(seen)[("bin-00003", "fill_level")] == (97.0, now)
    (created,) = alert_changes(seen, "bin-00003")
    assert created["change"] == "created"
    assert created["alert"]["rule"] == "bin-full"
    assert created["alert"]["level"] == "yellow"
    alert_id = created["alert_id"]

    # The api node's REST reads: latest values from its relayed live state, readings from InfluxDB.
    latest = api.http.get("/api/v1/devices/bin-00003").json()["latest"]
    assert latest["fill_level"]["value"] == 97.0
    stored: dict[str, Any] = {}

    def read_back() -> bool:
        nonlocal stored
        r = api.http.get(
            "/api/v1/devices/bin-00003/readings",
            params={"metric": "fill_level", "start": "2000-01-01T00:00:00Z"},
        )
        stored = r.json()
        return r.status_code == 200 and stored.get("value") == [97.0]

    wait_until(read_back, f"the api node did not read the stored reading: {stored}")

    # A device's own status message reaches the api's screens too.
    publish(cluster.broker, [("sensors/hydrox/wl-00004/status", "offline")])
    seen = await frames_until(ws, lambda fs: any(f.get("status") for f in fs))
    status = [s for f in seen for s in f.get("status", [])]
    assert {"id": "wl-00004", "online": False} in [
        {"id": s["id"], "online": s["online"]} for s in status
    ]

    # Acknowledged on the api node: recorded in the shared database, on the api's feed once.
    r = api.http.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "crew on the way"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged"
    seen = await frames_for(ws, 1.5)  # the echo from the broker would be here by now
    acked = [a for a in alert_changes(seen, "bin-00003") if a["action"] == "acknowledge"]
    assert len(acked) == 1, seen
    assert acked[0]["alert"]["state"] == "acknowledged"
    detail = ingest.http.get(f"/api/v1/alerts/{alert_id}").json()
    assert detail["state"] == "acknowledged"
    # The rules' views agree on both nodes: the api node counts the condition the ingest node's
    # engine holds from the shared alert store.
    for node in (ingest, api):
        view = node.http.get("/api/v1/rules/bin-full").json()
        assert view["active_conditions"] == 1, view
        assert view["failures"] == 0, view
    assert detail["history"][-1]["note"] == "crew on the way"

    # The bin is still full: the ingest node's engine holds the condition, so it neither raises
    # the alert again nor loses the acknowledgement; the reading still reaches the api's screens.
    later = now + 60_000
    stored_before = ingest.status()["readings_stored"]
    publish(cluster.broker, [bin_reading("bin-00003", 98.0, later)])
    seen = await frames_until(
        ws, lambda fs: readings(fs).get(("bin-00003", "fill_level")) == (98.0, later)
    )
    wait_until(
        lambda: ingest.status()["readings_stored"] > stored_before,
        "the ingest node did not store the second reading",
    )
    seen += await frames_for(ws, 1.0)
    await ws.close()
    assert alert_changes(seen, "bin-00003") == []
    listed = ingest.http.get("/api/v1/alerts").json()["items"]
    mine = [(a["id"], a["state"]) for a in listed if a["device"] == "bin-00003"]
    assert mine == [(alert_id, "acknowledged")]
    history = ingest.http.get(f"/api/v1/alerts/{alert_id}").json()["history"]
    assert [h["action"] for h in history] == ["raise", "acknowledge"]

    # What each node says of itself: the api node took frames and alerts and dropped its echo.
    api_status = api.status()
    assert api_status["role"] == "api"
    relay = api_status["relay"]
    assert relay["reading_frames"] >= 2
    assert relay["status_frames"] >= 1
    assert relay["alert_changes"] >= 1
    assert relay["echoes"] >= 1
    assert relay["bad"] == 0
    assert api_status["readings_stored"] == 0  # it ingests nothing itself
    # The ingest node took the acknowledgement made on the api node (for its people's
    # notifications: no more reminders of it) and dropped the echo of its own raise.
    ingest_status = ingest.status()
    assert ingest_status["role"] == "ingest"
    assert ingest_status["relay"]["alert_changes"] == 1
    assert ingest_status["relay"]["echoes"] >= 1
    assert ingest_status["relay"]["reading_frames"] == 0


async def test_an_ingest_node_serves_no_screens(cluster: Cluster) -> None:
    ingest = cluster.ingest
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{ingest.port}/ws/situation")
    assert ingest.http.get("/").status_code == 404
    assert ingest.http.get("/healthz").json()["broker_connected"] is True
    assert ingest.http.get("/api/v1/devices/bin-00001").status_code == 200
    assert cluster.api.http.get("/").status_code == 200
    # HTTP uplinks go to ingest nodes: an api node has no pipeline to store them.
    uplink = "/api/v1/uplink/acme/bin-00001"
    # (404 or, past the screen's static files mounted at "/", 405: no such route either way)
    assert cluster.api.http.post(uplink, content=b"{}").status_code in (404, 405)
    assert ingest.http.post(uplink, content=b"{}").status_code == 401  # served: wants a device


async def test_a_video_node_runs_cameras_only(cluster: Cluster) -> None:
    video = cluster.start("video")
    before = video.status()
    publish(cluster.broker, [bin_reading("bin-00005", 10.0, int(time.time() * 1000))])
    wait_until(
        lambda: cluster.ingest.status()["readings_stored"] >= 1, "the ingest node stored nothing"
    )
    after = video.status()
    assert after["role"] == "video"
    assert (before["messages"], after["messages"]) == (0, 0)  # it reads no sensors
    assert after["relay"] is None
    assert video.http.get("/api/v1/cameras").status_code == 200
    with pytest.raises(InvalidStatus):
        await connect(f"ws://127.0.0.1:{video.port}/ws/situation")


def test_the_relay_frames_round_trip() -> None:
    batch = ReadingBatch.from_columns(
        device=[7, 7, 3, 7, 3],
        metric=[1, 1, 2, 0, 2],
        ts=[2_000, 1_000, 5_000, 3_000, 6_000],
        value=[2.0, 1.0, 5.0, 3.0, float("nan")],
        quality=[0, 0, 1, 0, 8],
    )
    latest = newest_per_series(batch)
    got = decode_readings(encode_readings(latest))
    cols = (got.device.tolist(), got.metric.tolist(), got.ts.tolist(), got.quality.tolist())
    rows = sorted(zip(*cols, got.value.tolist(), strict=True))
    assert rows[1:] == [(7, 0, 3_000, 0, 3.0), (7, 1, 2_000, 0, 2.0)]
    assert rows[0][:4] == (3, 2, 6_000, 8)
    assert np.isnan(rows[0][4])  # the newest, even when it is not a number
    assert got.device.dtype == np.int32
    assert got.value.dtype == np.float64
    statuses = [StatusChange("hydrox", "wl-00004", online=False, ts_ms=1_700_000_000_123)]
    assert decode_status(encode_status(statuses)) == statuses
    cameras = [
        CameraRow("cam-bund", "fault", ["black", "noisy"], 1_700_000_000_456),
        CameraRow("cam-2", "unknown", [], None),
    ]
    frame = encode_cameras(cameras)
    assert decode_cameras(frame) == cameras
    assert len(frame) < 30 * len(cameras)  # compact: no field names on the wire


class _Sent:
    """What a StatePublisher handed its transport (a list; no broker needed for the wire format)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        self.messages.append((topic, payload, qos, retain))


async def test_a_worker_s_rule_errors_reach_the_api_node_s_rule_views() -> None:
    failures: dict[str, int] = {}
    sent = _Sent()
    out = StatePublisher(lambda: sent, 1, rule_failures=lambda: failures)
    batch = ReadingBatch.from_columns(device=[1], metric=[0], ts=[1_000], value=[1.0])
    await out.on_batch(batch)  # the first flush replaces whatever an earlier run retained
    failures["bin-full"] = 2
    await out.on_batch(batch)
    await out.on_batch(batch)  # unchanged: not sent again
    rules = [(t, p, q, r) for t, p, q, r in sent.messages if t.startswith("hub/state/rules/")]
    assert [(t, q, r) for t, _, q, r in rules] == [("hub/state/rules/w1", 1, True)] * 2
    got: dict[str, dict[str, int]] = {}
    relay = StateRelay(
        on_batch=(),
        on_status=(),
        on_alert=lambda change: None,
        vendor_of=lambda device: None,
        on_rules=got.__setitem__,
    )
    for topic, payload, _, _ in rules:
        await relay._apply(topic, payload)
    assert got == {"w1": {"bin-full": 2}}


def test_an_alert_change_rebuilt_from_mqtt_says_what_the_original_said() -> None:
    alert = Alert(
        id=42,
        rule="bin-full",
        source="device:bin-00003",
        kind="threshold",
        level=Level.YELLOW,
        state=State.ACKNOWLEDGED,
        firing=True,
        summary="Bin full",
        first_ms=1_700_000_000_123,
        last_ms=1_700_000_060_456,
        updated_ms=1_700_000_070_789,
        seq=2,
        state_ms=1_700_000_070_789,
        device="bin-00003",
        area="sh/huangpu/street-0",
        vendor="acme",
        metric="fill_level",
        value=97.0,
        acknowledged_ms=1_700_000_070_789,
    )
    entry = AuditEntry(
        alert_id=42,
        seq=2,
        at_ms=1_700_000_070_789,
        actor="admin",
        action=Action.ACKNOWLEDGE,
        from_state=State.RAISED,
        to_state=State.ACKNOWLEDGED,
        from_level=Level.YELLOW,
        to_level=Level.YELLOW,
        note="crew on the way",
    )
    change = AlertChange(alert=alert, entry=entry)
    rebuilt = change_from_wire(json.loads(encode(change)), {"bin-00003": "acme"}.get)
    assert change_body(rebuilt) == change_body(change)
    assert rebuilt.alert.vendor == "acme"
    assert rebuilt.kind is change.kind


def test_the_api_node_rejoins_and_catches_up_after_losing_the_broker(cluster: Cluster) -> None:
    api = cluster.api
    cluster.broker.restart()
    # Published as soon as the broker is back: the ingest node's persistent session queues it;
    # the api node's clean one may not be back yet, and reads the store again when it is.
    now = int(time.time() * 1000)
    publish(cluster.broker, [bin_reading("bin-00007", 42.0, now)])
    wait_until(
        lambda: api.status()["relay"]["resyncs"] >= 1,
        "the api node did not notice its reconnection",
    )

    def latest() -> float | None:
        fill = api.http.get("/api/v1/devices/bin-00007").json()["latest"].get("fill_level")
        return None if fill is None else float(fill["value"])

    wait_until(lambda: latest() == 42.0, "the api node missed the reading")
    # And the relay goes on after the reconnection.
    publish(cluster.broker, [bin_reading("bin-00007", 43.0, now + 60_000)])
    wait_until(lambda: latest() == 43.0, "the api node no longer follows the ingest node")
    assert api.http.get("/healthz").json()["broker_connected"] is True


def camera_deltas(frames: list[Frame], camera: str) -> list[Frame]:
    return [c for f in frames for c in f.get("cameras", []) if c["id"] == camera]


async def test_camera_changes_on_the_video_node_reach_the_api_nodes_screens_live(
    cluster: Cluster,
) -> None:
    api = cluster.api
    # No patrol cycle: the camera is checked exactly when asked, on the video node.
    video = cluster.start("video", {"HUB_VIDEO__PATROL": "false"})
    ws = await open_feed(api)
    snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert snap["type"] == "snapshot"
    assert snap.get("cameras", []) == []

    # Registered on the video node: the api node learns of it from the relay (its camera
    # registry is refreshed for a camera it does not know) and shows it as a delta.
    camera = {
        "id": "cam-roles",
        "url": "rtsp://127.0.0.1:9/nothing-listens-here",
        "lat": 31.24,
        "lon": 121.49,
        "area": "sh/huangpu/bund",
    }
    assert video.http.post("/api/v1/cameras", json=camera).status_code == 201
    seen = await frames_until(ws, lambda fs: bool(camera_deltas(fs, "cam-roles")))
    assert camera_deltas(seen, "cam-roles") == [
        {"id": "cam-roles", "status": "unknown", "findings": []}
    ]

    # Two checks on the video node find no signal (raise_after=2): "ok" (seen, not confirmed),
    # then "lost", each on the api node's feed as it happens, with no new snapshot.
    for _ in range(2):
        r = await asyncio.to_thread(video.http.post, "/api/v1/cameras/cam-roles/check", timeout=60)
        assert r.status_code == 200, r.text
    seen += await frames_until(
        ws,
        lambda fs: any(c["status"] == "lost" for c in camera_deltas(fs, "cam-roles")),
    )
    await ws.close()
    assert [f["type"] for f in seen] == ["delta"] * len(seen)
    assert camera_deltas(seen, "cam-roles") == [
        {"id": "cam-roles", "status": "unknown", "findings": []},
        {"id": "cam-roles", "status": "ok", "findings": []},
        {"id": "cam-roles", "status": "lost", "findings": ["signal_lost"]},
    ]

    # The api node's own view follows (REST, and the snapshot a screen connecting now gets),
    # with the full status the video node stored, not only the frame's state.
    detail = api.http.get("/api/v1/cameras/cam-roles").json()
    assert detail["state"] == "lost"
    assert detail["last_check_at"] is not None
    # (A snapshot cached a moment ago may serve it, with the deltas since replayed after it.)
    ws = await open_feed(api)
    joined = await frames_for(ws, 1.5)
    await ws.close()
    assert joined[0]["type"] == "snapshot"
    standing = {c["id"]: c["status"] for f in joined for c in f.get("cameras", [])}
    assert standing == {"cam-roles": "lost"}
    assert api.status()["relay"]["camera_frames"] >= 3

    # A check on the video node that changes nothing screens show still reaches the api node's
    # REST view (its time), and sends the screens no delta.
    first = detail["last_check_at"]
    ws = await open_feed(api)
    await asyncio.wait_for(ws.recv(), 10)  # its snapshot
    await frames_for(ws, 1.5)  # and the deltas replayed after a cached one
    r = await asyncio.to_thread(video.http.post, "/api/v1/cameras/cam-roles/check", timeout=60)
    assert r.status_code == 200, r.text
    wait_until(
        lambda: api.http.get("/api/v1/cameras/cam-roles").json()["last_check_at"] > first,
        "the api node did not learn of a check that changed nothing",
    )
    assert camera_deltas(await frames_for(ws, 1.0), "cam-roles") == []
    await ws.close()

    # A check asked of the api node (what the screen's "check now" reaches behind a load balancer)
    # is done by the video node over MQTT and answered with the status it stored: the api node
    # opens no stream.
    before = api.http.get("/api/v1/cameras/cam-roles").json()["last_check_at"]
    r = await asyncio.to_thread(api.http.post, "/api/v1/cameras/cam-roles/check", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "lost"
    assert r.json()["last_check_at"] > before
    assert api.http.post("/api/v1/cameras/no-such-camera/check").status_code == 404
    assert api.http.get("/api/v1/cameras/summary").json()["patrol"]["checks"] == 0
    assert video.http.get("/api/v1/cameras/summary").json()["patrol"]["checks"] == 4

    # No video node running: the api node says so after its wait (video.forward_timeout_s).
    video.stop()
    r = await asyncio.to_thread(api.http.post, "/api/v1/cameras/cam-roles/check", timeout=60)
    assert r.status_code == 504, r.text
    assert "no video node answered" in r.json()["detail"]
