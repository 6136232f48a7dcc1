"""The ``cluster`` profile of docker-compose.yml and its EMQX configuration, checked without Docker or EMQX.

Neither a Docker daemon nor EMQX can run on the machines this project is built and tested on, so
nothing here starts a container or a broker. What is checked, statically:

- ``docker-compose config`` (Debian's docker-compose 1.29, which validates against the Compose schema
  and needs no daemon) accepts the file with ``.env.example`` and the profile;
- the ingest workers cover the slots 0..N-1 exactly once with one N, each with its own persistent
  client id and volume; the api nodes run role api; every hub process uses InfluxDB and PostgreSQL
  and the broker's hub listener; the settings each container gets build a valid `HubSettings`;
- ``deploy/emqx/emqx.conf`` parses as HOCON (pyhocon) and sets what a dead worker's session needs
  (no queue limit, a long session expiry, the hub's in-flight window) and the two listeners/zones;
- ``deploy/emqx/acl.conf`` grants the service accounts what hub/broker_auth.py grants them on Mosquitto;
- the container command that writes EMQX's service-account CSV and cookie runs under ``sh`` here;
- the SQL EMQX's PostgreSQL authenticator and authorizer run is executed against a real PostgreSQL
  with the hub's own tables, and the answer is checked the way EMQX checks it (hex PBKDF2-SHA512).

Not checked: that EMQX 5.8.6 accepts every key (its schema is not available here), the image's
entrypoint, health checks, and anything at run time (sessions resuming, failover, load).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from pyhocon import ConfigFactory, ConfigTree  # type: ignore[import-untyped]

from devices.credentials import CredentialStore
from devices.loader import load_shipped
from devices.profiles import Device, DeviceStatus
from devices.registry import Registry
from hub.broker_auth import HUB_ACL, SIMULATOR_ACL
from hub.db import upgrade
from hub.settings import HubSettings, MqttSettings
from ingest.mqtt import MqttOptions

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
EMQX_CONF = ROOT / "deploy/emqx/emqx.conf"
EMQX_ACL = ROOT / "deploy/emqx/acl.conf"
HUB_IMAGE = "cityhub:latest"
CLUSTER_SERVICES_FIXED = {"emqx", "hub-migrate"}
ACCOUNTS_CSV = "/tmp/cityhub-service-accounts.csv"  # noqa: S108 - the path inside the EMQX container


def compose_config() -> dict[str, Any]:
    """``docker-compose config`` of the file with ``.env.example`` and the cluster profile."""
    if not Path(COMPOSE).exists():
        pytest.fail("docker-compose is not installed: run scripts/ensure-system-packages test")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(ROOT))}
    r = subprocess.run(
        [
            COMPOSE,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(ROOT / ".env.example"),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--profile",
            "cluster",
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = yaml.safe_load(r.stdout)
    return data


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """The resolved services of the ``cluster`` profile."""
    resolved = compose_config()["services"]
    return {
        name: service
        for name, service in resolved.items()
        if "cluster" in service.get("profiles", [])
    }


@pytest.fixture(scope="module")
def emqx_conf() -> ConfigTree:
    """deploy/emqx/emqx.conf parsed; the PostgreSQL password is an environment substitution."""
    saved = os.environ.get("CITYHUB_PG_PASSWORD")
    os.environ["CITYHUB_PG_PASSWORD"] = "from-the-environment"
    try:
        return ConfigFactory.parse_file(str(EMQX_CONF))
    finally:
        if saved is None:
            del os.environ["CITYHUB_PG_PASSWORD"]
        else:
            os.environ["CITYHUB_PG_PASSWORD"] = saved


def hub_nodes(services: dict[str, dict[str, Any]], role: str) -> dict[str, dict[str, Any]]:
    return {
        n: s
        for n, s in services.items()
        if s.get("environment", {}).get("HUB_CLUSTER__ROLE") == role
    }


def seconds(duration: object) -> float:
    """A HOCON duration (``7d``, ``2h``) as pyhocon parses it (timedelta or relativedelta), in seconds."""
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    parts = ("days", "hours", "minutes", "seconds")
    assert all(hasattr(duration, p) for p in parts), f"not a duration: {duration!r}"
    assert not getattr(duration, "months", 0), duration
    assert not getattr(duration, "years", 0), duration
    d, h, m, s = (float(getattr(duration, p)) for p in parts)
    return d * 86400 + h * 3600 + m * 60 + s


def test_the_cluster_profile_has_a_broker_workers_and_api_nodes(
    services: dict[str, dict[str, Any]],
) -> None:
    workers = hub_nodes(services, "ingest")
    api = hub_nodes(services, "api")
    assert len(workers) >= 2
    assert len(api) >= 2
    assert set(services) == CLUSTER_SERVICES_FIXED | set(workers) | set(api)
    emqx = services["emqx"]
    assert re.fullmatch(r"emqx/emqx:5\.\d+\.\d+", emqx["image"]), "pin an EMQX 5.x release"
    for name in set(workers) | set(api) | {"hub-migrate"}:
        assert services[name]["image"] == HUB_IMAGE, name


def standbys(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        n: s
        for n, s in hub_nodes(services, "ingest").items()
        if s["environment"].get("HUB_CLUSTER__STANDBY") == "true"
    }


def slot_workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spare = standbys(services)
    return {n: s for n, s in hub_nodes(services, "ingest").items() if n not in spare}


def test_every_ingest_worker_owns_one_slot_with_its_own_session(
    services: dict[str, dict[str, Any]],
) -> None:
    workers = slot_workers(services)
    envs = [s["environment"] for s in workers.values()]
    counts = {e["HUB_CLUSTER__WORKERS"] for e in envs}
    assert counts == {str(len(workers))}, "every worker must be told the same N, the real one"
    slots = sorted(int(e["HUB_CLUSTER__WORKER"]) for e in envs)
    assert slots == list(range(len(workers))), "slots 0..N-1, each exactly once"
    for e in envs:
        assert e["HUB_MQTT__CLIENT_ID"] == f"hub-ingest-w{e['HUB_CLUSTER__WORKER']}"
    data_volumes = []
    for name, s in workers.items():
        assert s["command"] == ["hub", "run", "--role", "ingest"], name
        assert s["restart"] == "always", name
        (data,) = [v for v in s["volumes"] if v.endswith(":/data") or ":/data:" in v]
        data_volumes.append(data.split(":")[0])
    assert len(set(data_volumes)) == len(workers), "each slot keeps its spool on its own volume"


def test_rule_state_is_on_a_volume_every_worker_and_the_standby_share(
    services: dict[str, dict[str, Any]],
) -> None:
    """A standby takes a dead slot's checkpoint over, and a new worker count deals the old
    workers' checkpoints out again (hub/checkpoints.py): both need every worker's files."""
    spare = standbys(services)
    assert spare, "a standby takes over the slot of a worker that dies"
    mounts = set()
    for name, s in hub_nodes(services, "ingest").items():
        state_file = s["environment"]["HUB_RULES__STATE_FILE"]
        shared = [v for v in s["volumes"] if v.split(":")[1] == str(Path(state_file).parent)]
        assert len(shared) == 1, f"{name}: {state_file} is not on a volume"
        mounts.add(shared[0].split(":")[0])
    assert len(mounts) == 1, f"the checkpoints are on several volumes: {mounts}"
    for name, s in spare.items():
        env = s["environment"]
        assert "HUB_CLUSTER__WORKER" not in env, name
        # The slot it becomes names the session: hub-ingest-w{k} from the default client id.
        assert env.get("HUB_MQTT__CLIENT_ID", MqttSettings().client_id) == "hub-ingest", name
        assert env["HUB_CLUSTER__WORKERS"] == str(len(slot_workers(services)))
        assert set(slot_workers(services)) <= set(s["depends_on"]), name


def test_api_nodes_run_role_api_with_their_own_client_ids(
    services: dict[str, dict[str, Any]],
) -> None:
    api = hub_nodes(services, "api")
    workers = slot_workers(services)  # a standby takes the id of the slot it becomes
    ids = [s["environment"]["HUB_MQTT__CLIENT_ID"] for s in (*api.values(), *workers.values())]
    assert len(ids) == len(set(ids)), "no two hub processes may share an MQTT session"
    published = []
    for name, s in api.items():
        assert s["command"] == ["hub", "run", "--role", "api"], name
        assert "HUB_CLUSTER__WORKER" not in s["environment"], name
        published += [p["published"] for p in s["ports"]]
    assert len(published) == len(set(published)) == len(api)


def test_every_hub_process_uses_the_shared_stores_and_the_hub_listener(
    services: dict[str, dict[str, Any]], emqx_conf: ConfigTree
) -> None:
    hub_port = int(str(emqx_conf.get_string("listeners.tcp.hub.bind")).rsplit(":", 1)[1])
    nodes = {**hub_nodes(services, "ingest"), **hub_nodes(services, "api")}
    for name, s in nodes.items():
        env = s["environment"]
        assert env["HUB_STORE__BACKEND"] == "influx", name
        assert env["HUB_STORE__INFLUX__URL"] == "http://influxdb:8086", name
        assert sa.make_url(env["HUB_REGISTRY_URL"]).drivername == "postgresql+psycopg", name
        assert sa.make_url(env["HUB_REGISTRY_URL"]).host == "postgres", name
        assert env["HUB_MQTT__HOST"] == "emqx", name
        assert int(env["HUB_MQTT__PORT"]) == hub_port, name
        assert "HUB_MQTT__AUTH_DIR" not in env, "EMQX reads PostgreSQL; no password files"
        deps = s["depends_on"]
        assert deps["hub-migrate"]["condition"] == "service_completed_successfully", name
        assert deps["emqx"]["condition"] == "service_healthy", name
    migrate = services["hub-migrate"]
    assert migrate["command"] == ["hub", "db", "upgrade"]
    registries = {s["environment"]["HUB_REGISTRY_URL"] for s in (*nodes.values(), migrate)}
    assert len(registries) == 1, "one PostgreSQL database for every process"
    # Devices reach 1883; the hub's listener is not published outside the compose network.
    ports = {p["target"]: p["published"] for p in services["emqx"]["ports"]}
    assert ports == {1883: 1883}
    assert hub_port not in ports


@pytest.fixture
def clean_hub_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HUB_ variable of the test run's own leaks into the settings built from a container's."""
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_every_container_s_environment_is_valid_hub_settings(
    services: dict[str, dict[str, Any]], clean_hub_env: pytest.MonkeyPatch
) -> None:
    checked = 0
    for name, s in services.items():
        if s["image"] != HUB_IMAGE:
            continue
        env = s["environment"]
        with clean_hub_env.context() as m:
            for key, value in env.items():
                m.setenv(key, str(value))
            settings = HubSettings()
        checked += 1
        if name == "hub-migrate":
            continue
        assert settings.cluster.role == env["HUB_CLUSTER__ROLE"], name
        assert settings.cluster.workers == len(slot_workers(services)), name
        assert settings.mqtt.client_id == env.get("HUB_MQTT__CLIENT_ID", "hub-ingest"), name
        assert not settings.mqtt.embedded, name
        assert not settings.mqtt.writes_broker_accounts, name
        assert settings.store.backend == "influx", name
        if settings.cluster.standby:
            assert name in standbys(services), name
        elif settings.cluster.role == "ingest":
            assert settings.cluster.worker == int(env["HUB_CLUSTER__WORKER"]), name
    assert checked == len(services) - 1  # all but emqx


def test_emqx_keeps_every_message_queued_for_a_worker_that_is_down(
    emqx_conf: ConfigTree, services: dict[str, dict[str, Any]]
) -> None:
    hub_zone = emqx_conf.get_config("zones.hub.mqtt")
    assert hub_zone.get_string("max_mqueue_len") == "infinity"
    assert hub_zone.get_bool("mqueue_store_qos0") is False
    # At least what the hub asks for (MQTT 5 Session Expiry Interval) for clients that do not say.
    assert seconds(hub_zone.get("session_expiry_interval")) >= MqttOptions().session_expiry_s
    # The hub's Receive Maximum is the window it wants; EMQX sends min(that, max_inflight).
    assert hub_zone.get_int("max_inflight") >= MqttSettings().receive_maximum
    assert hub_zone.get_int("max_inflight") <= 65535
    # Workers share one account with their own client ids; devices get theirs replaced.
    assert hub_zone.get_bool("use_username_as_clientid") is False
    assert emqx_conf.get_bool("mqtt.use_username_as_clientid") is True
    assert emqx_conf.get_bool("zones.hub.force_shutdown.enable") is False
    assert emqx_conf.get_string("listeners.tcp.hub.zone") == "hub"
    assert emqx_conf.get_string("listeners.tcp.default.zone") == "default"
    assert emqx_conf.get_string("listeners.tcp.default.bind").endswith(":1883")
    # No subscription is shared, so no shared-subscription strategy is configured (see the doc).
    assert "broker" not in emqx_conf
    mounted = {v.split(":")[1] for v in services["emqx"]["volumes"] if v.startswith(str(ROOT))}
    assert mounted == {"/opt/emqx/etc/emqx.conf", "/opt/emqx/etc/cityhub-acl.conf"}


def test_emqx_authenticates_devices_from_postgresql_and_services_from_a_bootstrap_file(
    emqx_conf: ConfigTree, services: dict[str, dict[str, Any]]
) -> None:
    pg, builtin = emqx_conf.get_list("authentication")
    assert (pg["mechanism"], pg["backend"]) == ("password_based", "postgresql")
    assert pg["server"] == "postgres:5432"
    assert (
        pg["database"]
        == sa.make_url(services["hub-api-0"]["environment"]["HUB_REGISTRY_URL"]).database
    )
    assert pg["password"] == "from-the-environment"
    assert services["emqx"]["environment"]["CITYHUB_PG_PASSWORD"] == "change-me-postgres"
    assert dict(pg["password_hash_algorithm"]) == {
        "name": "pbkdf2",
        "mac_fun": "sha512",
        "iterations": 1,
        "dk_length": 64,
    }
    assert "${username}" in pg["query"]
    assert (builtin["backend"], builtin["user_id_type"]) == ("built_in_database", "username")
    assert builtin["bootstrap_type"] == "plain"
    command = " ".join(services["emqx"]["command"])
    assert builtin["bootstrap_file"] == ACCOUNTS_CSV
    assert f"> {ACCOUNTS_CSV};" in command
    authz = emqx_conf.get_config("authorization")
    assert authz.get_string("no_match") == "deny"
    assert authz.get_string("deny_action") == "ignore"  # PUBACK 0x87, as on Mosquitto
    pg_authz, file_authz = authz.get_list("sources")
    assert pg_authz["type"] == "postgresql"
    assert file_authz["type"] == "file"
    assert file_authz["path"] == "/opt/emqx/etc/cityhub-acl.conf"


ACL_RULE = re.compile(
    r'^\{(allow|deny), (?:\{username, "([^"]+)"\}|all), (publish|subscribe|all), \[([^\]]*)\]\}\.$'
)


def test_the_acl_file_grants_service_accounts_what_mosquitto_grants_them(
    services: dict[str, dict[str, Any]],
) -> None:
    lines = [
        line
        for line in EMQX_ACL.read_text().splitlines()
        if line.strip() and not line.startswith("%%")
    ]
    assert lines[-1] == "{deny, all}."
    granted: set[tuple[str, str, str]] = set()
    for line in lines[:-1]:
        m = ACL_RULE.match(line)
        assert m, f"not a rule this test understands: {line}"
        permission, user, action, topics = m.groups()
        assert permission == "allow"
        for topic in re.findall(r'"([^"]+)"', topics):
            granted.add((user, action, topic))
    hub_user = services["hub-ingest-0"]["environment"]["HUB_MQTT__USERNAME"]
    actions = {"read": ["subscribe"], "write": ["publish"], "readwrite": ["subscribe", "publish"]}
    wanted = {
        (user, action, topic)
        for user, acl in ((hub_user, HUB_ACL), (MqttSettings().simulator_username, SIMULATOR_ACL))
        for verb, topic in (line.split()[1:] for line in acl)
        for action in actions[verb]
    }
    assert wanted <= granted
    # Api nodes read the workers' topics under hub/ (alerts, state).
    assert (hub_user, "subscribe", "hub/#") in granted
    assert {u for u, _, _ in granted} == {hub_user, MqttSettings().simulator_username}


def test_the_emqx_container_command_writes_the_accounts_and_keeps_one_cookie(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    emqx = services["emqx"]
    sh, flag, script = emqx["command"]
    assert (sh, flag) == ("sh", "-c")
    # `config` prints '$' escaped as '$$'; the container gets one. Run it here with the paths moved
    # into tmp_path and EMQX replaced by printing the cookie it would get.
    script = script.replace("$$", "$")
    script = script.replace(ACCOUNTS_CSV, str(tmp_path / "accounts.csv"))
    script = script.replace("/opt/emqx/data", str(tmp_path))
    script = script.replace("exec /opt/emqx/bin/emqx foreground", 'printf %s "$EMQX_NODE__COOKIE"')
    env = {
        "PATH": os.environ["PATH"],
        "HUB_MQTT_PASSWORD": "hub-secret",
        "HUB_SIMULATOR_PASSWORD": "sim-secret",
        "CITYHUB_EMQX_COOKIE": "",
    }
    first = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    second = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"[0-9a-f]{48}", first.stdout), first.stdout
    assert second.stdout == first.stdout, "the cookie is kept in the data volume"
    assert (tmp_path / "accounts.csv").read_text().splitlines() == [
        "user_id,password,is_superuser",
        "hub-ingest,hub-secret,false",
        "bench-simulator,sim-secret,false",
    ]
    assert (tmp_path / "accounts.csv").stat().st_mode & 0o077 == 0
    given = subprocess.run(
        ["sh", "-c", script],
        env={**env, "CITYHUB_EMQX_COOKIE": "shared-by-every-node"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert given.stdout == "shared-by-every-node"
    assert set(emqx["environment"]) >= {"HUB_MQTT_PASSWORD", "HUB_SIMULATOR_PASSWORD"}


def emqx_sql(query: str) -> sa.TextClause:
    """An EMQX query template as SQLAlchemy text: EMQX binds ``${username}`` as a parameter too."""
    return sa.text(query.replace("${username}", ":username"))


@pytest.mark.postgres
def test_emqx_sql_reads_the_hub_s_credentials_as_mosquitto_s_files_do(
    postgres_url: str, emqx_conf: ConfigTree
) -> None:
    upgrade(postgres_url)
    registry = Registry(postgres_url)
    load_shipped(registry)
    urn = "urn:dev:mac:0024befffe804ff1"
    registry.put_devices(
        [
            Device(id="bin-00001", vendor="acme", profile="acme-bin"),
            Device(id="bin-00002", vendor="acme", profile="acme-bin"),
            Device(id=urn, vendor="hydrox", profile="hydrox-wl"),
        ]
    )
    store = CredentialStore(postgres_url)
    issued = store.issue_many([("bin-00001", "acme"), ("bin-00002", "acme"), (urn, "hydrox")])
    creds = {c.device_id: c for c in issued}
    registry.set_status("bin-00002", DeviceStatus.DECOMMISSIONED)
    pg_authn = emqx_conf.get_list("authentication")[0]
    algo = pg_authn["password_hash_algorithm"]
    authn = emqx_sql(pg_authn["query"])
    authz = emqx_sql(emqx_conf.get_list("authorization.sources")[0]["query"])

    def emqx_accepts(username: str, secret: str) -> bool | None:
        """EMQX's check: hex PBKDF2 of the secret with the row's salt; None: user not found."""
        with registry.engine.connect() as conn:
            row = conn.execute(authn, {"username": username}).mappings().first()
        if row is None:
            return None
        digest = hashlib.pbkdf2_hmac(
            algo["mac_fun"],
            secret.encode(),
            row["salt"].encode(),
            algo["iterations"],
            algo["dk_length"],
        ).hex()
        assert row["is_superuser"] is False
        return bool(digest == str(row["password_hash"]).lower())

    def topics(username: str) -> set[tuple[str, str, str]]:
        with registry.engine.connect() as conn:
            rows = conn.execute(authz, {"username": username}).mappings().all()
        return {(r["permission"], r["action"], r["topic"]) for r in rows}

    bin1 = creds["bin-00001"]
    assert emqx_accepts(bin1.username, bin1.secret) is True
    assert emqx_accepts(bin1.username, bin1.secret[:-1] + "#") is False
    assert topics(bin1.username) == {
        ("allow", "publish", "sensors/acme/bin-00001/up"),
        ("allow", "publish", "sensors/acme/bin-00001/status"),
    }
    # An id with ':' logs in as '~' and is granted its real topics.
    dev = creds[urn]
    assert "~" in dev.username
    assert emqx_accepts(dev.username, dev.secret) is True
    assert topics(dev.username) == {
        ("allow", "publish", f"sensors/hydrox/{urn}/up"),
        ("allow", "publish", f"sensors/hydrox/{urn}/status"),
    }
    # Decommissioned, revoked and unknown: not found, so EMQX asks the next authenticator (the
    # service accounts), which does not know them either; and nothing is authorized.
    bin2 = creds["bin-00002"]
    assert emqx_accepts(bin2.username, bin2.secret) is None
    assert topics(bin2.username) == set()
    assert store.revoke("bin-00001")
    assert emqx_accepts(bin1.username, bin1.secret) is None
    assert topics(bin1.username) == set()
    assert emqx_accepts("hub-ingest", "anything") is None
    # A rotated secret replaces the old one at once (EMQX reads the row at every CONNECT).
    rotated = store.issue(urn, "hydrox")  # issuing again rotates
    assert emqx_accepts(dev.username, dev.secret) is False
    assert emqx_accepts(dev.username, rotated.secret) is True
    store.dispose()
    registry.engine.dispose()
