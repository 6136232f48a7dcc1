"""Writes grafana/dashboards/*.json: the city hub's Grafana dashboards, InfluxQL on the provisioned datasource.

Run ``.venv/bin/python grafana/build_dashboards.py`` after changing a panel; the JSON files are what
Grafana provisions (docker-compose mounts them), and ``tests/grafana`` fails when they are not what
this script writes. Warning lines come from the shipped rules (``alerts/data/rules.yaml``), so a
panel's lines are the levels the hub alerts on. Panels read the measurements described in
``ingest/store/influx.py`` (readings) and ``hub/influx_sink.py`` (alert_events, hub_stats,
hub_rejects).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "grafana" / "dashboards"
RULES = ROOT / "alerts" / "data" / "rules.yaml"
DATASOURCE = {"type": "influxdb", "uid": "cityhub-influx"}
COLOURS = {"blue": "blue", "yellow": "yellow", "orange": "orange", "red": "red"}
DISTRICT = '"district" =~ /^$district$/'

Panel = dict[str, Any]


def rule_levels(rule_id: str) -> list[tuple[str, float]]:
    """(colour, value) of a shipped rule's levels, in level order (numbers only)."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["rules"]
    levels = next(r["levels"] for r in rules if r["id"] == rule_id)
    return [(name, float(v)) for name, v in levels.items() if isinstance(v, int | float)]


def thresholds(steps: list[tuple[str, float]], base: str = "green") -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": COLOURS.get(c, c), "value": v} for c, v in steps],
    }


def target(
    query: str, ref: str = "A", alias: str | None = None, fmt: str = "time_series"
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
    }
    if alias:
        t["alias"] = alias
    return t


def panel(
    title: str,
    queries: list[dict[str, Any]],
    *,
    kind: str = "timeseries",
    unit: str | None = None,
    steps: list[tuple[str, float]] | None = None,
    lines: bool = False,
    base: str = "green",
    width: int = 12,
    height: int = 8,
    description: str = "",
) -> Panel:
    custom: dict[str, Any] = {}
    if kind == "timeseries":
        custom = {"drawStyle": "line", "lineWidth": 1, "spanNulls": True, "showPoints": "never"}
        if lines:
            custom["thresholdsStyle"] = {"mode": "line"}
    if kind == "barchart" or (kind == "timeseries" and title.startswith("Bars:")):
        custom = {"drawStyle": "bars", "fillOpacity": 80}
    defaults: dict[str, Any] = {"custom": custom}
    if unit:
        defaults["unit"] = unit
    defaults["thresholds"] = thresholds(steps or [], base)
    return {
        "type": kind,
        "title": title.removeprefix("Bars: "),
        "description": description,
        "datasource": DATASOURCE,
        "targets": queries,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {},
        "gridPos": {"w": width, "h": height},
    }


def district_variable() -> dict[str, Any]:
    return {
        "name": "district",
        "label": "District",
        "type": "query",
        "datasource": DATASOURCE,
        "query": 'SHOW TAG VALUES FROM "readings" WITH KEY = "district"',
        "includeAll": True,
        "allValue": ".*",
        "multi": False,
        "refresh": 1,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard(
    uid: str, title: str, panels: list[Panel], *, variables: bool = True
) -> dict[str, Any]:
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": uid,
        "title": title,
        "tags": ["cityhub"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [district_variable()] if variables else []},
        "annotations": {"list": []},
        "panels": panels,
    }


def readings(
    metric: str, agg: str, group: str, *, extra: str = "", every: str = "$__interval"
) -> str:
    by = f', "{group}"' if group else ""
    return (
        f'SELECT {agg}("value") FROM "readings" WHERE "metric" = \'{metric}\'{extra} '
        f"AND $timeFilter GROUP BY time({every}){by} fill(none)"
    )


def water() -> dict[str, Any]:
    d = f" AND {DISTRICT}"
    return dashboard(
        "cityhub-water",
        "City hub · Water",
        [
            panel(
                "River water level against warning lines",
                [target(readings("water_level", "max", "device", extra=d), alias="$tag_device")],
                unit="lengthm",
                steps=rule_levels("water-level-high"),
                lines=True,
                width=16,
                description="Highest level per gauge and interval; lines: the shipped rule's "
                "blue/yellow/orange/red levels (warning 警戒 = yellow, guarantee 保证 = orange)",
            ),
            panel(
                "Highest gauge now",
                [
                    target(
                        'SELECT max("last") FROM (SELECT last("value") FROM "readings" '
                        f'WHERE "metric" = \'water_level\'{d} AND $timeFilter GROUP BY "device")'
                    )
                ],
                kind="stat",
                unit="lengthm",
                steps=rule_levels("water-level-high"),
                width=8,
            ),
            panel(
                "Bars: Rainfall accumulation per hour, by district",
                [
                    target(
                        readings("rainfall", "sum", "district", extra=d, every="1h"),
                        alias="$tag_district",
                    )
                ],
                unit="lengthmm",
                steps=rule_levels("rainfall-1h"),
                description="Sum of rain gauges' rainfall per hour; mean over gauges would be the "
                "areal rain, the sum shows where gauges report most",
            ),
            panel(
                "Rainfall accumulated in the range, per gauge",
                [
                    target(
                        'SELECT sum("value") FROM "readings" WHERE "metric" = \'rainfall\''
                        f'{d} AND $timeFilter GROUP BY "device"',
                        fmt="table",
                    )
                ],
                kind="table",
                unit="lengthmm",
            ),
            panel(
                "Rain rate, by district",
                [target(readings("rain_rate", "mean", "district", extra=d), alias="$tag_district")],
                unit="mm/h",
            ),
            panel(
                "Pipe pressure, lowest per district",
                [target(readings("pressure", "min", "district", extra=d), alias="$tag_district")],
                unit="pressurembar",
                description="MPa",
            ),
            panel(
                "Water level, long term (1-minute rollup)",
                [
                    target(
                        'SELECT max("max") FROM "rollup"."readings_1m" WHERE "metric" = '
                        f"'water_level'{d} AND $timeFilter GROUP BY time($__interval), \"device\" "
                        "fill(none)",
                        alias="$tag_device",
                    )
                ],
                unit="lengthm",
                steps=rule_levels("water-level-high"),
                lines=True,
                width=24,
                description="From the downsampled series (retention policy rollup), kept for years",
            ),
        ],
    )


def traffic() -> dict[str, Any]:
    d = f" AND {DISTRICT}"
    return dashboard(
        "cityhub-traffic",
        "City hub · Traffic",
        [
            panel(
                "Vehicle flow per road (vehicles per interval)",
                [target(readings("vehicle_count", "sum", "street", extra=d), alias="$tag_street")],
                unit="short",
                width=24,
            ),
            panel(
                "Average speed per road",
                [target(readings("average_speed", "mean", "street", extra=d), alias="$tag_street")],
                unit="velocitykmh",
            ),
            panel(
                "Congestion per road (detector occupancy)",
                [target(readings("occupancy", "mean", "street", extra=d), alias="$tag_street")],
                unit="percent",
                steps=[("yellow", 30.0), ("orange", 50.0), ("red", 70.0)],
                lines=True,
                description="Share of time a vehicle stands on the detector: above ~30 % traffic "
                "is dense, above ~50 % it is jammed",
            ),
            panel(
                "Slowest roads in the range",
                [
                    target(
                        'SELECT mean("value") FROM "readings" WHERE "metric" = \'average_speed\''
                        f'{d} AND $timeFilter GROUP BY "street"',
                        fmt="table",
                    )
                ],
                kind="table",
                unit="velocitykmh",
                width=24,
            ),
        ],
    )


def urban() -> dict[str, Any]:
    d = f" AND {DISTRICT}"

    def open_now(metric: str) -> str:
        return (
            'SELECT sum("last") FROM (SELECT last("value") FROM "readings" WHERE "metric" = '
            f"'{metric}'{d} AND $timeFilter GROUP BY \"device\")"
        )

    return dashboard(
        "cityhub-urban",
        "City hub · Urban management",
        [
            panel(
                "Manhole covers open now",
                [target(open_now("cover_open"))],
                kind="stat",
                steps=[("orange", 1.0)],
                width=6,
            ),
            panel(
                "Smoke alarms now",
                [target(open_now("smoke_alarm"))],
                kind="stat",
                steps=[("red", 1.0)],
                width=6,
            ),
            panel(
                "Manholes with water now",
                [target(open_now("water_detected"))],
                kind="stat",
                steps=[("yellow", 1.0)],
                width=6,
            ),
            panel(
                "Fullest bins now",
                [
                    target(
                        'SELECT top("last", "device", 10) FROM (SELECT last("value") FROM '
                        f'"readings" WHERE "metric" = \'fill_level\'{d} AND $timeFilter '
                        'GROUP BY "device")',
                        fmt="table",
                    )
                ],
                kind="table",
                unit="percent",
                steps=rule_levels("bin-full"),
                width=6,
            ),
            panel(
                "Manhole cover tilt, highest per district",
                [
                    target(
                        readings(
                            "tilt_angle",
                            "max",
                            "district",
                            extra=d + " AND \"type\" = 'manhole_cover'",
                        ),
                        alias="$tag_district",
                    )
                ],
                unit="degree",
                steps=rule_levels("manhole-cover-tilted"),
                lines=True,
            ),
            panel(
                "Smoke obscuration, highest per district",
                [
                    target(
                        readings("smoke_obscuration", "max", "district", extra=d),
                        alias="$tag_district",
                    )
                ],
                unit="percent",
                steps=rule_levels("smoke-obscuration"),
                lines=True,
            ),
            panel(
                "Combustible gas, highest per district",
                [target(readings("gas_lel", "max", "district", extra=d), alias="$tag_district")],
                unit="%LEL",
                steps=rule_levels("gas-concentration"),
                lines=True,
            ),
            panel(
                "Bin fill level, mean per district",
                [
                    target(
                        readings("fill_level", "mean", "district", extra=d), alias="$tag_district"
                    )
                ],
                unit="percent",
                steps=rule_levels("bin-full"),
                lines=True,
            ),
        ],
    )


def alerts() -> dict[str, Any]:
    raised = "\"action\" = 'raise' AND $timeFilter"
    return dashboard(
        "cityhub-alerts",
        "City hub · Alerts",
        [
            panel(
                "Bars: Alerts raised per level",
                [
                    target(
                        f'SELECT sum("n") FROM "alert_events" WHERE {raised} GROUP BY time($__interval), "level" fill(none)',
                        alias="$tag_level",
                    )
                ],
                unit="short",
            ),
            panel(
                "Bars: Alerts raised per district",
                [
                    target(
                        f'SELECT sum("n") FROM "alert_events" WHERE {raised} GROUP BY time($__interval), "district" fill(none)',
                        alias="$tag_district",
                    )
                ],
                unit="short",
            ),
            panel(
                "Alerts raised in the range, per level and district",
                [
                    target(
                        f'SELECT sum("n") FROM "alert_events" WHERE {raised} GROUP BY "level", "district"',
                        fmt="table",
                    )
                ],
                kind="table",
                width=8,
            ),
            panel(
                "Time to acknowledge, per level",
                [
                    target(
                        'SELECT mean("ack_s") FROM "alert_events" WHERE $timeFilter GROUP BY time($__interval), "level" fill(none)',
                        alias="$tag_level",
                    )
                ],
                unit="s",
                width=8,
                description="Seconds from raised to acknowledged (or dispatched straight away)",
            ),
            panel(
                "Time to acknowledge, 90th percentile",
                [target('SELECT percentile("ack_s", 90) FROM "alert_events" WHERE $timeFilter')],
                kind="stat",
                unit="s",
                steps=[("yellow", 300.0), ("red", 900.0)],
                width=8,
            ),
            panel(
                "Alert changes by action",
                [
                    target(
                        'SELECT sum("n") FROM "alert_events" WHERE $timeFilter GROUP BY time($__interval), "action" fill(none)',
                        alias="$tag_action",
                    )
                ],
                unit="short",
                width=24,
            ),
        ],
        variables=False,
    )


def hub_health() -> dict[str, Any]:
    def rate(field: str, per: str = "1s") -> str:
        return (
            f'SELECT non_negative_derivative(last("{field}"), {per}) FROM "hub_stats" '
            'WHERE $timeFilter GROUP BY time($__interval), "host" fill(none)'
        )

    return dashboard(
        "cityhub-hub",
        "City hub · Hub health",
        [
            panel(
                "Ingest rate: readings stored per second",
                [target(rate("readings_stored"), alias="$tag_host")],
                unit="short",
            ),
            panel(
                "MQTT messages per second",
                [target(rate("messages"), alias="$tag_host")],
                unit="short",
            ),
            panel(
                "Rejects per minute, by reason",
                [
                    target(
                        'SELECT non_negative_derivative(last("total"), 1m) FROM "hub_rejects" WHERE $timeFilter GROUP BY time($__interval), "reason" fill(none)',
                        alias="$tag_reason",
                    )
                ],
                unit="short",
            ),
            panel(
                "Rejects since start, by reason",
                [
                    target(
                        'SELECT last("total") FROM "hub_rejects" WHERE $timeFilter GROUP BY "reason"',
                        fmt="table",
                    )
                ],
                kind="table",
            ),
            panel(
                "Queue depth",
                [
                    target(
                        'SELECT max("in_flight") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "host" fill(none)',
                        alias="ingest in flight $tag_host",
                    ),
                    target(
                        'SELECT max("alert_queue") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "host" fill(none)',
                        ref="B",
                        alias="alert queue $tag_host",
                    ),
                ],
                unit="short",
                description="Messages decoded but not yet stored and acknowledged; bursts of "
                "condition events waiting for the alert store",
            ),
            panel(
                "Store write and rule evaluation time",
                [
                    target(
                        'SELECT max("last_write_ms") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "host" fill(none)',
                        alias="store write $tag_host",
                    ),
                    target(
                        'SELECT max("last_evaluate_ms") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "host" fill(none)',
                        ref="B",
                        alias="rule evaluation $tag_host",
                    ),
                ],
                unit="ms",
            ),
            panel(
                "Store errors per minute",
                [target(rate("store_errors", "1m"), alias="$tag_host")],
                unit="short",
                width=8,
            ),
            panel(
                "Devices registered",
                [target('SELECT last("devices") FROM "hub_stats" WHERE $timeFilter')],
                kind="stat",
                width=8,
            ),
            panel(
                "Broker connected",
                [target('SELECT last("broker_connected") FROM "hub_stats" WHERE $timeFilter')],
                kind="stat",
                steps=[("green", 1.0)],
                base="red",
                width=8,
            ),
        ],
        variables=False,
    )


DASHBOARDS = {
    "water.json": water,
    "traffic.json": traffic,
    "urban.json": urban,
    "alerts.json": alerts,
    "hub-health.json": hub_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
