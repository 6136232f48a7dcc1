"""What one hub process does in a cluster: ``cluster.role`` = all | ingest | api | video (issue 12).

``all`` is the one-process hub (the default, `make demo`). In a cluster the work splits:

* ``ingest`` workers run the MQTT pipeline, the rule engine, SL651 and retention, write alerts and
  publish their changes (``hub/alerts/#``) and the live state (``hub/state/#``, hub/relay.py). They
  serve the REST API, /health and /metrics, but no screens: no ``/ws/situation``, no command screen.
* ``api`` nodes serve the REST API, the websocket feed and the screens from the shared stores
  (registry, alerts: the SQL database; readings: InfluxDB), their live state and feed fed by those
  topics, so screens scale apart from ingestion. People's actions (acknowledge...) are written to the
  shared database and published like any alert change.
* ``video`` nodes run the camera registry and patrol, and publish their cameras' standing
  (``hub/state/cameras/#``) for the api nodes' screens. No other role opens a camera's stream: a
  "check now" sent to an api node is forwarded to the video node (hub/camera_commands.py); one sent
  to an ingest node is refused (hub/camera_relay.py).

Every role builds the same components (hub/app.py); the role picks which of them run (`TASKS`),
where live changes go, and which MQTT session a process keeps.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alerts.engine import RuleEngine
from alerts.rules import Rule
from hub.alerting import Alerting, now_ms
from ingest.mqtt import MessageHandler, MqttOptions, MqttTransport

RoleName = Literal["all", "ingest", "api", "video"]

ALL: frozenset[RoleName] = frozenset({"all"})
INGEST: frozenset[RoleName] = frozenset({"all", "ingest"})
SCREENS: frozenset[RoleName] = frozenset({"all", "api"})
VIDEO: frozenset[RoleName] = frozenset({"all", "video"})
EVERY: frozenset[RoleName] = frozenset({"all", "ingest", "api", "video"})

TASKS: Mapping[str, frozenset[RoleName]] = {
    "ingest.pipeline": INGEST,
    "ingest.rate_letters": INGEST,
    "ingest.sl651": INGEST,
    # One pass per ingest worker deletes the same old points: idempotent, and cheap in InfluxDB.
    "store.retention": INGEST,
    "alerts.engine": INGEST,
    "registry.watch": EVERY,
    "broker.auth": EVERY,
    # Every role may change alerts (ingest: rules; api: people's actions, reports; video: findings):
    # the process that commits a change publishes it and notifies people of it.
    "alerts.notify": EVERY,
    "feed.situation": SCREENS,
    # api: state frames and alert changes; ingest: others' alert changes, for its notifications.
    "relay.state": frozenset({"api", "ingest"}),
    "video.patrol": VIDEO,
    # The video node's camera standing for the api nodes (hub/camera_relay.py); ``all`` has its own.
    "relay.cameras": frozenset({"video"}),
    # Camera checks forwarded by api nodes (hub/camera_commands.py), done where streams are opened.
    "video.commands": frozenset({"video"}),
    # Incidents' overdue steps, warnings' expiry, duty notices and report clusters: people's work.
    # A one-process hub ticks them; in a cluster one api node at a time, the holder of the jobs
    # lease, runs both (hub/singleton_jobs.py), and its duty notices cover every node's alerts.
    "response.tick": ALL,
    "reports.tick": ALL,
    "jobs.singleton": frozenset({"api"}),
    "influx.sink": EVERY,
}
"""Which roles run each of the hub's long-running tasks (by task name, as in hub/app.py)."""

Starter = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class RolePlan:
    """The role of this process and what follows from it."""

    role: RoleName

    @property
    def ingests(self) -> bool:
        """Runs the MQTT pipeline and the rule engine."""
        return self.role in INGEST

    @property
    def screens(self) -> bool:
        """Serves the websocket feed and the command screen."""
        return self.role in SCREENS

    @property
    def relays_out(self) -> bool:
        """Publishes its live state for api nodes (an ingest worker of a cluster)."""
        return self.role == "ingest"

    @property
    def relays_in(self) -> bool:
        """Takes its live state from the ingest workers' relay (an api node)."""
        return self.role == "api"

    def runs(self, task: str) -> bool:
        """Whether this role runs ``task`` (a name of `TASKS`)."""
        return self.role in TASKS[task]

    def pick(self, tasks: Mapping[str, Starter]) -> Sequence[tuple[str, Starter]]:
        """The tasks of ``tasks`` this role runs, in order."""
        return [(name, start) for name, start in tasks.items() if self.runs(name)]


def side_client_id(client_id: str, role: RoleName) -> str:
    """A clean, per-process MQTT client id for a process that keeps no ingest session.

    Never the ingest session's id: a second client with that id would take the session over (the
    broker disconnects the first) and swallow readings the ingest worker should get.
    """
    return f"{client_id}-{role}-{socket.gethostname()}-{os.getpid()}"


def side_transport(
    options: MqttOptions,
    role: RoleName,
    subscriptions: Sequence[tuple[str, int]],
    on_message: MessageHandler,
) -> MqttTransport:
    """The MQTT link of an api or video process: publishes its alert changes, takes the relay.

    A clean session that expires when the process goes: what an api node missed while down it reads
    from the shared stores on start; nothing should queue for it at the broker.
    """
    side = MqttOptions(
        host=options.host,
        port=options.port,
        client_id=side_client_id(options.client_id, role),
        username=options.username,
        password=options.password,
        keepalive=options.keepalive,
        receive_maximum=options.receive_maximum,
        session_expiry_s=0,
        clean_start=True,
        tls_ca=options.tls_ca,
        tls_cert=options.tls_cert,
        tls_key=options.tls_key,
    )
    return MqttTransport(side, subscriptions, on_message)


class PassiveAlerting(Alerting):
    """The alerting of a process that evaluates no readings (api, video).

    It applies the condition events of what it does run (cameras, citizens' reports, incidents)
    through the same ordered applier, but its engine watches nothing: it starts empty, never reads
    or writes a rule state file (an ingest worker's, if they share a data_dir), and never reconciles
    the alert store with its (empty) conditions at start, which would clear every firing alert the
    ingest workers hold.
    """

    def _load_engine(self, rules: Sequence[Rule]) -> RuleEngine:
        return RuleEngine(self.registry, rules, now_ms)

    def _reconcile(self) -> None:
        return

    def save(self) -> None:
        """Nothing to save: the engine holds no conditions."""
        return
