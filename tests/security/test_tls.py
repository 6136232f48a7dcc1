"""TLS for MQTT and HTTP with a self-signed CA made at test time (openssl), as the README documents it.

The hub runs as shipped (``python -m hub run``, settings from ``HUB_*`` variables) against a Mosquitto
whose only listener is TLS: the hub's own session, a device's publish and the HTTPS API all go over TLS,
and a client that does not speak TLS gets nowhere.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from hub.db import upgrade
from tests.conftest import MOSQUITTO, Broker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=cityhub test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=where,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=where,
    )  # fmt: skip
    (where / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
        cwd=where,
    )  # fmt: skip
    return where / "ca.crt", where / "server.crt", where / "server.key"


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    where = tmp_path / "pki"
    where.mkdir()
    return make_certificates(where)


@pytest.fixture
def tls_broker(tmp_path: Path, certificates: tuple[Path, Path, Path]) -> Iterator[Broker]:
    """Mosquitto whose one listener speaks TLS only (the listener's options follow its line)."""
    assert Path(MOSQUITTO).exists(), f"mosquitto is not installed at {MOSQUITTO}"
    ca, cert, key = certificates
    broker = Broker(tmp_path / "mosquitto")
    conf = broker.conf.read_text().replace(
        f"listener {broker.port} {broker.host}\n",
        f"listener {broker.port} {broker.host}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
    )
    broker.conf.write_text(conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _device(broker: Broker, ca: Path | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-device", protocol=mqtt.MQTTv5)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    return client


def test_plain_mqtt_gets_nowhere_on_the_tls_listener(tls_broker: Broker) -> None:
    client = _device(tls_broker, None)
    accepted = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: accepted.set() if reason == 0 else None
    try:
        client.connect(tls_broker.host, tls_broker.port, keepalive=5)
    except OSError:
        return  # refused before the MQTT CONNECT even went out: nowhere, as wanted
    client.loop_start()
    try:
        # The broker drops the connection at the TLS handshake: no CONNACK ever comes.
        assert not accepted.wait(5)
    finally:
        client.loop_stop()


def test_the_hub_over_tls_end_to_end(
    tmp_path: Path, tls_broker: Broker, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    data = tmp_path / "hub"
    data.mkdir()
    url = f"sqlite:///{data / 'hub.db'}"
    upgrade(url)
    registry = Registry(url)
    load_shipped(registry)
    registry.put_devices([Device(id="bin-tls-1", vendor="acme", profile="acme-bin")])
    registry.engine.dispose()
    http_port = free_port()
    env = {
        **os.environ,
        "HUB_DATA_DIR": str(data),
        "HUB_MQTT__EMBEDDED": "false",
        "HUB_MQTT__HOST": "127.0.0.1",
        "HUB_MQTT__PORT": str(tls_broker.port),
        "HUB_MQTT__TLS_CA_FILE": str(ca),
        "HUB_HTTP__PORT": str(http_port),
        "HUB_HTTP__TLS_CERTFILE": str(cert),
        "HUB_HTTP__TLS_KEYFILE": str(key),
    }
    log = (tmp_path / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"https://127.0.0.1:{http_port}"
    try:
        https = httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(ca)))
        deadline = time.monotonic() + 60
        while True:
            assert hub.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()[-3000:]
            try:
                if https.get("/healthz", timeout=2).json()["broker_connected"]:
                    break  # the hub's MQTT session over TLS is up
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        # Plain HTTP on the HTTPS port gets no answer the API would give.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5).raise_for_status()
        # A client that does not trust the CA refuses the hub's certificate.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=5)
        # A device publishes over TLS; the reading arrives, read back over HTTPS.
        device = _device(tls_broker, ca)
        device.connect(tls_broker.host, tls_broker.port)
        device.loop_start()
        ts = int(time.time() * 1000)
        info = device.publish(
            "sensors/acme/bin-tls-1/up", json.dumps({"ts": ts, "fill": 42, "bat": 90}), qos=1
        )
        info.wait_for_publish(10)
        device.disconnect()
        device.loop_stop()
        password = (data / "initial-admin-password").read_text().strip()
        token = https.post(
            "/api/v1/auth/login", json={"username": "admin", "password": password}
        ).json()["access_token"]
        https.headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + 20
        while https.get("/api/v1/status").json()["readings_stored"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = https.get(
            "/api/v1/devices/bin-tls-1/readings",
            params={"metric": "fill_level", "start": "2020-01-01T00:00:00Z"},
        )
        assert r.json()["value"] == [42.0]
        https.close()
    finally:
        hub.terminate()
        hub.wait(30)
        log.close()
