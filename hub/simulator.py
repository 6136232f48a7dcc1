"""Device simulator: publishes realistic readings for many devices over MQTT, each in its vendor's shape."""

from __future__ import annotations

import logging
import os
import secrets
import select
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import paho.mqtt.client as mqtt
from numpy.typing import NDArray
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.profiles import Device, DeviceStatus
from hub.simmodels import (
    MODELS,
    Group,
    Model,
    Moment,
    Rows,
    Scenario,
    Silencing,
    columns,
    rain_rate,
    traffic_level,
)

logger = logging.getLogger(__name__)

SITE_ZONE = ZoneInfo("Asia/Shanghai")
SLICE_S = 0.01  # messages are paced in slices this long, not one sleep per message
RAINCO_STEPS = 5  # a rainco batch carries the last five minutes
_WINDOW = 5000  # messages published but not yet acknowledged before the simulator waits


@dataclass(frozen=True, slots=True)
class SimStats:
    """What a run published: messages, the readings in them, and how long it took."""

    messages: int
    readings: int
    elapsed_s: float = 0.0


Publish = Callable[[str, bytes], None]


class Simulator:
    """Generates the payloads of a set of devices; `run_simulation` puts them on the wire.

    Every device that talks for itself (all but traffic detectors, which report through their
    gateway named in tag ``gateway``) is a *sender*; senders take turns in a fixed shuffled order,
    so at ``rate`` messages per second each reports every ``senders / rate`` seconds.
    """

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        seed: int = 7,
        scenarios: Sequence[Scenario] = (),
        clock: Callable[[], float] = time.time,
        zone: ZoneInfo = SITE_ZONE,
    ) -> None:
        """Prepare the devices' groups and parameters.

        Args:
            devices: what to simulate; inactive devices and profiles without a model are skipped.
            seed: seed of every draw (parameters, noise), so equal seeds give equal payloads.
            scenarios: adjust the values before they are encoded.
            clock: epoch seconds now (tests pass a fixed one).
            zone: the site's zone: daily cycles follow its local time, trafix writes it.
        """
        self.seed = seed
        self.zone = zone
        self.rng = np.random.default_rng(seed)
        self.scenarios = list(scenarios)
        self.clock = clock
        self.cells: dict[str, int] = {}
        self.groups: dict[str, Group] = {}
        self._build(devices)
        order: list[tuple[int, int]] = []
        names = list(self.groups)
        for gi, name in enumerate(names):
            if MODELS[name].shape != "trafix-detector":
                order += [(gi, row) for row in range(len(self.groups[name]))]
        perm = self.rng.permutation(len(order))
        pairs = np.array(order, dtype=np.intp).reshape(-1, 2)[perm]
        self._names = names
        self._sender_group: NDArray[np.intp] = pairs[:, 0].copy()
        self._sender_row: NDArray[np.intp] = pairs[:, 1].copy()
        self._cursor = 0
        self.messages = 0
        self.readings = 0

    @property
    def senders(self) -> int:
        """How many devices publish for themselves."""
        return len(self._sender_row)

    def _build(self, devices: Sequence[Device]) -> None:
        by_profile: dict[str, list[Device]] = defaultdict(list)
        skipped: dict[str, int] = defaultdict(int)
        for d in devices:
            if d.status is not DeviceStatus.ACTIVE or d.profile not in MODELS:
                skipped[d.profile] += 1
                continue
            by_profile[d.profile].append(d)
        if skipped:
            logger.info(
                "simulator skips devices it has no model for, or not active: %s", dict(skipped)
            )
        for profile in sorted(by_profile):
            members = by_profile[profile]
            cells = [
                self.cells.setdefault("/".join(d.area.split("/")[:2]), len(self.cells))
                for d in members
            ]
            self.groups[profile] = Group(
                profile=profile,
                ids=[d.id for d in members],
                topics=[f"sensors/{d.vendor}/{d.id}/up" for d in members],
                areas=np.array([d.area for d in members], dtype=np.str_),
                cell=np.array(cells, dtype=np.intp),
                params=MODELS[profile].params(self.rng, len(members)),
            )
        gateways = self.groups.get("trafix-gw")
        detectors = self.groups.get("trafix-flow")
        if detectors is not None:
            rows_of: dict[str, list[int]] = defaultdict(list)
            for row, d in enumerate(by_profile["trafix-flow"]):
                rows_of[d.tags.get("gateway", "")].append(row)
            orphans = len(detectors)
            if gateways is not None:
                gateways.members = [
                    np.array(rows_of.get(g, []), dtype=np.intp) for g in gateways.ids
                ]
                orphans -= sum(len(m) for m in gateways.members)
            if orphans:
                logger.info(
                    "simulator: %s traffic detectors have no gateway and stay silent", orphans
                )
        elif gateways is not None:
            gateways.members = [np.zeros(0, dtype=np.intp) for _ in gateways.ids]

    # -- values and payloads --------------------------------------------------------------------

    def moment(self, rate: float) -> Moment:
        """The shared state of "now" for one time slice at ``rate`` messages per second."""
        now = self.clock()
        local = datetime.fromtimestamp(now, self.zone)
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        cells = np.arange(max(len(self.cells), 1), dtype=np.intp)
        return Moment(
            now=now,
            hour=hour,
            local_time=local.strftime("%Y-%m-%d %H:%M:%S"),
            traffic=traffic_level(hour),
            period_s=max(self.senders, 1) / rate if rate > 0 else 60.0,
            rain=rain_rate(self.seed, cells, np.full(len(cells), now)),
        )

    def values(self, group: Group, rows: Rows, moment: Moment) -> dict[str, NDArray[np.float64]]:
        """One value per metric and row, after every scenario had its say."""
        values = MODELS[group.profile].values(self.rng, group, rows, moment)
        for scenario in self.scenarios:
            scenario.adjust(group, rows, moment, values)
        return values

    def step(self, count: int, moment: Moment, publish: Publish) -> None:
        """Publish the next ``count`` senders' messages, group by group."""
        n = self.senders
        if n == 0 or count <= 0:
            return
        pos = (self._cursor + np.arange(count)) % n
        self._cursor = int((self._cursor + count) % n)
        group_of = self._sender_group[pos]
        row_of = self._sender_row[pos]
        for gi in np.unique(group_of).tolist():
            rows = row_of[group_of == gi]
            group = self.groups[self._names[gi]]
            for scenario in self.scenarios:
                if isinstance(scenario, Silencing):
                    rows = rows[~scenario.silent(group, rows, moment)]
            if len(rows) == 0:
                continue
            model = MODELS[group.profile]
            if model.shape == "trafix-gw":
                self._gateways(group, rows, moment, publish)
            elif model.shape == "rainco":
                self._rainco(group, rows, moment, publish)
            else:
                self._simple(group, model, rows, moment, publish)

    def _simple(self, group: Group, model: Model, rows: Rows, m: Moment, publish: Publish) -> None:
        template = model.template()
        cols = columns(model, self.values(group, rows, m))
        topics = group.topics
        if model.shape == "senml":  # [{"bn": "<id>:", "bt": <epoch s>, ...}, ...]
            ids, bt = group.ids, m.now
            for row, *vals in zip(rows.tolist(), *cols, strict=True):
                publish(topics[row], template % (ids[row].encode(), bt, *vals))
        else:  # {"ts": <epoch ms>, ...}
            ts = int(m.now * 1000)
            for row, *vals in zip(rows.tolist(), *cols, strict=True):
                publish(topics[row], template % (ts, *vals))
        self.messages += len(rows)
        self.readings += len(rows) * model.readings()

    def _gateways(self, group: Group, rows: Rows, m: Moment, publish: Publish) -> None:
        detectors = self.groups.get("trafix-flow")
        members = [group.members[r] for r in rows.tolist()]
        det_rows = np.concatenate(members) if members else np.zeros(0, dtype=np.intp)
        entries: list[bytes] = []
        if detectors is not None and len(det_rows):
            model = MODELS["trafix-flow"]
            flow, speed, occ = columns(model, self.values(detectors, det_rows, m))
            t = m.local_time.encode()
            ids = detectors.ids
            entries = [
                b'{"id":"%s","t":"%s","flow":%d,"speed":%.1f,"occ":%.1f}'
                % (ids[r].encode(), t, f, s, o)
                for r, f, s, o in zip(det_rows.tolist(), flow, speed, occ, strict=True)
            ]
        start = 0
        for row, member in zip(rows.tolist(), members, strict=True):
            end = start + len(member)
            data = b",".join(entries[start:end])
            publish(group.topics[row], b'{"gw":"%s","data":[%s]}' % (group.ids[row].encode(), data))
            start = end
        self.messages += len(rows)
        self.readings += 3 * len(det_rows)

    def _rainco(self, group: Group, rows: Rows, m: Moment, publish: Publish) -> None:
        minute = np.floor(m.now / 60.0) * 60.0
        ts = minute - 60.0 * np.arange(RAINCO_STEPS - 1, -1, -1)  # oldest first
        k = len(rows)
        cells = np.repeat(group.cell[rows], RAINCO_STEPS)
        rate = rain_rate(self.seed, cells, np.tile(ts, k)).reshape(k, RAINCO_STEPS)
        per_minute = rate * group.params["bias"][rows, None] / 60.0
        values = {"rainfall": np.clip(per_minute, 0.0, None)}
        for scenario in self.scenarios:
            scenario.adjust(group, rows, m, values)
        amounts = np.round(values["rainfall"], 1).tolist()
        stamps = ts.astype(np.int64).tolist()
        item = b'{"ts":%d,"r":%.1f}'
        for row, amount in zip(rows.tolist(), amounts, strict=True):
            readings = b",".join(item % pair for pair in zip(stamps, amount, strict=True))
            device = group.ids[row].encode()
            publish(group.topics[row], b'{"dev":"%s","readings":[%s]}' % (device, readings))
        self.messages += k
        self.readings += k * RAINCO_STEPS


# -- on the wire --------------------------------------------------------------------------------


class _Link:
    """A paho client driven from the publishing thread, with a bound on unacknowledged messages.

    paho's own network thread (``loop_start``) costs most of the throughput here: every publish
    then takes its locks and wakes the thread through a socket pair, and the two threads fight
    for the GIL. Driving ``loop_read``/``loop_write``/``loop_misc`` ourselves between time slices
    is paho's documented external-loop interface and more than doubles the message rate.
    """

    def __init__(
        self, host: str, port: int, qos: int, username: str | None, password: str | None
    ) -> None:
        self.host, self.port, self.qos = host, port, qos
        self.connected = False
        self.reason: ReasonCode | None = None
        self.published = 0
        self.acked = 0
        self._closing = False
        self._next_retry = 0.0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hub-sim-{os.getpid()}-{secrets.token_hex(3)}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.max_inflight_messages_set(0)  # the window in `run_simulation` bounds it
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            msg = f"simulator could not connect to {host}:{port}: {exc}"
            raise ConnectionError(msg) from exc
        deadline = time.monotonic() + 10.0
        while not self.connected and self.reason is None and time.monotonic() < deadline:
            self.pump(0.05)
        if not self.connected:
            self.client.disconnect()
            msg = f"simulator could not connect to {host}:{port}: {self.reason or 'timed out'}"
            raise ConnectionError(msg)

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.reason = reason
        self.connected = not reason.is_failure
        if reason.is_failure:
            logger.warning("simulator connect refused: %s", reason)
        else:
            logger.info("simulator connected to %s:%s", self.host, self.port)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if self.connected and not self._closing:
            logger.warning("simulator lost the broker: %s", reason)
        self.connected = False

    def _on_publish(
        self, _c: mqtt.Client, _u: object, _mid: int, _r: ReasonCode, _p: object
    ) -> None:
        self.acked += 1

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one message; paho writes it at once when the socket takes it."""
        self.client.publish(topic, payload, self.qos)
        self.published += 1

    @property
    def outstanding(self) -> int:
        """Messages published but not yet acknowledged (QoS 1/2) or written (QoS 0)."""
        return self.published - self.acked

    def pump(self, timeout: float) -> None:
        """Do network work (acks in, queued packets out, keepalive) for up to ``timeout`` s."""
        sock = self.client.socket()
        if sock is None:
            self._reconnect(timeout)
            return
        wants = [sock] if self.client.want_write() else []
        readable, writable, _ = select.select([sock], wants, [], max(timeout, 0.0))
        if readable:
            self.client.loop_read()
        if writable and self.client.socket() is not None:
            self.client.loop_write()
        self.client.loop_misc()

    def _reconnect(self, timeout: float) -> None:
        time.sleep(max(timeout, 0.0))
        if self._closing or time.monotonic() < self._next_retry:
            return
        self._next_retry = time.monotonic() + 1.0
        try:
            self.client.reconnect()
        except OSError as exc:
            logger.debug("simulator reconnect failed: %s", exc)

    def drain(self, timeout: float) -> None:
        """Wait until every message is acknowledged, or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while self.outstanding > 0 and self.connected and time.monotonic() < deadline:
            self.pump(0.01)

    def close(self) -> None:
        """Disconnect cleanly."""
        self._closing = True
        if self.client.socket() is not None:
            self.client.disconnect()
            self.pump(0.0)


def run_simulation(
    host: str,
    port: int,
    devices: Sequence[Device],
    rate: float,
    duration: float | None,
    *,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    stop: threading.Event | None = None,
    seed: int = 7,
    scenarios: Sequence[Scenario] = (),
) -> SimStats:
    """Publish simulated readings of ``devices`` to an MQTT broker until ``duration`` or ``stop``.

    Args:
        host: broker host.
        port: broker port.
        devices: the devices to simulate (unknown profiles and inactive devices are skipped).
        rate: messages per second over all devices (a gateway's batch is one message).
        duration: seconds to run; None runs until ``stop`` is set.
        qos: MQTT QoS of every message.
        username: broker user, if the broker wants one.
        password: broker password.
        stop: set it to end the run early.
        seed: seed of every random draw (device parameters, noise, showers).
        scenarios: adjust values before they are sent (e.g. a storm over one district).

    Returns:
        What was published: messages and the readings in them.

    Raises:
        ConnectionError: the broker cannot be reached or refuses the connection.
    """
    if rate <= 0:
        msg = f"rate must be positive, not {rate}"
        raise ValueError(msg)
    sim = Simulator(devices, seed=seed, scenarios=scenarios)
    link = _Link(host, port, qos, username, password)
    logger.info(
        "simulating %s devices (%s senders) at %s msg/s to %s:%s",
        len(devices),
        sim.senders,
        rate,
        host,
        port,
    )
    burst = max(1, min(int(rate * SLICE_S * 4), _WINDOW // 2))
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    next_slice = started
    try:
        while not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            due = min(int(rate * (now - started)) - sim.messages, burst, _WINDOW - link.outstanding)
            if due > 0 and link.connected and sim.senders:
                sim.step(due, sim.moment(rate), link.publish)
            next_slice += SLICE_S
            pause = next_slice - time.monotonic()
            if pause < 0:
                next_slice = time.monotonic()  # behind: go on at once, do not pile up slices
            link.pump(max(pause, 0.0))
        link.drain(timeout=10.0)
        if link.outstanding:
            logger.warning("simulator: %s messages were not acknowledged", link.outstanding)
    finally:
        link.close()
    elapsed = time.monotonic() - started
    logger.info(
        "simulator sent %s messages, %s readings in %.1f s", sim.messages, sim.readings, elapsed
    )
    return SimStats(messages=sim.messages, readings=sim.readings, elapsed_s=elapsed)
