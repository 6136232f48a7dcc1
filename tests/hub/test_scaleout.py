"""Two ingest workers on one Mosquitto, one InfluxDB and one SQL database (issue 12).

Real processes (`python -m hub run --role ingest`, slots 0 and 1 of 2): every reading is stored exactly
once, each device is decoded by its own worker only, an alert is raised exactly once, and a worker
SIGKILLed mid-stream and restarted (as its supervisor would) loses nothing: the broker kept its
session's messages, and redelivered ones are stored once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench._broker import free_port
from bench._scaleout import Cluster, Load, Worker
from devices.partitions import Slot, owned_device_ids, partition_key
from ingest.store.influx import InfluxStore
from tests.conftest import Broker
from tests.influxd import Influxd

pytestmark = pytest.mark.influx


def _cluster(
    broker: Broker, influxd: Influxd, root: Path, env: dict[str, str] | None = None
) -> Cluster:
    """Two ingest workers over 240 devices, on this test's broker and a database of its own."""
    settings = influxd.settings()
    return Cluster(
        root, broker.port, settings.url, settings.database, workers=2, devices=240, env=env or {}
    )


@pytest.fixture
def cluster(private_broker: Broker, influxd: Influxd, tmp_path: Path) -> Iterator[Cluster]:
    running = _cluster(private_broker, influxd, tmp_path / "cluster")
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _wait(condition: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what() if callable(what) else what}")
        time.sleep(0.2)


def test_two_workers_store_everything_once_across_a_kill(
    cluster: Cluster, private_broker: Broker, influxd: Influxd
) -> None:
    devices = cluster.acme_devices()
    slot0 = owned_device_ids(cluster.registry, Slot(0, 2))
    assert 0 < len({d for d, _ in devices} & slot0) < len(devices), "both slots own devices"
    store = InfluxStore(influxd.settings(database=cluster.database))
    load = Load(private_broker.port, devices, t0_ms=int(time.time() * 1000) - 3_600_000)
    smoke = [d for d, p in devices if p == "acme-smoke"]
    try:
        for _ in range(5):
            load.round()
        # Slot 1 dies with messages in flight; the publisher goes on; its supervisor restarts it.
        cluster.kill(1)
        for _ in range(5):
            load.round()
        # Alarms while slot 1 is down: its devices' alarms must be raised once it is back.
        load.alarm_round(smoke)
        load.wait_acked()
        cluster.restart(1)
        for _ in range(3):
            load.round()
        load.wait_acked()
        _wait(
            lambda: store.count() >= load.readings,
            60,
            lambda: (
                f"{store.count()} of {load.readings} readings stored; "
                f"workers: {cluster.status(0)}, {cluster.status(1)}"
            ),
        )
        time.sleep(1.0)  # anything extra would land now
        assert store.count() == load.readings  # nothing lost; (device, metric, ts) once each
        per_source = cluster.alerts_per_source("smoke-alarm")
        _wait(
            lambda: len(cluster.alerts_per_source("smoke-alarm")) == len(smoke),
            30,
            "one smoke alarm per detector",
        )
        per_source = cluster.alerts_per_source("smoke-alarm")
        assert per_source == {f"device:{d}": 1 for d in smoke}
        # The broker sent each worker its own devices' messages only (it subscribes to their
        # topics): none came that it had to leave to the other, and together they saw them all.
        s0, s1 = cluster.status(0), cluster.status(1)
        assert s0["foreign_messages"] == s1["foreign_messages"] == 0
        assert s0["dead_letters"] == s1["dead_letters"] == 0
        # Slot 0 ran throughout: exactly its devices' messages, each once.
        mine = sum(1 for d, _ in devices if d in slot0)
        alarms0 = sum(1 for d in smoke if d in slot0)
        assert s0["messages"] == mine * (load.rounds - 1) + alarms0  # one round was alarms only
        assert int(str(s1["messages"])) > 0
    finally:
        load.close()
        store.close()


def test_a_district_stays_on_one_worker() -> None:
    slot0, slot1 = Slot(0, 2), Slot(1, 2)
    for street in ("st01/g00", "st07/g13"):
        area = f"demo/riverside/{street}"
        assert slot0.owns(area, "a") != slot1.owns(area, "a")
        assert slot0.owns(area, "a") == slot0.owns("demo/riverside", "b")
    assert partition_key("demo/riverside/st01", "x") == "demo/riverside"
    assert partition_key("", "x") == "device:x"
    # Every slot of 4 owns some of 64 partitions' districts, and each partition exactly one slot.
    owners = [[Slot(k, 4).owns_partition(p) for k in range(4)] for p in range(64)]
    assert all(sum(row) == 1 for row in owners)


FOR_RULE = """
- id: bin-full-for
  kind: threshold
  device_type: bin_fill
  metric: fill_level
  levels: {orange: 90}
  for_s: 20
"""


def test_a_standby_takes_over_a_dead_worker_with_its_pending_for_window(
    private_broker: Broker, influxd: Influxd, tmp_path: Path
) -> None:
    """Slot 1 dies while a `for: 20 s` condition is pending; a standby takes the slot over, resumes its
    broker session and its checkpoint, and fires on the window's original start."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(FOR_RULE)
    shared = tmp_path / "shared"  # the rule-state checkpoints, where every node can read them
    shared.mkdir()
    cluster = _cluster(
        private_broker,
        influxd,
        tmp_path / "cluster",
        {
            "HUB_RULES__SHIPPED": "false",
            "HUB_RULES__PATHS": f'["{rules_file}"]',
            "HUB_RULES__SAVE_S": "0.5",  # checkpoint often: the kill comes soon after the start
            "HUB_RULES__STATE_FILE": str(shared / "rule-state.npz"),
        },
    )
    try:
        cluster.start()
        standby = cluster.start_standby()
        slot1 = owned_device_ids(cluster.registry, Slot(1, 2))
        bins = [d for d, p in cluster.acme_devices() if p == "acme-bin" and d in slot1][:3]
        assert bins, "slot 1 owns some bins"
        load = Load(private_broker.port, [(d, "acme-bin") for d in bins], t0_ms=0)
        start = int(time.time() * 1000)

        def full(at_ms: int) -> None:
            load.send([(d, "acme-bin") for d in bins], at_ms, fill=95.0)

        full(start)
        time.sleep(2.0)  # evaluated and checkpointed (every 0.5 s)
        full(start + 2000)
        time.sleep(1.0)
        assert standby.proc is not None
        assert standby.proc.poll() is None, "the standby waits while both slots run"
        cluster.kill(1)  # no restart: the standby is the only way slot 1 comes back
        for k in range(3, 50):
            at = start + k * 1000
            while time.time() * 1000 < at:
                time.sleep(0.05)
            full(at)
            if len(cluster.alerts_per_source("bin-full-for")) == len(bins):
                break
        fired_at = int(time.time() * 1000)
        assert cluster.alerts_per_source("bin-full-for") == {f"device:{d}": 1 for d in bins}
        # Kept: fires about 20 s after the first full reading. Forgotten, the window would have
        # started again with the first reading after the takeover and fired 20 s after that.
        assert fired_at - start < 20_000 + 3_000, f"fired {fired_at - start} ms after the start"
        cluster.wait_ready(standby, timeout=5)
        assert "taking over ingest worker slot 1" in (standby.data / "hub.log").read_text()
        load.close()
    finally:
        cluster.stop()


def test_a_second_process_for_a_running_slot_is_refused(cluster: Cluster) -> None:
    """Two processes as one slot would take its broker session from each other."""
    twin = cluster.members[1]
    env_worker = Worker(1, twin.data.parent / "twin", free_port())
    with pytest.raises(RuntimeError, match="slot 1 is already running"):
        cluster.start_worker(env_worker)
