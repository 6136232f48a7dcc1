"""Per-device broker access on a real Mosquitto: own topics only, revocation, rotation, regeneration.

The broker is the hub's embedded Mosquitto with auth on, on a free port; its password and ACL files
are written by `BrokerAuthSync` from a real registry and credential store (SQLite files).
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.credentials import CredentialStore, IssuedCredential
from devices.loader import load_shipped
from devices.profiles import Device, DeviceStatus
from devices.registry import Registry
from hub.broker_auth import (
    ACCOUNTS_FILE,
    HUB_ACL,
    SIMULATOR_ACL,
    BrokerAuthSync,
    ServiceAccount,
    ServiceAccounts,
    emqx_user,
    render_acl_file,
    simulator_login,
)
from hub.embedded_broker import EmbeddedBroker
from hub.settings import HttpSettings, HubSettings, MqttSettings
from hub.simulator import run_simulation
from ingest.deadletter import DeadLetterStore
from ingest.store.filestore import FileStore
from tests.conftest import free_port, unique_topic
from tests.hub.conftest import CITY, ServedHub
from tests.ingest.codecs.conftest import make_test_registry
from tests.ingest.conftest import RunningPipeline

pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
URN = "urn:dev:mac:0024befffe804ff1"

DEVICES = [
    Device(id="bin-00001", vendor="acme", profile="acme-bin"),
    Device(id="bin-00002", vendor="acme", profile="acme-bin"),
    Device(id="wl-00001", vendor="hydrox", profile="hydrox-wl"),
    Device(id=URN, vendor="hydrox", profile="hydrox-wl"),
    Device(id="sm-00001", vendor="acme", profile="acme-smoke", status="decommissioned"),
]
SERVICES = ServiceAccounts(
    hub=ServiceAccount("hub-ingest", "hub-password-for-tests", HUB_ACL),
    simulator=ServiceAccount("bench-simulator", "simulator-password-for-tests", SIMULATOR_ACL),
)


def flipped(secret: str) -> str:
    """The secret with its last character changed."""
    return secret[:-1] + ("y" if secret.endswith("x") else "x")


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Client:
    """A paho MQTT 5 client on its own network thread that records what the broker answered."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str = "",
        will: str | None = None,
    ) -> None:
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.dropped = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{unique_topic('c').replace('/', '-')}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a refused login must stay refused, not retry
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will, b"offline", qos=1, retain=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.answered.wait(5), "no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc
        if not rc.is_failure:
            self.connected.set()
        self.answered.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, _rc: object, _p: object) -> None:
        if self.connected.is_set():
            self.dropped.set()
        self.connected.clear()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
        self.pubacks[mid] = rc.value

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        self.subacks[mid] = [rc.value for rc in rcs]

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, bytes(msg.payload)))

    @property
    def ok(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        assert wait_for(lambda: mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[mid]

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert wait_for(lambda: mid in self.subacks), f"no SUBACK for {topic}"
        return self.subacks[mid]

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a device losing power (its will fires)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class AuthHub:
    """An auth-on Mosquitto kept in step with a registry and a credential store."""

    broker: EmbeddedBroker
    registry: Registry
    store: CredentialStore
    sync: BrokerAuthSync
    issued: dict[str, IssuedCredential]
    clients: list[Client]

    def login(self, device_id: str, **kwargs: str) -> Client:
        cred = self.issued[device_id]
        return self.connect(cred.username, cred.secret, **kwargs)

    def connect(self, username: str | None, password: str | None, **kwargs: str) -> Client:
        client = Client(self.broker.port, username, password, **kwargs)
        self.clients.append(client)
        return client

    def hub(self) -> Client:
        """The hub's account, subscribed to every device topic."""
        c = self.connect(SERVICES.hub.username, SERVICES.hub.password)
        assert c.ok, c.connack
        assert c.subscribe("sensors/#") == [1]
        return c

    def new_sync(self) -> BrokerAuthSync:
        """A sync as a restarted hub builds it (service hashes salted anew)."""
        return BrokerAuthSync(
            self.store,
            self.registry,
            self.broker.password_path,
            self.broker.acl_path,
            SERVICES.all,
            reload=self.broker.reload,
        )


@pytest.fixture
def auth_hub(tmp_path: Path) -> Iterator[AuthHub]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    registry = Registry(url)
    load_shipped(registry)
    registry.put_devices(DEVICES)
    store = CredentialStore(url)
    issued = {i.device_id: i for i in store.issue_many([(d.id, d.vendor) for d in DEVICES])}
    broker = EmbeddedBroker(tmp_path / "broker", port=free_port(), auth=True)
    hub = AuthHub(broker, registry, store, None, issued, [])  # type: ignore[arg-type]
    hub.sync = hub.new_sync()
    result = hub.sync.sync(reload=False)
    assert (result.devices, result.left_out) == (
        4,
        1,
    )  # the decommissioned smoke detector is left out
    broker.start()
    try:
        yield hub
    finally:
        for c in hub.clients:
            c.close()
        broker.stop()
        store.dispose()
        registry.engine.dispose()


def test_a_device_publishes_on_its_own_topics_and_the_hub_receives(auth_hub: AuthHub) -> None:
    hub = auth_hub.hub()
    device = auth_hub.login("bin-00001")
    assert device.ok, device.connack
    assert device.publish("sensors/acme/bin-00001/up", b'{"fill": 40}') == SUCCESS
    assert device.publish("sensors/acme/bin-00001/status", b"online") == SUCCESS
    assert wait_for(lambda: len(hub.messages) == 2)
    assert hub.messages == [
        ("sensors/acme/bin-00001/up", b'{"fill": 40}'),
        ("sensors/acme/bin-00001/status", b"online"),
    ]


def test_a_device_cannot_publish_as_another_device_and_nothing_is_delivered(
    auth_hub: AuthHub,
) -> None:
    hub = auth_hub.hub()
    device = auth_hub.login("bin-00001")
    forged = [
        "sensors/acme/bin-00002/up",  # same vendor
        "sensors/acme/bin-00002/status",
        "sensors/hydrox/wl-00001/up",  # another vendor
        f"sensors/hydrox/{URN}/up",
        "sensors/acme/bin-00001/down",  # its own device, not one of its topics
        "hub/alerts/red/1",
    ]
    for topic in forged:
        assert device.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    # Delivery is in order: once the sentinel arrives, anything forged would have arrived before it.
    assert device.publish("sensors/acme/bin-00001/up", b"sentinel") == SUCCESS
    assert wait_for(lambda: len(hub.messages) >= 1)
    assert hub.messages == [("sensors/acme/bin-00001/up", b"sentinel")]
    assert device.connected.is_set()  # refused, not disconnected


def test_a_device_reads_nothing(auth_hub: AuthHub) -> None:
    spy = auth_hub.login("bin-00002")
    # Mosquitto 2.0 grants the subscription and checks read access per message: nothing arrives.
    spy.subscribe("#")
    spy.subscribe("sensors/acme/bin-00002/up")
    hub = auth_hub.hub()
    other = auth_hub.login("bin-00001")
    assert other.publish("sensors/acme/bin-00001/up", b"private") == SUCCESS
    assert spy.publish("sensors/acme/bin-00002/up", b"own") == SUCCESS
    assert wait_for(lambda: len(hub.messages) == 2)
    time.sleep(0.2)
    assert spy.messages == []


def test_a_device_cannot_leave_a_last_will_on_another_device_s_topic(auth_hub: AuthHub) -> None:
    hub = auth_hub.hub()
    liar = auth_hub.login("bin-00001", will="sensors/acme/bin-00002/status")
    honest = auth_hub.login("wl-00001", will="sensors/hydrox/wl-00001/status")
    assert liar.ok
    assert honest.ok
    liar.kill()
    honest.kill()
    assert wait_for(lambda: len(hub.messages) >= 1)
    time.sleep(0.3)
    assert hub.messages == [("sensors/hydrox/wl-00001/status", b"offline")]


def test_logins_that_are_not_a_device_s_current_credential_are_refused(auth_hub: AuthHub) -> None:
    cred = auth_hub.issued["bin-00001"]
    attempts = {
        "anonymous": auth_hub.connect(None, None),
        "wrong secret": auth_hub.connect(cred.username, flipped(cred.secret)),
        "other device's secret": auth_hub.connect(
            cred.username, auth_hub.issued["bin-00002"].secret
        ),
        "decommissioned device": auth_hub.login("sm-00001"),
        "unknown user": auth_hub.connect("acme/bin-99999", cred.secret),
    }
    for what, client in attempts.items():
        assert not client.ok, what
        assert client.connack is not None
        assert client.connack.value in (0x86, NOT_AUTHORIZED), what  # bad password / not authorised


def test_revoking_cuts_the_connection_and_refuses_the_next_login(auth_hub: AuthHub) -> None:
    device = auth_hub.login("bin-00001")
    bystander = auth_hub.login("bin-00002")
    assert device.ok
    assert bystander.ok
    auth_hub.store.revoke("bin-00001")
    result = auth_hub.sync.sync_if_changed()
    assert result is not None
    assert (result.reloaded, result.devices) == (True, 3)
    # Mosquitto 2.0.11 re-checks connected clients on reload and drops the revoked one.
    assert device.dropped.wait(5), "the revoked device's connection survived the reload"
    assert not auth_hub.login("bin-00001").ok
    assert bystander.connected.is_set()
    assert bystander.publish("sensors/acme/bin-00002/up") == NO_MATCHING_SUBSCRIBERS


def test_rotating_makes_the_old_secret_fail_and_the_new_one_work(auth_hub: AuthHub) -> None:
    old = auth_hub.login("bin-00001")
    assert old.ok
    new_cred = auth_hub.store.issue("bin-00001", "acme")
    assert auth_hub.sync.sync_if_changed() is not None
    assert old.dropped.wait(5), "the connection with the old secret survived the rotation"
    assert not auth_hub.login("bin-00001").ok  # the old secret
    auth_hub.issued["bin-00001"] = new_cred
    fresh = auth_hub.login("bin-00001")
    assert fresh.ok
    assert fresh.publish("sensors/acme/bin-00001/up") == NO_MATCHING_SUBSCRIBERS


def test_decommissioning_in_the_registry_takes_access_away(auth_hub: AuthHub) -> None:
    device = auth_hub.login("wl-00001")
    assert device.ok
    auth_hub.registry.set_status("wl-00001", DeviceStatus.DECOMMISSIONED)
    result = auth_hub.sync.sync_if_changed()
    assert result is not None
    assert result.left_out == 2
    assert device.dropped.wait(5)
    assert not auth_hub.login("wl-00001").ok
    # Its credential is untouched: reactivating the device gives the same access back.
    auth_hub.registry.set_status("wl-00001", DeviceStatus.ACTIVE)
    assert auth_hub.sync.sync_if_changed() is not None
    assert auth_hub.login("wl-00001").ok


def test_a_credential_for_another_vendor_than_the_registry_s_gets_no_access(
    auth_hub: AuthHub,
) -> None:
    wrong = auth_hub.store.issue("bin-00002", "hydrox")  # the registry says acme
    assert auth_hub.sync.sync_if_changed() is not None
    assert not auth_hub.connect(wrong.username, wrong.secret).ok


def test_a_device_id_with_colons_publishes_on_its_real_topic(auth_hub: AuthHub) -> None:
    hub = auth_hub.hub()
    device = auth_hub.login(URN)
    assert auth_hub.issued[URN].username == "hydrox/urn~dev~mac~0024befffe804ff1"
    assert device.ok
    assert device.publish(f"sensors/hydrox/{URN}/up") == SUCCESS
    assert device.publish("sensors/hydrox/wl-00001/up") == NOT_AUTHORIZED
    assert wait_for(lambda: len(hub.messages) == 1)
    assert hub.messages[0][0] == f"sensors/hydrox/{URN}/up"


def test_a_device_cannot_take_over_the_hub_s_session(auth_hub: AuthHub) -> None:
    hub = auth_hub.connect(SERVICES.hub.username, SERVICES.hub.password, client_id="hub-ingest")
    assert hub.ok
    intruder = auth_hub.login("bin-00001", client_id="hub-ingest")
    assert intruder.ok  # connected, but as client "acme/bin-00001" (use_username_as_clientid)
    time.sleep(0.3)
    assert not hub.dropped.is_set()
    assert hub.connected.is_set()


def test_service_accounts_read_or_write_as_their_role(auth_hub: AuthHub) -> None:
    hub = auth_hub.hub()
    sim = auth_hub.connect(SERVICES.simulator.username, SERVICES.simulator.password)
    assert sim.ok
    sim.subscribe("sensors/#")
    for topic in ("sensors/acme/bin-00001/up", "sensors/hydrox/wl-00001/status"):
        assert sim.publish(topic) == SUCCESS
    assert hub.publish("sensors/acme/bin-00001/up") == NOT_AUTHORIZED  # the hub only reads
    assert wait_for(lambda: len(hub.messages) == 2)
    time.sleep(0.2)
    assert sim.messages == []  # the simulator only writes


def access_matrix(auth_hub: AuthHub) -> dict[tuple[str, str], int]:
    """Connect-and-publish results of every account against every device topic."""
    logins = {d: (c.username, c.secret) for d, c in auth_hub.issued.items()}
    logins.update({a.username: (a.username, a.password) for a in SERVICES.all})
    topics = [f"sensors/{d.vendor}/{d.id}/{k}" for d in DEVICES for k in ("up", "status")]
    matrix: dict[tuple[str, str], int] = {}
    for who, (username, secret) in logins.items():
        client = auth_hub.connect(username, secret)
        for topic in topics:
            matrix[who, topic] = client.publish(topic) if client.ok else -1
        client.close()
    return matrix


def test_after_losing_the_broker_s_files_regeneration_restores_the_same_access(
    auth_hub: AuthHub,
) -> None:
    auth_hub.store.revoke("bin-00002")
    auth_hub.sync.sync_if_changed()
    before = access_matrix(auth_hub)
    device_lines = [
        line
        for line in auth_hub.broker.password_path.read_text().splitlines()
        if "/" in line.split(":")[0]
    ]
    acl = auth_hub.broker.acl_path.read_text()

    auth_hub.broker.stop()
    for f in auth_hub.broker.data_dir.iterdir():  # config, passwords, ACL, persistence, log
        f.unlink()
    result = auth_hub.new_sync().sync(reload=False)  # as a restarted hub does, before the broker
    assert (result.devices, result.left_out, result.changed) == (3, 1, True)
    auth_hub.broker.start()

    assert access_matrix(auth_hub) == before
    assert acl == auth_hub.broker.acl_path.read_text()
    assert device_lines == [
        line
        for line in auth_hub.broker.password_path.read_text().splitlines()
        if "/" in line.split(":")[0]
    ]
    # Spot checks of what the matrix holds.
    assert before["bin-00001", "sensors/acme/bin-00001/up"] == NO_MATCHING_SUBSCRIBERS
    assert before["bin-00001", "sensors/acme/bin-00002/up"] == NOT_AUTHORIZED
    assert before["bin-00002", "sensors/acme/bin-00002/up"] == -1  # revoked: no login
    assert before["sm-00001", "sensors/acme/sm-00001/up"] == -1  # decommissioned
    assert before["bench-simulator", "sensors/hydrox/wl-00001/up"] == NO_MATCHING_SUBSCRIBERS
    assert before["hub-ingest", "sensors/acme/bin-00001/up"] == NOT_AUTHORIZED


def test_an_unchanged_sync_neither_rewrites_nor_reloads(auth_hub: AuthHub) -> None:
    assert auth_hub.sync.sync_if_changed() is None
    mtime = auth_hub.broker.password_path.stat().st_mtime_ns
    result = auth_hub.sync.sync()
    assert (result.changed, result.reloaded) == (False, False)
    assert auth_hub.broker.password_path.stat().st_mtime_ns == mtime
    for f in (auth_hub.broker.password_path, auth_hub.broker.acl_path):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_service_account_passwords_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path)
    first = ServiceAccounts.for_settings(settings)
    again = ServiceAccounts.for_settings(settings)
    assert first == again
    assert (first.hub.username, first.simulator.username) == ("hub-ingest", "bench-simulator")
    assert first.hub.password != first.simulator.password
    path = tmp_path / ACCOUNTS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["bench-simulator"] == first.simulator.password
    assert first.hub.password not in repr(first)
    given = HubSettings(
        data_dir=tmp_path,
        mqtt=MqttSettings(username="hub-a", password="given-password"),  # type: ignore[arg-type]
    )
    assert ServiceAccounts.for_settings(given).hub.password == "given-password"


def test_emqx_export_matches_the_same_hash() -> None:
    # EMQX's built-in database checks hex(PBKDF2-SHA512(secret, salt, 1, 64)) with the salt as text.
    import hashlib  # noqa: PLC0415

    store = CredentialStore("sqlite://")
    cred = store.issue("bin-00001", "acme")
    (active,) = store.all_active()
    user = emqx_user(active)
    digest = hashlib.pbkdf2_hmac(
        "sha512", cred.secret.encode(), str(user["salt"]).encode(), 1, 64
    ).hex()
    assert user == {
        "user_id": "acme/bin-00001",
        "password_hash": digest,
        "salt": user["salt"],
        "is_superuser": False,
    }
    store.dispose()


def test_acl_file_grants_devices_only_their_topics() -> None:
    assert render_acl_file([], SERVICES.all) == (
        "# Written by the hub (hub/broker_auth.py); regenerated from its database.\n"
        "# Every device ({vendor}/{device_id}): its own telemetry and status topics, and nothing to read.\n"
        "pattern write sensors/%u/up\n"
        "pattern write sensors/%u/status\n"
        "\nuser hub-ingest\ntopic read sensors/#\ntopic readwrite hub/#\n"
        "\nuser bench-simulator\ntopic write sensors/#\n"
    )


def test_the_embedded_broker_without_auth_stays_anonymous(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path, port=free_port())
    assert "allow_anonymous true" in broker.config_text()
    assert "password_file" not in broker.config_text()
    with_auth = EmbeddedBroker(tmp_path, port=free_port(), auth=True).config_text()
    assert "allow_anonymous false" in with_auth
    assert "allow_anonymous true" not in with_auth
    assert os.fspath(tmp_path.resolve() / "passwd") in with_auth


def test_the_pipeline_stores_a_device_s_own_readings_and_nothing_it_was_refused(
    tmp_path: Path,
) -> None:
    registry = make_test_registry(tmp_path / "hub.db")
    store = CredentialStore(f"sqlite:///{tmp_path / 'hub.db'}")
    issued = {
        i.device_id: i
        for i in store.issue_many(
            [("bin-00001", "acme"), ("gas-00001", "acme"), ("wl-00001", "hydrox")]
        )
    }
    broker = EmbeddedBroker(tmp_path / "broker", port=free_port(), auth=True)
    sync = BrokerAuthSync(
        store, registry, broker.password_path, broker.acl_path, SERVICES.all, reload=broker.reload
    )
    sync.sync(reload=False)
    broker.start()
    readings = FileStore(tmp_path / "readings.duckdb")
    dead = DeadLetterStore(f"sqlite:///{tmp_path / 'dead.db'}")
    device: Client | None = None
    try:
        with RunningPipeline(
            registry,
            readings,
            dead,
            broker,
            username=SERVICES.hub.username,
            password=SERVICES.hub.password,
        ) as running:
            cred = issued["bin-00001"]
            device = Client(broker.port, cred.username, cred.secret)
            assert device.ok
            ts = 1_795_000_000_000
            own = json.dumps({"ts": ts, "fill": 45, "temp": 21.3, "bat": 70}).encode()
            forged = json.dumps({"ts": ts, "fill": 99, "temp": 99.0, "bat": 1}).encode()
            senml = json.dumps(
                [{"bn": "wl-00001:", "bt": ts / 1000, "n": "water_level", "u": "m", "v": 9}]
            )
            assert device.publish("sensors/acme/bin-00001/up", own) == SUCCESS
            assert device.publish("sensors/acme/gas-00001/up", forged) == NOT_AUTHORIZED
            assert device.publish("sensors/hydrox/wl-00001/up", senml.encode()) == NOT_AUTHORIZED
            later = json.dumps({"ts": ts + 60_000, "fill": 46, "temp": 21.0, "bat": 70}).encode()
            assert device.publish("sensors/acme/bin-00001/up", later) == SUCCESS
            running.wait_until(lambda p: p.stats.stored >= 6)
            time.sleep(0.3)  # anything forged would have been delivered before the second message
            pipeline = running.pipeline
            assert pipeline.consumer.counters.messages == 2
            assert pipeline.consumer.counters.dead_letters == 0
            assert pipeline.stats.stored == 6

        interner = registry.interner
        fill = interner.metrics["fill_level"]
        own_rows = readings.range(interner.devices["bin-00001"].index, fill, 0, 2**62)
        assert own_rows.value.tolist() == [45.0, 46.0]
        for victim in ("gas-00001", "wl-00001"):
            index = interner.devices[victim].index
            for metric in interner.metrics.values():
                assert len(readings.range(index, metric, 0, 2**62)) == 0, victim
    finally:
        if device is not None:
            device.close()
        broker.stop()
        readings.close()
        store.dispose()
        registry.engine.dispose()


def login_within(port: int, username: str, secret: str, timeout: float = 5.0) -> Client | None:
    """A connected client once the broker accepts the login (it may still be reloading), else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = Client(port, username, secret)
        if client.ok:
            return client
        client.close()
        time.sleep(0.1)
    return None


@pytest.mark.slow
def test_the_hub_runs_its_embedded_broker_with_auth_and_keeps_it_in_step(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(port=free_port()),  # embedded, auth on: the defaults
        http=HttpSettings(port=free_port()),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    served = ServedHub(settings)
    store = CredentialStore(settings.registry)  # as another process (or the API) issues them
    port = settings.mqtt.port
    clients: list[Client] = []
    try:
        assert served.health()["broker_connected"] is True  # the hub's own generated account
        assert stat.S_IMODE((data / ACCOUNTS_FILE).stat().st_mode) == 0o600
        anonymous = Client(port, None, None)
        clients.append(anonymous)
        assert not anonymous.ok

        cred = store.issue("bin-00001", "acme")
        device = login_within(port, cred.username, cred.secret)  # the hub syncs within a second
        assert device is not None, "the hub did not give the new credential access"
        clients.append(device)
        payload = json.dumps({"ts": 1_795_000_000_000, "fill": 45, "temp": 21.3, "bat": 70})
        assert device.publish("sensors/acme/bin-00001/up", payload.encode()) == SUCCESS
        assert device.publish("sensors/acme/bin-00002/up", payload.encode()) == NOT_AUTHORIZED
        served.wait_stored(3)

        # `hub demo`'s simulator publishes for every device through its own account.
        user, password = simulator_login(settings)
        assert user == "bench-simulator"
        stats = run_simulation(
            "127.0.0.1", port, CITY, 200.0, 1.0, qos=1, username=user, password=password
        )
        assert stats.messages > 50
        served.wait_stored(3 + stats.readings)

        store.revoke("bin-00001")
        assert device.dropped.wait(10), "the revoked device stayed connected"
        clients.append(Client(port, cred.username, cred.secret))
        assert not clients[-1].ok
    finally:
        for c in clients:
            c.close()
        store.dispose()
        served.stop()
