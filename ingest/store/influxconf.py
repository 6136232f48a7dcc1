"""Settings of the InfluxDB store (section ``store.influx``): where it is, which API, and how to write."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_DURATION = re.compile(r"^(INF|\d+(ns|u|ms|s|m|h|d|w))$")


class InfluxSettings(BaseModel):
    """InfluxDB 1.x, 2.x or 3.x. Env: ``HUB_STORE__BACKEND=influx``, ``HUB_STORE__INFLUX__URL=...``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:8086", title="Base URL of InfluxDB")
    api: Literal["auto", "v1", "v2"] = Field(
        "auto",
        title="Write API",
        description="'v1': POST /write with database and retention policy (InfluxDB 1.x); "
        "'v2': influxdb-client's write API to a bucket (InfluxDB 2.x and 3.x); 'auto': from the "
        "version /ping reports. Reads always use InfluxQL on /query",
    )
    database: str = Field(
        "cityhub",
        title="Database",
        description="1.x database; on 2.x the database of the DBRP mapping; on 3.x the database",
        min_length=1,
    )
    retention_policy: str = Field(
        "raw",
        title="Retention policy of raw readings",
        description="1.x retention policy (created with store.retention_days when manage_schema); "
        "on 2.x the retention policy of the DBRP mapping",
        min_length=1,
    )
    bucket: str | None = Field(
        None,
        title="Bucket written through the v2 API",
        description="Default 'database/retention_policy' (2.x); on 3.x set it to the database",
    )
    org: str = Field("city", title="Organisation (2.x)")
    token: SecretStr | None = Field(None, title="API token (2.x, 3.x)")
    username: str | None = Field(None, title="User (1.x with auth-enabled)")
    password: SecretStr | None = Field(None, title="Password (1.x with auth-enabled)")
    manage_schema: bool = Field(
        True,
        title="Create the database, retention policies and continuous query (1.x)",
        description="On 2.x and 3.x buckets, DBRP mappings and the downsampling task are the "
        "operator's (docker-compose's init script does it); the hub only writes and reads",
    )
    rollup_every: str = Field(
        "1m",
        title="Bucket width of the downsampled series",
        description="readings_<every> (mean, min, max, count per series) in rollup_policy",
    )
    rollup_policy: str = Field("rollup", title="Retention policy of the downsampled series")
    rollup_retention: str = Field(
        "1825d", title="How long downsampled readings are kept (InfluxQL duration or INF)"
    )
    gzip: bool = Field(True, title="Compress write bodies with gzip")
    batch_lines: int = Field(
        5000, ge=1, le=1_000_000, title="Readings per write request (InfluxDB advises 5,000)"
    )
    concurrency: int = Field(2, ge=1, le=32, title="Write requests in flight at once per batch")
    timeout_s: float = Field(10.0, gt=0, title="Timeout of one HTTP request")
    max_retries: int = Field(
        4,
        ge=0,
        le=20,
        title="Retries of a failed request before the store reports an error",
        description="Exponential backoff with jitter from 0.1 s, honouring Retry-After; only "
        "connection errors, 429 and 5xx are retried (the pipeline retries on, without acking)",
    )
    count_new: bool = Field(
        False,
        title="Count readings that were new",
        description="InfluxDB overwrites a point with the same series and time, so a redelivery "
        "is stored once either way. True: each write first reads which of its keys exist, so "
        "write() returns exactly how many were new (one extra query per write); false: it "
        "returns the batch's distinct keys",
    )
    stats_interval_s: float = Field(
        10.0, gt=0, title="How often the hub writes its own health (measurement hub_stats)"
    )

    @field_validator("rollup_every", "rollup_retention")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not _DURATION.match(v):
            msg = f"{v!r} is not an InfluxQL duration such as 1m, 30d or INF"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _user_needs_password(self) -> InfluxSettings:
        if self.username is not None and self.password is None:
            msg = "store.influx.password must be set when store.influx.username is set"
            raise ValueError(msg)
        return self

    @property
    def write_bucket(self) -> str:
        """The bucket of the v2 write API."""
        return self.bucket or f"{self.database}/{self.retention_policy}"

    @property
    def rollup_measurement(self) -> str:
        """Name of the downsampled series' measurement, e.g. ``readings_1m``."""
        return f"readings_{self.rollup_every}"
