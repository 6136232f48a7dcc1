"""One settings model for the whole hub: `HUB_` environment variables or a TOML file; every default runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from alerts.citizen_settings import CitizenReportSettings
from alerts.notify import NotifySettings
from alerts.response_settings import ResponseSettings
from alerts.store import AlertPolicy
from ingest.sl651.settings import Sl651Settings
from ingest.store.influxconf import InfluxSettings
from video.settings import VideoSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    """The broker the hub consumes from."""

    host: str = Field("127.0.0.1", title="Broker host")
    port: int = Field(1883, title="Broker port", ge=1, le=65535)
    client_id: str = Field("hub-ingest", title="Client id of the hub's persistent session")
    username: str | None = Field(
        None,
        title="Username for the hub's own connection",
        description="When the hub writes the broker's accounts and this is unset, the hub's account "
        "is named like client_id, with a password generated into data_dir/mqtt-accounts.json",
    )
    password: SecretStr | None = Field(None, title="Password for the hub's own connection")
    tls_ca_file: Path | None = Field(
        None,
        title="CA certificate to verify the broker with; set, the hub connects over TLS",
        description="PEM; the broker's certificate must name host (README: TLS)",
    )
    tls_certfile: Path | None = Field(None, title="Client certificate (PEM) for mutual TLS")
    tls_keyfile: Path | None = Field(None, title="Client certificate's private key (PEM)")
    receive_maximum: int = Field(
        10_000,
        ge=1,
        le=65535,
        title="Unacknowledged messages the broker may send at once",
        description="MQTT 5 Receive Maximum: the back-pressure bound on messages in flight",
    )
    embedded: bool = Field(
        True,
        title="Start and supervise a Mosquitto broker",
        description="The hub runs Mosquitto as its child process on host:port with a config it writes",
    )
    mosquitto_bin: str = Field("mosquitto", title="Mosquitto executable for the embedded broker")
    auth: bool = Field(
        True,
        title="Per-device credentials on the embedded broker",
        description="Refuse anonymous clients; each device may write only its own topics "
        "(hub.broker_auth). False: anonymous access to everything, as before",
    )
    auth_dir: Path | None = Field(
        None,
        title="Where to write password and ACL files for an external Mosquitto",
        description="With embedded=false: the hub keeps 'passwd' and 'acl' here in step with the "
        "registry (a volume shared with the broker, which reloads them; see hub/broker_auth.py)",
    )
    simulator_username: str = Field(
        "bench-simulator",
        title="Broker account of the demo simulator and load benchmarks",
        description="May write every sensors/# topic; never give it to a device",
    )
    simulator_password: SecretStr | None = Field(
        None,
        title="Password of the simulator account",
        description="Default: generated once and kept in data_dir/mqtt-accounts.json (mode 0600)",
    )

    @model_validator(mode="after")
    def _user_needs_password(self) -> MqttSettings:
        if self.username is not None and self.password is None:
            msg = "mqtt.password must be set when mqtt.username is set"
            raise ValueError(msg)
        return self

    @property
    def writes_broker_accounts(self) -> bool:
        """Whether the hub writes the broker's password and ACL files (embedded with auth, or auth_dir)."""
        return (self.embedded and self.auth) or (not self.embedded and self.auth_dir is not None)


class StoreSettings(_Section):
    """The time-series store."""

    backend: Literal["file", "influx"] = Field(
        "file",
        title="Backend",
        description="'file': embedded DuckDB in data_dir; 'influx': InfluxDB 1.x/2.x/3.x (store.influx)",
    )
    path: str = Field("readings.duckdb", title="Store file, relative to data_dir")
    retention_days: float = Field(400, gt=0, title="Days of readings kept")
    memory_mb: int = Field(
        64,
        ge=16,
        title="Memory the embedded store may cache (MB; DuckDB's memory_limit)",
        description="DuckDB keeps the blocks it wrote or read until it reaches this limit, so a "
        "hub's memory grows with the readings stored up to it; the operating system's page cache "
        "holds the file too. 64 MB kept a 100,000-device hub under 300 MB (bench/report.py)",
    )
    spool: str | None = Field(
        "spool",
        title="Store-outage spool directory, relative to data_dir",
        description="readings the store refuses wait here (acknowledged) and are written after it "
        "recovers (ingest/spool.py); put it on another disk than the store; null: no spool, "
        "a store outage holds acknowledgements back at once",
    )
    spool_max_mb: float = Field(
        512,
        gt=0,
        title="Spool size limit (MB)",
        description="when full, the hub stops acknowledging and the broker keeps the messages",
    )
    influx: InfluxSettings = Field(
        default_factory=InfluxSettings, title="InfluxDB (backend influx)"
    )


class IngestSettings(_Section):
    """Decoding and normalisation."""

    site_zone: str = Field("Asia/Shanghai", title="Zone for device times without a zone")
    max_payload_bytes: int = Field(256 * 1024, gt=0, title="Largest accepted payload")
    skew_flag_s: float = Field(300, gt=0, title="Readings this far ahead are flagged CLOCK_SKEW")
    max_future_s: float = Field(86_400, gt=0, title="Readings this far ahead are rejected")
    skew_behind_s: float = Field(
        3600,
        gt=0,
        title="A device whose newest reading lags this far, steadily, is flagged CLOCK_SKEW",
        description="a backlog (lag shrinking message to message) is not flagged (ingest/skew.py)",
    )
    skew_confirm_s: float = Field(
        20, gt=0, title="Wall time over which a steady lag confirms a clock behind"
    )
    rate_limit_factor: float = Field(
        0,
        ge=0,
        title="Rate limit: multiple of a profile's expected report rate a device may send (0: off)",
        description="10 is a good production value; simulators that compress time (hub demo, "
        "bench loads) report far above their profiles' rates and need 0 (ingest/ratelimit.py)",
    )
    rate_limit_window_intervals: float = Field(
        10, gt=0, title="Rate limit window, in expected report intervals of the device's profile"
    )
    flush_interval_s: float = Field(
        0.01,
        gt=0,
        le=5,
        title="How often decoded readings are stored (and rules and screens see them)",
    )
    store_write_interval_s: float = Field(
        0.05,
        ge=0,
        le=5,
        title="Shortest time between two writes to the time-series store",
        description="readings taken meanwhile go together in the next write; rules and screens "
        "see them at once, only their MQTT acknowledgements wait. Every write costs a commit "
        "(about a millisecond of CPU in the embedded store), so 0 (a write per flush) costs up to "
        "a tenth of a core at any load (ingest/pipeline.py)",
    )
    decode_workers: int = Field(
        0,
        ge=0,
        le=64,
        title="Processes that decode payloads (0: the MQTT thread decodes)",
        description="for gateways' batched payloads on a machine with cores to spare: each worker "
        "decodes on a core of its own (about 95 MB each for 100,000 devices) and readings reach "
        "rules and screens a flush interval or two later (ingest/decodepool.py)",
    )


class RulesSettings(_Section):
    """Where alert rules come from and how the engine runs."""

    shipped: bool = Field(
        True,
        title="Load the shipped rules",
        description="alerts/data/rules.yaml, for the shipped device types",
    )
    paths: tuple[Path, ...] = Field(
        (),
        title="The city's rule files",
        description="YAML files, or directories of them, read at start and by POST /api/v1/rules/reload",
    )
    tick_s: float = Field(
        1.0, gt=0, le=60, title="How often time-driven rules run (offline, for, sums)"
    )
    save_s: float = Field(10.0, gt=0, title="How often the engine's state is saved")
    state_file: str = Field("rule-state.npz", title="Engine state file, relative to data_dir")


class HttpSettings(_Section):
    """The HTTP API and command screen."""

    host: str = Field("127.0.0.1", title="Listen address")
    port: int = Field(8000, ge=1, le=65535, title="Listen port")
    tls_certfile: Path | None = Field(
        None,
        title="Certificate chain (PEM); set, `hub run` serves HTTPS and WSS only",
        description="or terminate TLS at a reverse proxy and keep the hub on loopback",
    )
    tls_keyfile: Path | None = Field(None, title="The certificate's private key (PEM)")
    tile_url: str | None = Field(
        None,
        title="Base-map tiles for the command screen",
        description="An XYZ template such as http://tiles.local/{z}/{x}/{y}.png (a tile server "
        "inside the machine room); unset: the screen draws area outlines only, offline",
    )
    tile_attribution: str = Field("", title="Credit line drawn under the tiles")


class FeedSettings(_Section):
    """The situation feed at ``/ws/situation`` (settings section ``feed``)."""

    interval_ms: int = Field(
        50,
        ge=10,
        le=10_000,
        title="Shortest time between two delta frames of one stream",
        description="Readings within it are coalesced to the latest per series; a quiet stream "
        "sends the next change at once. 50 ms keeps publish-to-screen under 100 ms at p99 on an "
        "unloaded machine (bench/feed.py); 100 ms halves the frames each screen costs",
    )
    replay_frames: int = Field(
        300,
        ge=0,
        le=100_000,
        title="Frames kept per stream for screens reconnecting with since",
        description="Older since: the screen gets a fresh snapshot",
    )
    max_client_queue: int = Field(
        50,
        ge=2,
        le=100_000,
        title="Frames waiting for one screen before it is closed as too slow (4408)",
        description="Frames queue only while the screen's socket is full; a few behind are sent "
        "as they are, more are merged into one",
    )


class ClusterSettings(_Section):
    """Several hub processes on one broker and shared stores (README: Scale-out, docs/scaleout.md)."""

    role: Literal["all", "ingest", "api", "video"] = Field(
        "all",
        title="What this process does",
        description="all: everything (one process); ingest: readings, rules and alert events; "
        "api: HTTP, websocket feed and screens from the shared stores and MQTT; video: cameras",
    )
    workers: int = Field(
        1, ge=1, le=1024, title="Ingest workers in the cluster (slots 0 .. workers-1)"
    )
    worker: int = Field(0, ge=0, title="This ingest worker's slot")
    standby: bool = Field(
        False,
        title="Wait for any slot whose process is gone, then run it (cluster.worker is ignored)",
        description="A slot is held by one process at a time (a lease in the shared database, "
        "hub/slot_lease.py); a standby takes over the slot of a worker that died, with its broker "
        "session and its rule state (rules.state_file must then be on storage both can read)",
    )
    partitions: int = Field(
        64,
        ge=1,
        le=4096,
        title="Device partitions (fixed for the life of a deployment)",
        description="A device's partition comes from its district (or its id); slot k owns the "
        "partitions p with p % workers == k. Keep it a multiple of any worker count you may run",
    )

    @model_validator(mode="after")
    def _slot_in_range(self) -> ClusterSettings:
        if self.worker >= self.workers:
            msg = f"cluster.worker {self.worker} must be below cluster.workers {self.workers}"
            raise ValueError(msg)
        return self


class HubSettings(BaseSettings):
    """Everything the hub can be told. Nested fields: ``HUB_MQTT__PORT=1884``; file: ``HUB_CONFIG=hub.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Field(Path("data"), title="Where the hub keeps its files")
    registry_url: str | None = Field(
        None, title="SQLAlchemy URL of the registry", description="Default: SQLite file in data_dir"
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    alert_policy: AlertPolicy = Field(default_factory=AlertPolicy)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    response: ResponseSettings = Field(default_factory=ResponseSettings)
    reports: CitizenReportSettings = Field(default_factory=CitizenReportSettings)
    sl651: Sl651Settings = Field(default_factory=Sl651Settings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment, then the TOML file named by ``HUB_CONFIG``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = os.environ.get("HUB_CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @model_validator(mode="after")
    def _cluster_needs_a_shared_broker(self) -> HubSettings:
        # Each node starting its own Mosquitto would give each its own, unconnected, city.
        clustered = self.cluster.role != "all" or self.cluster.workers > 1
        if clustered and self.mqtt.embedded:
            msg = (
                "a cluster node (cluster.role other than 'all', or cluster.workers above 1) needs "
                "the shared broker: set mqtt.embedded = false (HUB_MQTT__EMBEDDED=false)"
            )
            raise ValueError(msg)
        if clustered and self.mqtt.writes_broker_accounts:
            # Mosquitto with the hub's password files runs ``use_username_as_clientid``: every node
            # on the hub's account would get the same client id, and each connection would close
            # the last one's (the ingest sessions taking each other over, readings going astray).
            msg = (
                "a cluster node cannot use a broker whose accounts the hub writes (mqtt.auth_dir): "
                "Mosquitto gives every connection of one account the same client id, so the nodes "
                "would disconnect each other. Run the cluster on EMQX, whose hub listener keeps "
                "client ids (docker compose --profile cluster, docs/scaleout.md)"
            )
            raise ValueError(msg)
        return self

    @property
    def registry(self) -> str:
        """The registry URL, defaulting to ``data_dir/hub.db``."""
        return self.registry_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    @property
    def store_path(self) -> Path:
        """The embedded store's file."""
        return self.data_dir / self.store.path
