"""Process, broker and store faults against a real hub process: the scenarios behind `bench/faults.py`.

Every scenario runs real processes on loopback: Mosquitto with the hub's own no-loss configuration
(persistence on, so a broker restart keeps the hub's session), the hub as ``python -m hub run`` (as
`bench/alerts.py` starts it), a QoS 1 publisher that counts the broker's PUBACKs, and, for the
InfluxDB scenario, Debian's ``influxd``. A reading is *accepted* once the broker acknowledged its
message; after the fault and a drain, the hub is stopped and its store is counted directly:

- **lost** = accepted readings whose (device, metric, ts) key is not in the store;
- **dup** = rows in the store beyond one per key (the DuckDB store has no key index: a redelivery
  written twice would show here; InfluxDB overwrites a point with the same key, so it cannot).

Scenarios (each returns name=value figures):

- `kill_restart`: the hub SIGKILLed mid-stream (100,000 one-reading messages), restarted;
- `broker_outage`: Mosquitto stopped (SIGTERM: it saves its persistence) for ``outage_s`` with
  readings in flight to the hub, then started again on the same port; the resume time is from the
  broker listening again to the hub storing again;
- `store_outage_influx`: InfluxDB stopped for ``outage_s`` under a steady stream; readings go to
  the hub's spool and are written after it is back;
- `store_outage_file`: the embedded store's own disk (a tmpfs) filled to the last byte for
  ``outage_s``, the spool on another disk: the same, for DuckDB;
- `kill_while_spooling`: the hub SIGKILLed while the store is down and the spool takes readings
  (already acknowledged): the next process must replay them;
- `disk_full`: one tmpfs holds the store *and* the spool and is filled: the hub must hold its
  acknowledgements (back-pressure), raise the ``store`` alert (red), lose nothing, and leave a store
  that opens and holds every reading once space returns.

The tmpfs scenarios need root (``mount``); `bench/faults.py` and `make faults` run as root here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import free_port
from bench._rawpub import RawPublisher
from hub.embedded_broker import CONFIG_TEMPLATE, find_mosquitto, port_open, run_as

VENDOR = "fault"
PROFILE = "fault-senml"
DEVICES = 1000
# Readings are an hour old and one second apart per device: unique keys, never "in the future".
T0_S = int(time.time()) - 3600


# -- the broker -------------------------------------------------------------------------------


class FaultBroker:
    """Mosquitto with the hub's configuration (persistence on), on one port across restarts."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "broker"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            CONFIG_TEMPLATE.format(host="127.0.0.1", port=self.port, data=self.dir, user=run_as())
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        exe = find_mosquitto()
        if exe is None:
            msg = "mosquitto is not installed: run scripts/ensure-system-packages"
            raise RuntimeError(msg)
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                msg = "mosquitto did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence database (queued messages, sessions) first."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(15)


# -- the hub ----------------------------------------------------------------------------------


def make_registry(data: Path, devices: int = DEVICES) -> list[str]:
    """The hub's registry (``data/hub.db``): one vendor, a SenML water-level profile, ``devices``."""
    from devices.profiles import Device, DeviceProfile, MetricSpec, Vendor
    from devices.registry import Registry

    reg = Registry(f"sqlite:///{data / 'hub.db'}")
    reg.put_vendors([Vendor(id=VENDOR, name="Fault suite")])
    reg.put_profiles(
        [
            DeviceProfile(
                id=PROFILE,
                name="fault-suite level",
                type="water_level",
                domain="water",
                metrics=(MetricSpec(name="water_level", unit="m", min=-5, max=60),),
                report_interval_s=60,
                codec={"codec": "senml"},
            )
        ]
    )
    ids = [f"f{i:05d}" for i in range(devices)]
    reg.put_devices([Device(id=d, vendor=VENDOR, profile=PROFILE) for d in ids])
    reg.engine.dispose()
    return ids


class HubProcess:
    """``python -m hub run`` on its own data directory, against the given broker."""

    def __init__(self, data: Path, broker_port: int, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = {
            **os.environ,
            "HUB_DATA_DIR": str(data),
            "HUB_MQTT__EMBEDDED": "false",
            "HUB_MQTT__HOST": "127.0.0.1",
            "HUB_MQTT__PORT": str(broker_port),
            "HUB_HTTP__PORT": str(self.http_port),
            "HUB_RULES__SHIPPED": "false",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    def start(self, timeout: float = 90.0) -> None:
        with (self.data / "hub.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"hub exited: {self.log_tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{self.url}/healthz", timeout=1).json().get("broker_connected"):
                    return
            time.sleep(0.1)
        msg = f"hub not ready in {timeout} s: {self.log_tail()}"
        raise RuntimeError(msg)

    def log_tail(self, chars: int = 3000) -> str:
        path = self.data / "hub.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def connected(self) -> bool:
        try:
            return bool(httpx.get(f"{self.url}/healthz", timeout=1).json().get("broker_connected"))
        except (httpx.HTTPError, ValueError):
            return False

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            password = (self.data / "initial-admin-password").read_text().strip()
            r = httpx.post(
                f"{self.url}/api/v1/auth/login",
                json={"username": "admin", "password": password},
                timeout=10,
            )
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/status", headers=self._auth(), timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def store_alerts(self) -> list[dict[str, Any]]:
        """The ``store`` health alerts (hub/store_alarm.py), newest first."""
        r = httpx.get(
            f"{self.url}/api/v1/alerts",
            params={"rule": "hub.store"},
            headers=self._auth(),
            timeout=10,
        )
        r.raise_for_status()
        body = r.json()
        return list(body["items"] if isinstance(body, dict) else body)

    def kill(self) -> None:
        """SIGKILL: a crash; nothing is flushed, closed or acknowledged."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait (the hub flushes, acknowledges and closes its store)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def wait_drained(
        self, target: int | None = None, quiet_s: float = 3.0, timeout: float = 180.0
    ) -> dict[str, Any]:
        """Poll until ``target`` readings are stored by this process, or nothing moved for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        last: tuple[int, int] | None = None
        since = time.monotonic()
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            moved = (int(status["messages"]), int(status["readings_stored"]))
            idle = (
                status["in_flight"] == 0
                and status.get("spool_readings", 0) == 0
                and not status.get("store_blocked", False)
            )
            if target is not None and moved[1] >= target and idle:
                return status
            if moved != last:
                last, since = moved, time.monotonic()
            elif idle and time.monotonic() - since >= quiet_s:
                return status
            time.sleep(0.25)
        return status


# -- load ------------------------------------------------------------------------------------


def packet_for(pub: RawPublisher, i: int, devices: int = DEVICES) -> bytes:
    """Reading ``i``: device ``i % devices``, at T0 + ``i // devices`` s, value ``i`` (its own name).

    The value names the reading, so the store can be checked reading by reading (values past the
    profile's range are stored flagged, never dropped).
    """
    device = f"f{i % devices:05d}"
    body = f'[{{"bn":"{device}:","bt":{T0_S + i // devices},"n":"water_level","u":"m","v":{i}}}]'
    return pub.packet(f"sensors/{VENDOR}/{device}/up".encode(), body.encode())


@dataclass
class Stream:
    """Publishes readings ``[first, first + count)`` at QoS 1 from a thread, at ``rate`` msgs/s (0: flat out)."""

    port: int
    first: int
    count: int
    rate: float = 0.0
    client_id: str = "fault-publisher"
    sent: int = 0
    acked: int = 0
    error: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name=self.client_id, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            pub = RawPublisher("127.0.0.1", self.port, self.client_id)
        except OSError as exc:
            self.error = str(exc)
            return
        t0 = time.monotonic()
        step = 500
        try:
            while self.sent < self.count:
                if self.rate > 0:
                    due = int((time.monotonic() - t0) * self.rate) - self.sent
                    if due <= 0:
                        time.sleep(0.005)
                        continue
                    n = min(due, step, self.count - self.sent)
                else:
                    n = min(step, self.count - self.sent)
                    # Keep at most ~20,000 unacknowledged: the broker's PUBACKs pace us.
                    while self.sent - pub.acked > 20_000:
                        time.sleep(0.002)
                first = self.first + self.sent
                pub.send([packet_for(pub, i) for i in range(first, first + n)])
                self.sent += n
            deadline = time.monotonic() + 30
            while pub.acked < self.sent and time.monotonic() < deadline:
                time.sleep(0.01)
        except OSError as exc:
            self.error = str(exc)
        finally:
            self.acked = pub.acked
            pub.close()

    def join(self, timeout: float = 300.0) -> Stream:
        if self._thread is not None:
            self._thread.join(timeout)
        return self


# -- counting the store -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What a store holds after a scenario: rows, distinct keys, and the readings (values) in it."""

    rows: int
    distinct: int
    values: NDArray[np.float64]

    def lost(self, accepted: list[Stream]) -> int:
        """Readings the broker acknowledged to a stream that are not in the store."""
        wanted = np.concatenate(
            [np.arange(s.first, s.first + s.acked, dtype=np.float64) for s in accepted]
        )
        return int(np.count_nonzero(~np.isin(wanted, self.values)))

    @property
    def dup(self) -> int:
        """Rows beyond one per (device, metric, ts) key."""
        return self.rows - self.distinct


def duckdb_stored(path: Path) -> Stored:
    """What a DuckDB store file holds (the hub has stopped, or crashed out of it)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), count(DISTINCT (device, metric, ts)) FROM readings"
        ).fetchone()
        values = con.execute("SELECT DISTINCT value FROM readings").fetchnumpy()["value"]
    finally:
        con.close()
    rows, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
    return Stored(rows, distinct, np.asarray(values, dtype=np.float64))


def influx_stored(url: str, database: str) -> Stored:
    """What an InfluxDB database holds; a point written again overwrites its key, so rows = keys."""
    r = httpx.get(
        f"{url}/query",
        params={"db": database, "q": 'SELECT "value" FROM "readings"', "epoch": "ms"},
        timeout=60,
    )
    r.raise_for_status()
    series = r.json()["results"][0].get("series", [])
    values = [v for s in series for _, v in s["values"]]
    return Stored(len(values), len(values), np.asarray(values, dtype=np.float64))


# -- mounts (tmpfs disks that can be filled) --------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` at ``path`` (root only), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with a ballast file; returns the file (delete it to free)."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096, 1):  # down to the last byte
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(fd, chunk) > 0:
                    pass
    finally:
        os.close(fd)
    return ballast


# -- scenarios --------------------------------------------------------------------------------


def _wait_stored(hub: HubProcess, at_least: float, timeout: float = 120.0) -> int:
    """Wait until the hub (this process of it) has stored ``at_least`` readings; returns how many."""
    deadline = time.monotonic() + timeout
    while True:
        stored = int(hub.status()["readings_stored"])
        if stored >= at_least:
            return stored
        if time.monotonic() > deadline:
            msg = f"hub stored {stored} < {at_least} in {timeout} s: {hub.log_tail()}"
            raise RuntimeError(msg)
        time.sleep(0.05)


def kill_restart(workdir: Path, readings: int = 100_000, kill_at: float = 0.3) -> dict[str, float]:
    """SIGKILL the hub once ``kill_at`` of the stream is stored; restart; count lost and doubled."""
    data = workdir / "kill"
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    hub = HubProcess(data, broker.port)
    try:
        hub.start()
        stream = Stream(broker.port, 0, readings).start()
        _wait_stored(hub, readings * kill_at)
        hub.kill()
        killed = time.monotonic()
        at_kill = duckdb_stored(data / "readings.duckdb")
        stream.join()
        hub.start()
        restart_s = time.monotonic() - killed
        hub.wait_drained(target=readings - at_kill.distinct)
        recover_s = time.monotonic() - killed
        hub.stop()
        stored = duckdb_stored(data / "readings.duckdb")
    finally:
        hub.stop()
        broker.stop()
    return {
        "fault_kill_lost": stored.lost([stream]),
        "fault_kill_dup": stored.dup,
        "fault_kill_accepted": stream.acked,
        "fault_kill_stored_at_kill": at_kill.rows,
        "fault_kill_restart_s": round(restart_s, 2),
        "fault_kill_recover_s": round(recover_s, 2),
    }


def broker_outage(
    workdir: Path, outage_s: float = 30.0, readings: int = 40_000
) -> dict[str, float]:
    """Stop the broker mid-stream for ``outage_s``; start it again; resume time and loss."""
    data = workdir / "broker-outage"
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    hub = HubProcess(data, broker.port)
    half = readings // 2
    try:
        hub.start()
        # Flat out, so at the stop some readings are stored, some in flight to the hub, some
        # queued in the broker, and the last ones sent but never acknowledged (not accepted).
        before = Stream(broker.port, 0, half).start()
        stored_at_stop = _wait_stored(hub, half * 0.3)
        broker.stop()
        before.join()
        time.sleep(outage_s)
        broker.start()
        back = time.monotonic()
        after = Stream(broker.port, half, readings - half, client_id="fault-publisher-2").start()
        connected_s = resumed_s = float("nan")
        while time.monotonic() < back + 60 and np.isnan(resumed_s):
            if np.isnan(connected_s) and hub.connected():
                connected_s = time.monotonic() - back
            if hub.status()["readings_stored"] > stored_at_stop:
                resumed_s = time.monotonic() - back
            time.sleep(0.05)
        if np.isnan(connected_s):  # connected and stored between two polls
            connected_s = resumed_s
        after.join()
        hub.wait_drained(quiet_s=4.0)
        hub.stop()
        stored = duckdb_stored(data / "readings.duckdb")
    finally:
        hub.stop()
        broker.stop()
    return {
        "fault_broker_resume_s": round(resumed_s, 2),
        "fault_broker_reconnect_s": round(connected_s, 2),
        "fault_broker_lost": stored.lost([before, after]),
        "fault_broker_dup": stored.dup,
        "fault_broker_outage_s": outage_s,
        "fault_broker_accepted": before.acked + after.acked,
    }


@dataclass
class Outage:
    """What a store-outage scenario saw."""

    streams: list[Stream]
    stored: Stored
    status: dict[str, Any]
    alerts: list[dict[str, Any]]
    failing_seen: bool
    blocked_seen: bool


def _outage(
    hub: HubProcess,
    broker: FaultBroker,
    rate: float,
    outage_s: float,
    fault: tuple[Callable[[], None], Callable[[], None]],
    stored: Callable[[], Stored],
) -> Outage:
    """A steady stream at ``rate``: 5 s, then the fault (``fault[0]``) for ``outage_s``, mended, 5 s."""
    begin, end = fault
    hub.start()
    stream = Stream(broker.port, 0, int(rate * (outage_s + 10)), rate=rate).start()
    time.sleep(5.0)
    begin()
    failing_seen = blocked_seen = False
    t_end = time.monotonic() + outage_s
    try:
        while time.monotonic() < t_end:
            s = hub.status()
            failing_seen |= bool(s.get("store_failing"))
            blocked_seen |= bool(s.get("store_blocked"))
            time.sleep(0.5)
    finally:
        end()
    stream.join()
    status = hub.wait_drained(quiet_s=4.0)
    time.sleep(1.5)  # the clearing event reaches the alert store
    alerts = hub.store_alerts()
    hub.stop()
    return Outage([stream], stored(), status, alerts, failing_seen, blocked_seen)


def sigstop(proc: subprocess.Popen[bytes] | None) -> tuple[Callable[[], None], Callable[[], None]]:
    """A server frozen (SIGSTOP: it accepts connections and answers nothing) and thawed (SIGCONT)."""
    if proc is None:
        msg = "the server is not running"
        raise RuntimeError(msg)
    pid = proc.pid
    return (lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))


def _alert_figures(prefix: str, alerts: list[dict[str, Any]]) -> dict[str, float]:
    """The worst level the ``store`` alert reached (-1: never raised) and whether it cleared."""
    levels = {"info": 0, "blue": 1, "yellow": 2, "orange": 3, "red": 4}
    worst = max((levels.get(str(a.get("level")), -1) for a in alerts), default=-1)
    cleared = bool(alerts) and not any(a.get("firing") for a in alerts)
    return {f"{prefix}_alert_level": worst, f"{prefix}_alert_cleared": int(cleared)}


def store_outage_file(
    workdir: Path,
    outage_s: float = 60.0,
    rate: float = 1000.0,
    spool_max_mb: float | None = None,
    prefix: str = "fault_store_outage",
) -> dict[str, float]:
    """The embedded store's disk refuses writes for ``outage_s``; the spool (another disk) takes them.

    With a ``spool_max_mb`` too small for the outage, the spool fills and the hub must fall back to
    back-pressure (the broker keeps the rest) and raise the alert to red, still losing nothing.
    """
    data = workdir / prefix
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    ballast: list[Path] = []
    with tmpfs(data / "storedisk", 64) as disk:
        store = disk / "readings.duckdb"
        env = {"HUB_STORE__PATH": str(store)}
        if spool_max_mb is not None:
            env["HUB_STORE__SPOOL_MAX_MB"] = str(spool_max_mb)
        hub = HubProcess(data, broker.port, env)
        try:
            out = _outage(
                hub,
                broker,
                rate,
                outage_s,
                (lambda: ballast.append(fill(disk)), lambda: ballast.pop().unlink()),
                lambda: duckdb_stored(store),
            )
        finally:
            hub.stop()
            broker.stop()
    return {
        f"{prefix}_lost": out.stored.lost(out.streams),
        f"{prefix}_dup": out.stored.dup,
        f"{prefix}_spooled": int(out.status.get("spooled", 0)),
        f"{prefix}_accepted": out.streams[0].acked,
        f"{prefix}_blocked": int(out.blocked_seen),
        **_alert_figures(prefix, out.alerts),
    }


def kill_while_spooling(workdir: Path, rate: float = 1000.0) -> dict[str, float]:
    """SIGKILL the hub while the store is down and readings go to the spool; mend; restart; count.

    What the spool took was acknowledged, so the broker will not send it again: it must survive
    the crash on disk and be replayed by the next process.
    """
    data = workdir / "kill-spooling"
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    with tmpfs(data / "storedisk", 64) as disk:
        store = disk / "readings.duckdb"
        hub = HubProcess(data, broker.port, {"HUB_STORE__PATH": str(store)})
        try:
            hub.start()
            stream = Stream(broker.port, 0, int(rate * 20), rate=rate).start()
            time.sleep(3.0)
            ballast = fill(disk)
            deadline = time.monotonic() + 60
            while (spooled := int(hub.status().get("spooled", 0))) < rate * 3:
                if time.monotonic() > deadline:
                    msg = f"nothing spooled: {hub.log_tail()}"
                    raise RuntimeError(msg)
                time.sleep(0.1)
            hub.kill()
            left = len(list((data / "spool").glob("*.batch")))
            ballast.unlink()
            stream.join()
            hub.start()
            hub.wait_drained(quiet_s=4.0)
            hub.stop()
            stored = duckdb_stored(store)
        finally:
            hub.stop()
            broker.stop()
    return {
        "fault_kill_spooling_lost": stored.lost([stream]),
        "fault_kill_spooling_dup": stored.dup,
        "fault_kill_spooling_spooled_at_kill": spooled,
        "fault_kill_spooling_segments_left": left,
        "fault_kill_spooling_accepted": stream.acked,
    }


def store_outage_influx(
    workdir: Path,
    influx_url: str,
    fault: tuple[Callable[[], None], Callable[[], None]],
    outage_s: float = 60.0,
    rate: float = 1000.0,
) -> dict[str, float]:
    """InfluxDB down for ``outage_s`` (``fault``: stop and start it; the caller owns the server)."""
    data = workdir / "store-influx"
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    database = f"faults_{os.getpid()}_{int(time.time())}"
    hub = HubProcess(
        data,
        broker.port,
        {
            "HUB_STORE__BACKEND": "influx",
            "HUB_STORE__INFLUX__URL": influx_url,
            "HUB_STORE__INFLUX__DATABASE": database,
            "HUB_STORE__INFLUX__TIMEOUT_S": "2",
            "HUB_STORE__INFLUX__MAX_RETRIES": "1",
        },
    )
    try:
        out = _outage(
            hub, broker, rate, outage_s, fault, lambda: influx_stored(influx_url, database)
        )
    finally:
        hub.stop()
        broker.stop()
    return {
        "fault_influx_outage_lost": out.stored.lost(out.streams),
        "fault_influx_outage_spooled": int(out.status.get("spooled", 0)),
        "fault_influx_outage_accepted": out.streams[0].acked,
        **_alert_figures("fault_influx_outage", out.alerts),
    }


def disk_full(workdir: Path, full_s: float = 10.0, rate: float = 1000.0) -> dict[str, float]:
    """Store and spool on one tmpfs, filled for ``full_s``: back-pressure, red alert, no corruption."""
    data = workdir / "disk-full"
    data.mkdir(parents=True)
    make_registry(data)
    broker = FaultBroker(data)
    broker.start()
    ballast: list[Path] = []
    with tmpfs(data / "disk", 64) as disk:
        store = disk / "readings.duckdb"
        hub = HubProcess(
            data,
            broker.port,
            {"HUB_STORE__PATH": str(store), "HUB_STORE__SPOOL": str(disk / "spool")},
        )
        try:
            out = _outage(
                hub,
                broker,
                rate,
                full_s,
                (lambda: ballast.append(fill(disk)), lambda: ballast.pop().unlink()),
                lambda: duckdb_stored(store),
            )
            # No corruption: the file opens read-write again and checkpoints its WAL into itself.
            con = duckdb.connect(str(store))
            try:
                con.execute("CHECKPOINT")
                row = con.execute("SELECT count(*) FROM readings").fetchone()
                reopened = int(row is not None and int(row[0]) == out.stored.rows)
            finally:
                con.close()
            errors = (data / "hub.log").read_text(errors="replace").count("No space left on device")
        finally:
            hub.stop()
            broker.stop()
    return {
        "fault_disk_full_lost": out.stored.lost(out.streams),
        "fault_disk_full_dup": out.stored.dup,
        "fault_disk_full_blocked": int(out.blocked_seen),
        "fault_disk_full_reopened": reopened,
        "fault_disk_full_logged": int(errors > 0),
        **_alert_figures("fault_disk_full", out.alerts),
    }


def run(args: Any) -> dict[str, float]:  # noqa: ANN401 - argparse namespace of bench/faults.py
    """Every scenario here; ``args``: readings, outage_s, store_outage_s, disk_full_s, rate."""
    from bench._influxd import BenchInfluxd

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="faults-process-") as tmp:
        work = Path(tmp)
        figures |= kill_restart(work, readings=args.readings)
        figures |= broker_outage(work, outage_s=args.outage_s)
        figures |= kill_while_spooling(work, rate=args.rate)
        figures |= store_outage_file(work, outage_s=args.store_outage_s, rate=args.rate)
        # A spool of 0.1 MB holds a few seconds of this stream: the rest is back-pressure.
        figures |= store_outage_file(
            work, outage_s=20, rate=args.rate, spool_max_mb=0.1, prefix="fault_spool_full"
        )
        with BenchInfluxd() as influx:
            fault = sigstop(influx.proc)
            figures |= store_outage_influx(
                work, influx.url, fault, outage_s=args.store_outage_s, rate=args.rate
            )
        figures |= disk_full(work, full_s=args.disk_full_s, rate=args.rate)
    return figures
