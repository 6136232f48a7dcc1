"""The demo's broker: a Mosquitto process the hub writes the configuration for, starts and stops.

Why not a broker inside the Python process: the pure-Python broker amqtt 0.12.1 lost 15-27% of QoS 1
messages in every run on these machines, and a hub that loses readings in its own demo is not one anyone
should trust. Mosquitto is small, in every Linux distribution, and what the tests and docker-compose use.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from hub.errors import HubError

logger = logging.getLogger(__name__)

# max_queued_messages: Mosquitto's default of 1000 drops QoS 1 messages for a subscriber that falls
# behind or is down; the hub would rather spend broker memory than lose readings. The limit is INT_MAX,
# not 0 ("no maximum"): Mosquitto 2.0.11 with 0 disconnects a client right after refusing one of its
# publishes (PUBACK 0x87, then "Bad socket read/write ... Unknown error": its quota check treats 0 as
# full, the check eclipse-mosquitto/mosquitto#3244 fixed in 2.0.22), so one device writing a wrong topic
# would lose its connection. max_inflight_messages applies to MQTT 3 clients; the hub (MQTT 5) sets its
# own Receive Maximum.
CONFIG_TEMPLATE = """\
# Written by the hub for its embedded broker; edit hub settings, not this file.
listener {port} {host}
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 30
persistent_client_expiration 14d
max_queued_messages 2147483647
max_inflight_messages 0
max_packet_size 1048576
set_tcp_nodelay true
log_dest file {data}/mosquitto.log
log_type error
log_type warning
log_type notice
{user}"""

# With auth on, this replaces CONFIG_TEMPLATE's "allow_anonymous true" line (the template keeps its
# placeholders, which bench/_broker.py fills for its anonymous broker). use_username_as_clientid: without
# it any device could connect with the hub's client id and take over the hub's persistent session (tried
# on 2.0.11: "Client hub-ingest already connected, closing old connection", then the device owned the
# session); with it, a client can only ever replace its own account's connection. log_type information:
# reload() learns that Mosquitto has reloaded from its "Reloading config." line.
AUTH_CONFIG = """\
allow_anonymous false
password_file {password_file}
acl_file {acl_file}
use_username_as_clientid true
log_type information
"""

_RELOADED = b"Reloading config."


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
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 1883,
        binary: str = "mosquitto",
        *,
        auth: bool = False,
    ) -> None:
        """Prepare a broker that keeps its files in ``data_dir``.

        Args:
            data_dir: configuration, persistence, log, and with ``auth`` the password and ACL files.
            host: listen address.
            port: listen port.
            binary: Mosquitto executable (looked up in PATH and sbin).
            auth: refuse anonymous clients and check every client against `password_path` and
                `acl_path`, which must be written (``hub.broker_auth``) before `start`.
        """
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.binary = binary
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        """Where the generated configuration is written."""
        return self.data_dir / "mosquitto.conf"

    @property
    def password_path(self) -> Path:
        """The password file Mosquitto reads with auth on (usernames and ``$7$`` hashes)."""
        return self.data_dir / "passwd"

    @property
    def acl_path(self) -> Path:
        """The ACL file Mosquitto reads with auth on."""
        return self.data_dir / "acl"

    @property
    def log_path(self) -> Path:
        """Mosquitto's own log."""
        return self.data_dir / "mosquitto.log"

    def config_text(self) -> str:
        """The configuration this broker runs with."""
        data = self.data_dir.resolve()
        text = CONFIG_TEMPLATE.format(host=self.host, port=self.port, data=data, user=run_as())
        if self.auth:
            auth = AUTH_CONFIG.format(
                password_file=data / self.password_path.name, acl_file=data / self.acl_path.name
            )
            text = text.replace("allow_anonymous true\n", auth, 1)
        return text

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
        if self.auth and not (self.password_path.exists() and self.acl_path.exists()):
            msg = (
                f"the embedded broker's password and ACL files are missing in {self.data_dir}: "
                "write them (hub.broker_auth) before starting it with auth on"
            )
            raise HubError(msg)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
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

    def reload(self, timeout: float = 5.0) -> bool:
        """Make Mosquitto re-read its password and ACL files (SIGHUP); True once it has.

        Mosquitto handles the signal in its main loop, 25-100 ms later on 2.0.11, so a client that
        connects right after the signal may still be checked against the old files: this waits for
        the log line Mosquitto writes when it reloads. On reload 2.0.11 also re-checks every connected
        client and disconnects those whose username is gone or whose password no longer matches
        (revoked, rotated or decommissioned devices); clients whose entry is unchanged stay connected.

        Returns:
            False when the broker is not running or did not confirm within ``timeout``.
        """
        proc = self.process
        if proc is None or proc.poll() is not None:
            return False
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._logged_since(offset, _RELOADED):
                return True
            time.sleep(0.01)
        logger.warning("mosquitto did not confirm a reload within %s s", timeout)
        return False

    def _logged_since(self, offset: int, needle: bytes) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return needle in log.read()
        except FileNotFoundError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Mosquitto (it saves its persistent sessions on SIGTERM)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()  # the pipe kept for start-up errors
