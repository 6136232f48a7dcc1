"""The demo's broker: a Mosquitto process the hub writes the configuration for, starts and stops.

Why not a broker inside the Python process: the pure-Python broker amqtt 0.12.1 lost 15-27% of QoS 1
messages in every run on these machines, and a hub that loses readings in its own demo is not one anyone
should trust. Mosquitto is small, in every Linux distribution, and what the tests and docker-compose use.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from hub.errors import HubError

logger = logging.getLogger(__name__)

# max_queued_messages 0: Mosquitto's default of 1000 drops QoS 1 messages for a subscriber that falls
# behind or is down; the hub would rather spend broker memory than lose readings. max_inflight_messages
# applies to MQTT 3 clients; the hub (MQTT 5) sets its own Receive Maximum.
CONFIG_TEMPLATE = """\
# Written by the hub for its embedded broker; edit hub settings, not this file.
listener {port} {host}
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 30
persistent_client_expiration 14d
max_queued_messages 0
max_inflight_messages 0
max_packet_size 1048576
set_tcp_nodelay true
log_dest file {data}/mosquitto.log
log_type error
log_type warning
log_type notice
{user}"""


def find_mosquitto(name: str = "mosquitto") -> str | None:
    """The Mosquitto executable's path, looking in sbin too (Debian installs it there)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name):
        if candidate.exists():
            return str(candidate)
    return None


def run_as() -> str:
    """The config line that keeps Mosquitto as the current user when started as root.

    As root Mosquitto switches to the user ``mosquitto``, who cannot write the hub's data directory.
    """
    return "user root\n" if os.geteuid() == 0 else ""


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A supervised Mosquitto child process."""

    def __init__(
        self, data_dir: Path, host: str = "127.0.0.1", port: int = 1883, binary: str = "mosquitto"
    ) -> None:
        """Prepare a broker that keeps its files in ``data_dir``."""
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        """Where the generated configuration is written."""
        return self.data_dir / "mosquitto.conf"

    def start(self, timeout: float = 10.0) -> None:
        """Write the configuration, start Mosquitto and wait until it accepts connections.

        Raises:
            HubError: Mosquitto is not installed, the port is taken, or it did not come up.
        """
        exe = find_mosquitto(self.binary)
        if exe is None:
            msg = (
                "the embedded broker needs Mosquitto: install it with 'apt-get install mosquitto' "
                "(or set HUB_MQTT__EMBEDDED=false and point HUB_MQTT__HOST/PORT at your broker)"
            )
            raise HubError(msg)
        if port_open(self.host, self.port):
            msg = f"port {self.host}:{self.port} is already in use; stop what runs there or set HUB_MQTT__PORT"
            raise HubError(msg)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG_TEMPLATE.format(
                host=self.host, port=self.port, data=self.data_dir.resolve(), user=run_as()
            )
        )
        self.process = subprocess.Popen(  # noqa: S603 - fixed executable, our own config
            [exe, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                msg = f"mosquitto exited at start (code {self.process.returncode}): {err.strip()}"
                raise HubError(msg)
            if port_open(self.host, self.port):
                logger.info(
                    "embedded broker (mosquitto pid %s) on %s:%s",
                    self.process.pid,
                    self.host,
                    self.port,
                )
                return
            time.sleep(0.05)
        self.stop()
        msg = f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout} s"
        raise HubError(msg)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Mosquitto (it saves its persistent sessions on SIGTERM)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
