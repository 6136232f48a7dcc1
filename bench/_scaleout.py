"""Several `hub run` ingest workers on one Mosquitto, one InfluxDB and one SQL database (issue 12).

Shared by `bench/scaleout.py` (throughput and CPU per reading with 1, 2 and 4 workers) and
`tests/hub/test_scaleout.py` (exactly once across a worker kill). Each worker is a real process,
``python -m hub run`` with ``HUB_CLUSTER__WORKERS`` / ``HUB_CLUSTER__WORKER``, its own data
directory and HTTP port, the broker and stores shared, as docs/scaleout.md runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench._broker import free_port
from bench._rawpub import RawPublisher
from bench.alerts import NORMAL
from bench.alerts_engine import build_registry

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Worker:
    """One ingest worker process (slot ``slot``) and the CPU its dead predecessors used."""

    slot: int
    data: Path
    http_port: int
    proc: subprocess.Popen[bytes] | None = None
    spent: float = 0.0  # CPU seconds of this slot's processes that are gone

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu(self) -> float:
        live = cpu_seconds(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0
        return self.spent + live


@dataclass
class Cluster:
    """N ingest workers sharing a broker, an InfluxDB database and a SQLite registry."""

    root: Path
    broker_port: int
    influx_url: str
    database: str
    workers: int
    devices: int
    env: dict[str, str] = field(default_factory=dict)
    members: list[Worker] = field(default_factory=list)
    standbys: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.registry_url = f"sqlite:///{self.root / 'hub.db'}"
        self.registry = build_registry(self.root / "hub.db", self.devices)
        self.members = [Worker(k, self.root / f"w{k}", free_port()) for k in range(self.workers)]

    def acme_devices(self) -> list[tuple[str, str]]:
        """(device id, profile) of the registered acme devices, which `payload` can speak for."""
        return sorted(
            (d, e.profile) for d, e in self.registry.interner.devices.items() if e.profile in NORMAL
        )

    def start(self) -> None:
        """Start every worker, one after another (each runs migrations and creates its admin)."""
        for member in self.members:
            self.start_worker(member)

    def start_standby(self) -> Worker:
        """A standby process: it waits for the lease of any slot whose process is gone."""
        standby = Worker(-1, self.root / f"standby{len(self.standbys)}", free_port())
        self.standbys.append(standby)
        self.start_worker(standby, ready=False)
        return standby

    def start_worker(self, member: Worker, *, ready: bool = True) -> None:
        member.data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HUB_DATA_DIR": str(member.data),
            "HUB_REGISTRY_URL": self.registry_url,
            "HUB_MQTT__EMBEDDED": "false",
            "HUB_MQTT__HOST": "127.0.0.1",
            "HUB_MQTT__PORT": str(self.broker_port),
            "HUB_HTTP__PORT": str(member.http_port),
            "HUB_STORE__BACKEND": "influx",
            "HUB_STORE__INFLUX__URL": self.influx_url,
            "HUB_STORE__INFLUX__DATABASE": self.database,
            "HUB_CLUSTER__ROLE": "ingest",
            "HUB_CLUSTER__WORKERS": str(self.workers),
            "HUB_CLUSTER__WORKER": str(max(member.slot, 0)),
            "HUB_CLUSTER__STANDBY": "true" if member.slot < 0 else "false",
            "HUB_VIDEO__PATROL": "false",
            **self.env,
        }
        with (member.data / "hub.log").open("ab") as log:  # the child keeps its own copy
            member.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        if ready:
            self.wait_ready(member)

    def wait_ready(self, member: Worker, timeout: float = 90.0) -> None:
        """Until the process answers /healthz connected to the broker."""
        deadline = time.monotonic() + timeout
        assert member.proc is not None  # noqa: S101 - started above
        while time.monotonic() < deadline:
            if member.proc.poll() is not None:
                tail = (member.data / "hub.log").read_text(errors="replace")[-3000:]
                msg = f"worker {member.slot} exited {member.proc.returncode}: {tail}"
                raise RuntimeError(msg)
            try:
                health = httpx.get(f"{member.url}/healthz", timeout=1).json()
                if health.get("broker_connected"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        msg = f"worker {member.slot} not ready in {timeout} s"
        raise RuntimeError(msg)

    def kill(self, slot: int) -> None:
        """SIGKILL a worker mid-stream (what the test and the benchmark do to prove nothing is lost)."""
        member = self.members[slot]
        assert member.proc is not None  # noqa: S101 - started above
        member.spent += cpu_seconds(member.proc.pid)
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(10)

    def restart(self, slot: int) -> None:
        """Start the slot again, as its supervisor would: same slot, same broker session."""
        self.start_worker(self.members[slot])

    def cpu(self) -> float:
        """CPU seconds all workers used so far."""
        return sum(m.cpu() for m in self.members)

    def stop(self) -> None:
        for member in [*self.members, *self.standbys]:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.send_signal(signal.SIGTERM)
        for member in [*self.members, *self.standbys]:
            if member.proc is not None:
                try:
                    member.proc.wait(30)
                except subprocess.TimeoutExpired:
                    member.proc.kill()
                    member.proc.wait(10)

    def status(self, slot: int) -> dict[str, object]:
        """A worker's /api/v1/status (the pipeline's counters), as its admin."""
        member = self.members[slot]
        # The first worker to start made the shared "admin" account and left its password.
        password = (self.members[0].data / "initial-admin-password").read_text().strip()
        with httpx.Client(base_url=member.url, timeout=10) as http:
            token = http.post(
                "/api/v1/auth/login", json={"username": "admin", "password": password}
            ).json()["access_token"]
            body: dict[str, object] = http.get(
                "/api/v1/status", headers={"authorization": f"Bearer {token}"}
            ).json()
        return body

    def alerts_per_source(self, rule: str) -> dict[str, int]:
        """How many alerts ``rule`` raised per source (exactly once: 1 each)."""
        engine = sa.create_engine(self.registry_url)
        try:
            with engine.connect() as con:
                rows = con.execute(
                    sa.text("SELECT source, count(*) FROM alerts WHERE rule = :r GROUP BY source"),
                    {"r": rule},
                ).all()
        finally:
            engine.dispose()
        return {str(s): int(n) for s, n in rows}


def payload(profile: str, ts_ms: int, **override: float) -> bytes:
    """An acme flat-JSON message with the profile's normal values (and any override)."""
    return json.dumps({"ts": ts_ms, **NORMAL[profile], **override}).encode()


def readings_in(profile: str) -> int:
    """Readings one acme message of ``profile`` carries."""
    return len(NORMAL[profile])


class Load:
    """Publishes every acme device's readings in rounds, QoS 1, and counts what it sent."""

    def __init__(self, port: int, devices: list[tuple[str, str]], t0_ms: int) -> None:
        self.pub = RawPublisher("127.0.0.1", port, f"scaleout-load-{os.getpid()}")
        self.devices = devices
        self.t0_ms = t0_ms
        self.rounds = 0
        self.messages = 0
        self.readings = 0

    def round(self) -> None:
        """One message per device, each with a timestamp one second after its last."""
        self.send(self.devices, self.t0_ms + self.rounds * 1000)
        self.rounds += 1

    def alarm_round(self, smoke: list[str]) -> None:
        """A round in which only these smoke detectors report, each in alarm."""
        self.send(
            [(d, "acme-smoke") for d in smoke], self.t0_ms + self.rounds * 1000, smoke=9.0, alarm=1
        )
        self.rounds += 1

    def send(self, devices: list[tuple[str, str]], at_ms: int, **override: float) -> None:
        """One message from each (device, profile) at ``at_ms``, with the profile's normal values
        (and any override), counted."""
        packets = [
            self.pub.packet(f"sensors/acme/{d}/up".encode(), payload(profile, at_ms, **override))
            for d, profile in devices
        ]
        self.pub.send(packets)
        self.messages += len(packets)
        self.readings += sum(readings_in(p) for _, p in devices)

    def wait_acked(self, timeout: float = 60.0) -> None:
        """Until the broker acknowledged every message sent (it holds them for the workers)."""
        deadline = time.monotonic() + timeout
        while self.pub.acked < self.messages and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.pub.close()
