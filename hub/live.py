"""The live view the device API shows: latest values and last-seen from `LiveState`, named by the registry."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from devices.api import LatestValue
from devices.registry import Registry
from hub.state import LiveState
from ingest.deadletter import DeadLetterStore


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class HubLiveView:
    """Implements `devices.api.LiveView` over the hub's live state."""

    def __init__(self, registry: Registry, state: LiveState, dead_letters: DeadLetterStore) -> None:
        """Read from these components."""
        self._registry = registry
        self._state = state
        self._dead = dead_letters
        self._units: dict[str, str] = {}

    def _unit(self, metric: str) -> str:
        unit = self._units.get(metric)
        if unit is None:
            unit = self._registry.metric_unit(metric) or ""
            self._units[metric] = unit
        return unit

    def latest(self, device_id: str) -> tuple[dict[str, LatestValue], datetime | None, bool | None]:
        """Latest value per metric, last-seen time, and online flag of one device."""
        entry = self._registry.interner.devices.get(device_id)
        if entry is None:
            return {}, None, None
        values, times, qualities, last_seen = self._state.row(entry.index)
        never = LiveState.never()
        names = self._registry.interner.metric_names
        latest: dict[str, LatestValue] = {}
        for m in np.flatnonzero(times != never).tolist():
            v = float(values[m])
            latest[names[m]] = LatestValue(
                value=None if np.isnan(v) else v,
                unit=self._unit(names[m]),
                ts=_iso(int(times[m])),
                quality=int(qualities[m]),
            )
        online_flag = (
            int(self._state.online[entry.index]) if entry.index < len(self._state.online) else -1
        )
        return (
            latest,
            (None if last_seen == never else _iso(last_seen)),
            (None if online_flag < 0 else bool(online_flag)),
        )

    def rejects(self, device_id: str) -> dict[str, int]:
        """Rejections of one device by reason."""
        return self._dead.count_for(device_id)
