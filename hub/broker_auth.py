"""Broker access control kept in step with the registry: Mosquitto's password and ACL files, regenerated whole.

**Mechanism.** Every device's account is ``{vendor}/{device_id}`` (``devices.credentials``), so the ACL
file is static but for the hub's two service accounts::

    pattern write sensors/%u/up
    pattern write sensors/%u/status

and nothing else is granted to a device: it can publish its telemetry and its status (also as its last
will), read nothing, and a publish anywhere else is refused (MQTT 5, QoS 1: PUBACK 0x87 Not authorized;
the message is dropped). The password file holds one line per credential that the store has not revoked
*and* whose device the registry holds as active with the same vendor, so decommissioning a device or moving
it to another vendor takes its access away with no extra step. `BrokerAuthSync.sync` renders both files
from the database alone, replaces them by atomic rename (a reader sees the old file or the new one, never
half of one), and makes the broker reload. Nothing lives only in the broker: after a lost data directory or
a restart, one `sync` restores exactly the same access.

**Why not the dynamic-security plugin** (tried on Mosquitto 2.0.11 here): its ACLs do not substitute
``%u`` (``sensors/%u/up`` in a role denied the device its own topic), so 100,000 devices would need
100,000 roles; SIGHUP does not reload its JSON file, the plugin owns and rewrites that file, so the hub
could not regenerate state, only replay ``$CONTROL`` commands and diff. It does kick a deleted client at
once, which the password file gets from the reload (below).

**Measured here** (Mosquitto 2.0.11, 2 cores). With 10,000 device accounts one `sync` (query, render,
write, SIGHUP, wait for the reload) takes 80-150 ms; the broker itself stalls 20-60 ms with no client
connected and 70-95 ms with 9,000 connected, because on reload it re-verifies every connected client's
password (at ``mosquitto_passwd``'s 101 PBKDF2 iterations 5,000 connected clients stalled it 500-650 ms:
one reason device hashes use one iteration, see ``devices.credentials``). With 100,000 accounts (a 12.7 MB
password file) a `sync` takes 0.8-1.0 s and the broker stalls 220-290 ms. Mosquitto handles SIGHUP in its
main loop 25-100 ms after the signal; `EmbeddedBroker.reload` waits for its "Reloading config." line.

**Revocation of a live connection.** Mosquitto 2.0.11 re-checks every connected client on reload and
disconnects those whose username is no longer in the password file or whose password no longer matches
(verified: a revoked and a rotated device were both disconnected within the reload, "Client ...
disconnected."; an unchanged device stayed connected). So revoke, rotate and decommission cut existing
connections as soon as the sync after them has reloaded the broker (the hub checks every second).
A refused publish does not disconnect (PUBACK 0x87 and the connection stays), provided
``max_queued_messages`` is not 0 on Mosquitto before 2.0.22 (see `hub.embedded_broker.CONFIG_TEMPLATE`).
A forbidden last-will topic is accepted at CONNECT but never published.

**External Mosquitto (docker-compose).** Set ``HUB_MQTT__EMBEDDED=false`` and ``HUB_MQTT__AUTH_DIR`` to a
volume shared with the broker; the hub writes ``acl`` then ``passwd`` there (mode 0600: run both
containers as the same uid, e.g. ``user: "1883:1883"`` on the hub). The broker's config is
`hub.embedded_broker.AUTH_CONFIG` (``allow_anonymous false``, ``password_file /auth/passwd``,
``acl_file /auth/acl``, ``use_username_as_clientid true``). The hub cannot signal another container, so the
broker container reloads itself when ``passwd`` changes::

    mosquitto:
      image: eclipse-mosquitto:2
      volumes: ["broker-auth:/auth:ro", "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro"]
      command: >-
        sh -c 'until [ -f /auth/passwd ]; do sleep 1; done;
        mosquitto -c /mosquitto/config/mosquitto.conf & pid=$$!; touch /tmp/loaded;
        while sleep 2; do [ /auth/passwd -nt /tmp/loaded ] && touch /tmp/loaded && kill -HUP $$pid;
        done'

**EMQX** (city scale). Authentication: the built-in database, ``user_id_type = username``,
``password_hash_algorithm {name = pbkdf2, mac_fun = sha512, iterations = 1, dk_length = 64}``; import each
device as ``user_id`` = username, ``salt`` = the 12-character salt, ``password_hash`` = the digest in hex
(`emqx_user` converts a stored hash), through the dashboard's or REST API's user import; service accounts
(101 iterations) go in a second authenticator. Authorization: a file source with
``{allow, all, publish, ["sensors/${username}/up", "sensors/${username}/status"]}``, the service accounts'
rules by ``{user, ...}``, explicit rules for usernames with '~' (below), and ``no_match = deny``; set
``mqtt.use_username_as_clientid = true`` for the same session protection. Alternatively EMQX's HTTP
authenticator can ask the hub (`devices.credentials.CredentialStore.verify`); no such route exists yet.

Device ids with ':' (``urn:dev:mac:...``) are written with '~' in usernames, because Mosquitto splits a
password line at ':'; the ``%u`` pattern then names no real topic, so such devices get explicit
``user``/``topic`` lines in the ACL file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devices.credentials import (
    COLON_IN_USERNAME,
    PASSWORD_ITERATIONS,
    ActiveCredential,
    CredentialStore,
    Pbkdf2Hash,
    hash_secret,
)
from devices.registry import Registry
from hub.embedded_broker import EmbeddedBroker
from hub.errors import HubError
from hub.settings import HubSettings

logger = logging.getLogger(__name__)

DEVICE_ACL = (
    "# Every device ({vendor}/{device_id}): its own telemetry and status topics, and nothing to read.\n"
    "pattern write sensors/%u/up\n"
    "pattern write sensors/%u/status\n"
)
HUB_ACL = ("topic read sensors/#", "topic readwrite hub/#")
"""The hub reads every device topic and publishes its own (``hub/alerts/...``, ``hub/state/...``);
api nodes and ingest workers of a cluster also read them (hub/relay.py)."""
SIMULATOR_ACL = ("topic write sensors/#",)
"""The simulator and load generators speak for every device, so they may write any device topic."""
ACCOUNTS_FILE = "mqtt-accounts.json"

# Service account names: no '/' (so they can never be a device's {vendor}/{id}), nothing Mosquitto's
# files or topic patterns treat specially.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A broker account that is not a device: who, its password, and its ACL lines."""

    username: str
    password: str = field(repr=False)
    acl: tuple[str, ...]

    def __post_init__(self) -> None:
        """Refuse a name that could collide with a device account or break the broker's files."""
        if not _SERVICE_NAME.match(self.username):
            msg = f"broker account name {self.username!r} must be 1-64 letters, digits, '_', '.' or '-'"
            raise HubError(msg)


@dataclass(frozen=True, slots=True)
class ServiceAccounts:
    """The hub's own ingest account and the simulator/bench account."""

    hub: ServiceAccount
    simulator: ServiceAccount

    @property
    def all(self) -> tuple[ServiceAccount, ...]:
        """Both accounts."""
        return (self.hub, self.simulator)

    @classmethod
    def for_settings(cls, settings: HubSettings) -> ServiceAccounts:
        """The accounts of these settings; passwords not given are generated once and kept.

        Generated passwords live in ``data_dir/mqtt-accounts.json`` (mode 0600), so `hub demo`'s
        simulator, a restarted hub and the broker's password file agree.

        Raises:
            HubError: the two accounts have the same name, or a name is not usable.
        """
        mq = settings.mqtt
        hub_name = mq.username or mq.client_id
        if hub_name == mq.simulator_username:
            msg = f"the hub and the simulator need different broker accounts, both are {hub_name!r}"
            raise HubError(msg)
        given = {
            hub_name: mq.password.get_secret_value() if mq.password else None,
            mq.simulator_username: (
                mq.simulator_password.get_secret_value() if mq.simulator_password else None
            ),
        }
        kept = _kept_passwords(
            settings.data_dir / ACCOUNTS_FILE, [n for n, p in given.items() if p is None]
        )
        password = {n: p if p is not None else kept[n] for n, p in given.items()}
        return cls(
            hub=ServiceAccount(hub_name, password[hub_name], HUB_ACL),
            simulator=ServiceAccount(
                mq.simulator_username, password[mq.simulator_username], SIMULATOR_ACL
            ),
        )


def _kept_passwords(path: Path, names: Sequence[str]) -> dict[str, str]:
    """Passwords of ``names`` from ``path``, generating (and saving) those it lacks."""
    kept: dict[str, str] = {}
    if path.exists():
        kept = {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    missing = [n for n in names if n not in kept]
    if missing:
        kept.update({n: secrets.token_urlsafe(24) for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(kept, indent=2, sort_keys=True) + "\n")
        logger.info("generated broker passwords for %s in %s", ", ".join(missing), path)
    return kept


def managed_broker_auth(
    settings: HubSettings,
    registry: Registry,
    store: CredentialStore,
    broker: EmbeddedBroker | None,
) -> tuple[BrokerAuthSync, ServiceAccounts] | None:
    """The sync for the broker whose accounts this hub writes, with its service accounts, or None.

    The embedded broker's files sit in its data directory and it is reloaded by signal; an external
    broker's sit in ``mqtt.auth_dir``, which it watches itself (see the module docstring).
    """
    mq = settings.mqtt
    if not mq.writes_broker_accounts:
        return None
    reload: Callable[[], bool] | None = None
    if broker is not None:
        paths = (broker.password_path, broker.acl_path)
        reload = broker.reload
    elif mq.auth_dir is not None:
        paths = (mq.auth_dir / "passwd", mq.auth_dir / "acl")
    else:
        return None
    accounts = ServiceAccounts.for_settings(settings)
    sync = BrokerAuthSync(store, registry, paths[0], paths[1], accounts.all, reload=reload)
    return sync, accounts


def simulator_login(settings: HubSettings) -> tuple[str | None, str | None]:
    """The simulator's (username, password) for the hub's broker, or (None, None) when it is anonymous."""
    if not settings.mqtt.writes_broker_accounts:
        return None, None
    sim = ServiceAccounts.for_settings(settings).simulator
    return sim.username, sim.password


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never a mix.

    The temporary file is created with ``mode`` (never world-readable in between), flushed to disk,
    then renamed over the old one in the same directory.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_password_file(
    devices: Sequence[ActiveCredential], services: Sequence[tuple[str, str]]
) -> str:
    """Mosquitto's password file: ``username:$7$...`` for each service ``(username, hash)`` and device."""
    lines = [f"{name}:{hashed}" for name, hashed in services]
    lines += [f"{d.username}:{d.password_hash}" for d in devices]
    return "\n".join(lines) + "\n"


def render_acl_file(devices: Sequence[ActiveCredential], services: Sequence[ServiceAccount]) -> str:
    """Mosquitto's ACL file: the device patterns, the service accounts, and devices whose ids hold ':'."""
    parts = [
        "# Written by the hub (hub/broker_auth.py); regenerated from its database.\n",
        DEVICE_ACL,
    ]
    parts.extend(
        f"\nuser {account.username}\n" + "".join(f"{line}\n" for line in account.acl)
        for account in services
    )
    parts.extend(
        f"\nuser {d.username}\n"
        f"topic write sensors/{d.vendor}/{d.device_id}/up\n"
        f"topic write sensors/{d.vendor}/{d.device_id}/status\n"
        for d in devices
        if COLON_IN_USERNAME in d.username
    )
    return "".join(parts)


def emqx_user(credential: ActiveCredential) -> dict[str, object]:
    """A device credential as an EMQX built-in-database user (pbkdf2, sha512, 1 iteration, 64 bytes)."""
    parsed = Pbkdf2Hash.parse(credential.password_hash)
    return {
        "user_id": credential.username,
        "password_hash": parsed.digest.hex(),
        "salt": parsed.salt.decode("ascii"),
        "is_superuser": False,
    }


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one regeneration did."""

    devices: int  # device accounts written
    left_out: (
        int  # active credentials of devices the registry does not hold as active with that vendor
    )
    changed: bool  # the files differed from what was there
    reloaded: bool  # the broker confirmed it re-read them
    elapsed_ms: float


class BrokerAuthSync:
    """Writes the broker's password and ACL files from the credential store and the registry."""

    def __init__(
        self,
        store: CredentialStore,
        registry: Registry,
        password_path: Path,
        acl_path: Path,
        services: Sequence[ServiceAccount],
        *,
        reload: Callable[[], bool] | None = None,
    ) -> None:
        """Prepare; nothing is written until `sync`.

        Args:
            store: the device credentials.
            registry: which devices are active, and their vendors (its in-memory view; the hub
                refreshes it from the database).
            password_path: Mosquitto's ``password_file``.
            acl_path: Mosquitto's ``acl_file``.
            services: accounts that are not devices.
            reload: makes the broker re-read the files, True once it has (None: the broker reloads
                by itself, e.g. an external one watching the files).
        """
        self.store = store
        self.registry = registry
        self.password_path = password_path
        self.acl_path = acl_path
        self.services = tuple(services)
        self._reload = reload
        # Hashed once: the password file is then byte-identical from one sync to the next unless a
        # credential or a device changed, and an unchanged file needs no reload.
        self._service_hashes = [
            (a.username, hash_secret(a.password, PASSWORD_ITERATIONS)) for a in self.services
        ]
        self._lock = threading.Lock()
        self._synced: tuple[int, int] | None = None
        self._reload_pending = False

    def _allowed(
        self, credentials: Sequence[ActiveCredential]
    ) -> tuple[list[ActiveCredential], int]:
        devices = self.registry.interner.devices
        kept = []
        for c in credentials:
            entry = devices.get(c.device_id)
            if entry is not None and entry.active and entry.vendor == c.vendor:
                kept.append(c)
        return kept, len(credentials) - len(kept)

    def sync(self, *, reload: bool = True) -> SyncResult:
        """Regenerate both files from the database, replace them atomically, and reload the broker.

        Files whose content would not change are left alone, and the broker is reloaded only when
        one changed (a reload re-verifies every connected client, which costs broker time) or an
        earlier reload was not confirmed.

        Args:
            reload: False before the broker starts (it reads the files when it starts).
        """
        with self._lock:
            started = time.perf_counter()
            fingerprint = (self.store.generation(), self.registry.version)
            devices, left_out = self._allowed(self.store.all_active())
            acl = render_acl_file(devices, self.services)
            passwords = render_password_file(devices, self._service_hashes)
            # ACL first: an external broker watching the password file reloads when it changes.
            changed = _replace_if_different(self.acl_path, acl)
            changed = _replace_if_different(self.password_path, passwords) or changed
            reloaded = False
            if reload and self._reload is not None and (changed or self._reload_pending):
                reloaded = self._reload()
                self._reload_pending = not reloaded
            self._synced = fingerprint
            result = SyncResult(
                devices=len(devices),
                left_out=left_out,
                changed=changed,
                reloaded=reloaded,
                elapsed_ms=(time.perf_counter() - started) * 1000,
            )
        if changed:
            logger.info(
                "broker accounts: %s devices (%s credentials of inactive or unknown devices left out), "
                "reloaded: %s, %.0f ms",
                result.devices,
                result.left_out,
                result.reloaded,
                result.elapsed_ms,
            )
        return result

    def sync_if_changed(self) -> SyncResult | None:
        """`sync` if credentials or the registry changed since the last one (one cheap query if not).

        Also retries a reload the broker did not confirm.
        """
        if not self._reload_pending and self._synced == (
            self.store.generation(),
            self.registry.version,
        ):
            return None
        return self.sync()


def _replace_if_different(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)
    return True
