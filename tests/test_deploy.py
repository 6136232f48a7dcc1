"""docker-compose.yml, the hub's Dockerfile and the deploy/ files, checked without a Docker daemon.

``docker-compose config`` (Debian's docker-compose 1.29, which validates against the Compose file
schema it ships and needs no daemon) must accept the file with ``.env.example`` and refuse it when a
secret is missing. Nothing here starts a container: no Docker daemon runs on these machines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.embedded_broker import AUTH_CONFIG

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not Path(COMPOSE).exists():
        pytest.fail("docker-compose is not installed: run scripts/ensure-system-packages test")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(ROOT))}
    return subprocess.run(
        [
            COMPOSE,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "docker-compose.yml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    r = compose(ROOT / ".env.example", "config")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = yaml.safe_load(r.stdout)
    return data


def test_compose_file_is_valid_with_the_example_env(resolved: dict[str, Any]) -> None:
    # The "cluster" profile's services are checked in tests/deploy/test_compose_cluster.py.
    default = {
        name: service
        for name, service in resolved["services"].items()
        if "cluster" not in service.get("profiles", [])
    }
    assert set(default) == {
        "hub",
        "mosquitto",
        "influxdb",
        "postgres",
        "grafana",
        "simulator",
    }
    hub = resolved["services"]["hub"]
    env = hub["environment"]
    assert env["HUB_STORE__BACKEND"] == "influx"
    assert env["HUB_STORE__INFLUX__URL"] == "http://influxdb:8086"
    assert env["HUB_MQTT__EMBEDDED"] == "false"
    assert env["HUB_MQTT__AUTH_DIR"] == "/auth"
    assert env["HUB_STORE__INFLUX__TOKEN"] == "change-me-influx-admin-token"  # from .env.example
    assert "build" in hub
    assert set(resolved["volumes"]) >= {
        "hub-data",
        "broker-auth",
        "influxdb-data",
        "postgres-data",
        "grafana-data",
    }
    for name, service in default.items():
        assert name in {"hub", "simulator"} or "healthcheck" in service, name


def test_every_secret_comes_from_the_env_file(tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text()
    for secret in (
        "HUB_MQTT_PASSWORD",
        "INFLUXDB_ADMIN_TOKEN",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        env = tmp_path / f"without-{secret}.env"
        env.write_text(
            "\n".join(line for line in example.splitlines() if not line.startswith(secret + "="))
        )
        r = compose(env, "config", "-q")
        assert r.returncode != 0, secret
        assert secret in r.stderr, (secret, r.stderr)
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"(PASSWORD|TOKEN): (?!\$\{)", text), (
        "a secret is written into the compose file"
    )
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_hub_image_runs_unprivileged_with_a_health_check() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", docker, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(
        r"--uid 1883", docker
    )  # Mosquitto's uid: it reads the 0600 files the hub writes
    health = re.search(r"^HEALTHCHECK .*?CMD (.+)$", docker, re.MULTILINE | re.DOTALL)
    assert health
    assert "/healthz" in health.group(1)
    assert re.search(r'^CMD \["hub", "run"\]', docker, re.MULTILINE)


def test_mosquitto_gets_the_hub_s_auth_set_up() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    wanted = AUTH_CONFIG.format(password_file="/auth/passwd", acl_file="/auth/acl").splitlines()
    assert all(line in conf for line in wanted), set(wanted) - set(conf)
    assert "max_queued_messages 2147483647" in conf


def test_the_influxdb_init_script_is_valid_shell() -> None:
    r = subprocess.run(
        ["sh", "-n", str(ROOT / "deploy/influxdb/init.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    flux = (ROOT / "deploy/influxdb/readings_1m.flux").read_text()
    assert 'to(bucket: "cityhub/rollup")' in flux
    assert '"readings_1m"' in flux
