"""The JSON shape of alert changes, the same on every channel (MQTT, webhooks, the websocket feed).

Times are ISO 8601 UTC with a ``Z`` on the wire (epoch ms inside); levels are their colour names.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from alerts.lifecycle import Alert, AlertChange


def iso(ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 UTC with a ``Z`` (the wire's time format), None as None."""
    if ms is None:
        return None
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_body(alert: Alert) -> dict[str, Any]:
    """An alert as JSON-ready data (no vendor: that is the hub's business)."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "source": alert.source,
        "kind": alert.kind,
        "level": alert.level.label,
        "state": alert.state.value,
        "condition": "firing" if alert.firing else "cleared",
        "device": alert.device,
        "area": alert.area,
        "metric": alert.metric,
        "value": alert.value,
        "summary": alert.summary,
        "first_at": iso(alert.first_ms),
        "last_at": iso(alert.last_ms),
        "cleared_at": iso(alert.cleared_ms),
        "acknowledged_at": iso(alert.acknowledged_ms),
        "closed_at": iso(alert.closed_ms),
        "assignee": alert.assignee,
        "unit": alert.unit,
    }


def change_body(change: AlertChange) -> dict[str, Any]:
    """The event every channel sends: the change, who made it, and the alert after it.

    ``id`` (``{alert_id}-{seq}``) is unique per change, so a receiver can drop the duplicates that
    at-least-once delivery (a webhook retry, an MQTT redelivery) brings.
    """
    e = change.entry
    return {
        "id": f"{e.alert_id}-{e.seq}",
        "change": change.kind.value,
        "alert_id": e.alert_id,
        "seq": e.seq,
        "at": iso(e.at_ms),
        "actor": e.actor,
        "action": e.action.value,
        "from_state": e.from_state.value if e.from_state is not None else None,
        "to_state": e.to_state.value,
        "from_level": e.from_level.label if e.from_level is not None else None,
        "to_level": e.to_level.label,
        "note": e.note,
        "target": e.target,
        "alert": alert_body(change.alert),
    }


def encode(change: AlertChange) -> bytes:
    """The change as compact UTF-8 JSON."""
    return json.dumps(change_body(change), separators=(",", ":"), ensure_ascii=False).encode()
