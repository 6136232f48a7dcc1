"""The simulator: payload shapes, daily cycles, scenarios, and real runs against Mosquitto and the codecs."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.loader import Definitions, import_definitions, load_shipped
from devices.profiles import Device
from devices.registry import Registry
from hub.democity import demo_devices
from hub.simmodels import Group, Moment, Rows, Values, rain_rate, traffic_level
from hub.simulator import SimStats, Simulator, run_simulation
from ingest.batch import ReadingBatch
from ingest.codecs import DecodeError, RawMessage, build
from ingest.columns import ColumnBuilder, Rejection
from ingest.normalise import RangeTable, flag_out_of_range
from tests.conftest import Broker, free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")
N = 1500


def _at(hour: int, minute: int = 0, day: int = 22) -> Callable[[], float]:
    stamp = datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI).timestamp()
    return lambda: stamp


@pytest.fixture(scope="module")
def city() -> list[Device]:
    return demo_devices(N)


def _cycle(sim: Simulator, rate: float = 100.0) -> list[tuple[str, bytes]]:
    """One message from every sender."""
    out: list[tuple[str, bytes]] = []
    sim.step(sim.senders, sim.moment(rate), lambda topic, payload: out.append((topic, payload)))
    return out


def _by_prefix(messages: Sequence[tuple[str, bytes]]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = collections.defaultdict(list)
    for topic, payload in messages:
        found[topic.split("/")[2].split("-")[0]].append(json.loads(payload))
    return found


# -- payloads without a broker ------------------------------------------------------------------


def test_every_sender_publishes_once_per_cycle_on_its_topic(city: list[Device]) -> None:
    sim = Simulator(city, clock=_at(8))
    messages = _cycle(sim)
    senders = {f"sensors/{d.vendor}/{d.id}/up" for d in city if d.profile != "trafix-flow"}
    assert sim.senders == len(senders)
    assert [t for t, _ in messages if t not in senders] == []
    assert len({t for t, _ in messages}) == len(messages) == len(senders)


def test_payload_shapes(city: list[Device]) -> None:
    clock = _at(8)
    now = clock()
    found = _by_prefix(_cycle(Simulator(city, clock=clock)))
    wl = found["wl"][0]
    assert wl[0]["bn"].startswith("wl-")
    assert wl[0]["bn"].endswith(":")
    assert wl[0]["bt"] == pytest.approx(now)
    assert [(r["n"], r["u"]) for r in wl] == [
        ("water_level", "cm"),
        ("battery", "%"),
        ("signal", "dBm"),
    ]
    assert [r["n"] for r in found["rg"][0]] == ["rainfall", "rain_rate", "battery"]
    assert found["pp"][0][0]["u"] == "kPa"
    wq = {r["n"]: r["u"] for r in found["wq"][0]}
    assert wq == {
        "ph": "pH",
        "turbidity": "NTU",
        "dissolved_oxygen": "mg/L",
        "conductivity": "uS/cm",
        "water_temperature": "Cel",
    }
    keys = {
        "mc": {"ts", "tilt", "open", "water", "bat"},
        "sm": {"ts", "smoke", "alarm", "bat"},
        "gs": {"ts", "lel", "bat"},
        "bn": {"ts", "fill", "temp", "bat"},
        "nz": {"ts", "laeq", "lamax"},
        "sl": {"ts", "on", "power"},
        "st": {"ts", "dx", "dy", "tilt"},
    }
    for prefix, expected in keys.items():
        for payload in found[prefix]:
            assert set(payload) == expected
            assert payload["ts"] == int(now * 1000)
    gw = found["tgw"][0]
    assert gw["gw"].startswith("tgw-")
    assert len(gw["data"]) > 0
    assert {tuple(r) for r in gw["data"]} == {("id", "t", "flow", "speed", "occ")}
    assert {r["t"] for r in gw["data"]} == {"2026-11-22 08:00:00"}
    rr = found["rr"][0]
    assert rr["dev"].startswith("rr-")
    stamps = [r["ts"] for r in rr["readings"]]
    assert len(stamps) == 5
    assert np.all(np.diff(stamps) == 60)
    assert stamps[-1] <= now < stamps[-1] + 60


def test_gateways_carry_each_detector_once(city: list[Device]) -> None:
    found = _by_prefix(_cycle(Simulator(city, clock=_at(8))))
    reported = [r["id"] for gw in found["tgw"] for r in gw["data"]]
    detectors = {d.id: d.tags["gateway"] for d in city if d.profile == "trafix-flow"}
    assert sorted(reported) == sorted(detectors)
    for gw in found["tgw"]:
        assert {detectors[r["id"]] for r in gw["data"]} == {gw["gw"]}


def test_same_seed_same_payloads(city: list[Device]) -> None:
    assert _cycle(Simulator(city, clock=_at(9))) == _cycle(Simulator(city, clock=_at(9)))
    assert _cycle(Simulator(city, clock=_at(9))) != _cycle(Simulator(city, seed=8, clock=_at(9)))


def _mean(city: list[Device], hour: int, prefix: str, key: str) -> float:
    found = _by_prefix(_cycle(Simulator(city, clock=_at(hour))))
    if prefix == "tgw":
        return float(np.mean([r[key] for gw in found["tgw"] for r in gw["data"]]))
    return float(np.mean([p[key] for p in found[prefix]]))


def test_traffic_and_noise_peak_in_rush_hours(city: list[Device]) -> None:
    assert traffic_level(8.0) > 0.9
    assert traffic_level(18.0) > 0.9
    assert traffic_level(3.0) < 0.15
    night = _mean(city, 3, "tgw", "flow")
    assert _mean(city, 8, "tgw", "flow") > 4 * night
    assert _mean(city, 18, "tgw", "flow") > 4 * night
    assert _mean(city, 8, "tgw", "speed") < _mean(city, 3, "tgw", "speed")
    assert _mean(city, 8, "nz", "laeq") > _mean(city, 3, "nz", "laeq") + 8


def test_streetlights_burn_at_night(city: list[Device]) -> None:
    assert _mean(city, 22, "sl", "on") == 1.0
    assert _mean(city, 12, "sl", "on") == 0.0
    assert _mean(city, 22, "sl", "power") > 50


def test_rain_is_mostly_dry_with_showers() -> None:
    ts = np.arange(0, 30 * 86_400, 600, dtype=np.float64)  # a month in 10-minute steps
    rates = rain_rate(7, np.zeros(len(ts), dtype=np.intp), ts)
    dry = float(np.mean(rates == 0))
    assert 0.8 < dry < 0.99
    assert rates.max() > 5.0
    assert np.all(rates >= 0)


def test_bins_fill_over_the_day_and_manholes_stay_shut(city: list[Device]) -> None:
    morning = _by_prefix(_cycle(Simulator(city, clock=_at(6))))["bn"]
    evening = _by_prefix(_cycle(Simulator(city, clock=_at(18))))["bn"]
    rises = [b["fill"] - a["fill"] for a, b in zip(morning, evening, strict=True)]
    assert np.median(rises) > 5
    covers = [p["open"] for p in _by_prefix(_cycle(Simulator(city, clock=_at(6))))["mc"]]
    assert sum(covers) <= 2


class Flood:
    """A scenario: the river in Riverside rises two metres."""

    def adjust(self, group: Group, rows: Rows, moment: Moment, values: Values) -> None:
        if "water_level" in values:
            mask = np.char.startswith(group.areas[rows], "demo/riverside/")
            values["water_level"][mask] += 200.0


def test_scenario_overrides_values_of_an_area(city: list[Device]) -> None:
    area = {d.id: d.area for d in city}
    calm = _by_prefix(_cycle(Simulator(city, clock=_at(10))))["wl"]
    flood = _by_prefix(_cycle(Simulator(city, clock=_at(10), scenarios=[Flood()])))["wl"]
    for before, after in zip(calm, flood, strict=True):
        device = before[0]["bn"].rstrip(":")
        rise = after[0]["v"] - before[0]["v"]
        expected = 200.0 if area[device].startswith("demo/riverside/") else 0.0
        assert rise == pytest.approx(expected, abs=0.11)


# -- decoding with the real codecs --------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, city: list[Device]) -> Registry:
    path = tmp_path_factory.mktemp("registry") / "registry.db"
    reg = Registry(f"sqlite:///{path}")
    load_shipped(reg)
    import_definitions(reg, Definitions(devices=tuple(city)))
    return reg


def _decode(
    registry: Registry, messages: Sequence[tuple[str, bytes]], received_s: float | None = None
) -> tuple[ReadingBatch, list[Rejection]]:
    codecs = {p.id: build(p.codec) for p in registry.profiles()}
    builder = ColumnBuilder(registry.interner, registry.profile)
    received = int((received_s or time.time()) * 1000) + 1000
    for topic, payload in messages:
        _, vendor, device, _ = topic.split("/")
        raw = RawMessage(
            topic=topic, payload=payload, vendor=vendor, device_id=device, received_ms=received
        )
        builder.begin(raw)
        try:
            codecs[registry.interner.devices[device].profile].decode(raw, builder)
        except DecodeError as exc:
            builder.rollback(exc)
        else:
            builder.commit()
    return builder.take()


def test_every_payload_decodes_in_range(registry: Registry, city: list[Device]) -> None:
    for hour in (3, 8, 13, 18, 22):
        clock = _at(hour)
        sim = Simulator(city, clock=clock)
        batch, rejections = _decode(registry, _cycle(sim), received_s=clock())
        assert [(r.raw.topic, r.error) for r in rejections] == []
        assert len(batch) == sim.readings
        # Realistic values: nothing falls outside the profiles' valid ranges.
        flagged = flag_out_of_range(batch, RangeTable.from_registry(registry))
        assert np.count_nonzero(flagged.quality) == 0


# -- on a real broker ---------------------------------------------------------------------------


class Listener:
    """A paho subscriber to ``sensors/#`` that keeps what it receives."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("sensors/#", qos=1)
        assert subscribed.wait(5)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(broker: Broker) -> Any:
    broker.start()
    sub = Listener(broker)
    yield sub
    sub.close()


@pytest.mark.broker
def test_run_publishes_decodable_readings(
    broker: Broker, listener: Listener, registry: Registry, city: list[Device]
) -> None:
    started = time.monotonic()
    stats = run_simulation(broker.host, broker.port, city, 400.0, 2.0, qos=1)
    elapsed = time.monotonic() - started
    assert isinstance(stats, SimStats)
    assert 1.9 < elapsed < 6
    assert 700 <= stats.messages <= 820
    listener.wait_for(stats.messages)
    ours = {d.id: d for d in city}
    mine = [(t, p) for t, p in listener.messages if t.split("/")[2] in ours]
    assert len(mine) == stats.messages
    for topic, _ in mine:
        prefix, vendor, device, suffix = topic.split("/")
        assert (prefix, suffix) == ("sensors", "up")
        assert ours[device].vendor == vendor
    batch, rejections = _decode(registry, mine)
    assert [(r.raw.topic, r.error) for r in rejections] == []
    assert len(batch) == stats.readings


@pytest.mark.broker
def test_stop_event_ends_an_endless_run(broker: Broker, city: list[Device]) -> None:
    broker.start()
    stop = threading.Event()
    result: list[SimStats] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_simulation(broker.host, broker.port, city[:200], 200.0, None, qos=0, stop=stop)
        )
    )
    runner.start()
    time.sleep(0.7)
    stop.set()
    runner.join(5)
    assert not runner.is_alive()
    assert result[0].messages > 50


@pytest.mark.broker
def test_run_survives_a_broker_crash(tmp_path: Path, city: list[Device]) -> None:
    own = Broker(tmp_path)  # a private broker: this test kills it
    own.start()
    result: list[SimStats] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_simulation(own.host, own.port, city[:300], 200.0, 4.0, qos=1)
        )
    )
    try:
        runner.start()
        time.sleep(1.0)
        own.kill()
        time.sleep(1.0)
        own.start()
        runner.join(20)
    finally:
        own.stop()
    assert not runner.is_alive()
    # It reconnected and caught up with the rate after the outage.
    assert result[0].messages > 600


def test_unreachable_broker_raises_connection_error(city: list[Device]) -> None:
    with pytest.raises(ConnectionError, match="could not connect"):
        run_simulation("127.0.0.1", free_port(), city[:10], 10.0, 0.5)


@pytest.mark.broker
@pytest.mark.slow
def test_throughput(tmp_path: Path) -> None:
    # A private broker: a flood on the shared one could end up queued for other tests' sessions.
    own = Broker(tmp_path)
    own.start()
    try:
        devices = demo_devices(20_000)
        stats = run_simulation(own.host, own.port, devices, 1e6, 3.0, qos=1)
    finally:
        own.stop()
    rate = stats.messages / stats.elapsed_s
    print(
        f"simulator: {rate:,.0f} msg/s, {stats.readings / stats.elapsed_s:,.0f} readings/s (QoS 1)"
    )
    # The design target is 10,000 msg/s on an idle machine; a loaded CI box gets slack.
    assert rate > 3000
