"""InfluxDB 1.x schema: the database, two retention policies, and the continuous query that downsamples.

- ``raw`` (default policy): every reading, kept ``store.retention_days``.
- ``rollup``: ``readings_<every>`` (``mean``, ``min``, ``max``, ``count`` of ``value`` per series and
  bucket, every tag kept by ``GROUP BY *``), kept five years by default; dashboards read it for long
  spans. The continuous query fills it as time passes; `rollup_statement` is the same query for a
  span in the past (backfill after an outage, or on first deployment over old data).

On InfluxDB 2.x the same layout is two buckets (``cityhub/raw``, ``cityhub/rollup``) with DBRP
mappings and a Flux task (``deploy/influxdb/readings_1m.flux``), which docker-compose's init script
creates; 3.x has no tasks (downsample there with a processing-engine plugin, or not at all: the hub
itself reads raw readings only).
"""

from __future__ import annotations

import logging

from ingest.store.influxconf import InfluxSettings
from ingest.store.influxhttp import InfluxHttp
from ingest.store.lineproto import MEASUREMENT

logger = logging.getLogger(__name__)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _duration(retention_days: float | None) -> str:
    if retention_days is None:
        return "INF"
    return f"{max(1, round(retention_days * 24))}h"


def cq_name(settings: InfluxSettings) -> str:
    """Name of the continuous query that fills the downsampled series."""
    return f"{MEASUREMENT}_{settings.rollup_every}"


def rollup_select(settings: InfluxSettings) -> str:
    """The downsampling SELECT ... INTO, without a time condition or GROUP BY."""
    db = quote_ident(settings.database)
    return (
        "SELECT mean(value) AS mean, min(value) AS min, max(value) AS max, "
        "count(value) AS count "
        f"INTO {db}.{quote_ident(settings.rollup_policy)}.{quote_ident(settings.rollup_measurement)} "
        f"FROM {db}.{quote_ident(settings.retention_policy)}.{quote_ident(MEASUREMENT)}"
    )


def rollup_statement(settings: InfluxSettings, start_ms: int, end_ms: int) -> str:
    """The continuous query's work for ``[start_ms, end_ms)``, to run by hand (backfill)."""
    return (
        f"{rollup_select(settings)} WHERE time >= {start_ms}ms AND time < {end_ms}ms "
        f"GROUP BY time({settings.rollup_every}), *"
    )


def ensure_v1_schema(
    http: InfluxHttp, settings: InfluxSettings, retention_days: float | None
) -> None:
    """Create or update the database, both retention policies and the continuous query (idempotent)."""
    db = quote_ident(settings.database)
    http.query(f"CREATE DATABASE {db}")
    existing = {
        str(row[0])
        for s in http.query(f"SHOW RETENTION POLICIES ON {db}")
        for row in s.values
        if row
    }
    policies = (
        (settings.retention_policy, _duration(retention_days), " DEFAULT"),
        (settings.rollup_policy, settings.rollup_retention, ""),
    )
    for name, duration, default in policies:
        verb = "ALTER" if name in existing else "CREATE"
        http.query(
            f"{verb} RETENTION POLICY {quote_ident(name)} ON {db} "
            f"DURATION {duration} REPLICATION 1{default}"
        )
    # Re-created at every start, so a changed rollup_every or policy name takes effect.
    name = quote_ident(cq_name(settings))
    cqs = {
        str(row[0])
        for s in http.query("SHOW CONTINUOUS QUERIES")
        if s.name == settings.database
        for row in s.values
        if row
    }
    if cq_name(settings) in cqs:
        http.query(f"DROP CONTINUOUS QUERY {name} ON {db}")
    http.query(
        f"CREATE CONTINUOUS QUERY {name} ON {db} BEGIN {rollup_select(settings)} "
        f"GROUP BY time({settings.rollup_every}), * END"
    )
    logger.info(
        "InfluxDB schema: database %s, policies %s (%s) and %s (%s), continuous query %s",
        settings.database,
        settings.retention_policy,
        _duration(retention_days),
        settings.rollup_policy,
        settings.rollup_retention,
        cq_name(settings),
    )
