"""Which time-series store the hub opens: the embedded file store, or InfluxDB (``store.backend``)."""

from __future__ import annotations

from devices.registry import Registry
from hub.settings import HubSettings
from ingest.store import Store
from ingest.store.filestore import FileStore
from ingest.store.influx import InfluxStore


def open_store(settings: HubSettings, registry: Registry) -> Store:
    """The store ``settings`` name; InfluxDB tags readings with ``registry``'s names and areas."""
    if settings.store.backend == "influx":
        return InfluxStore(
            settings.store.influx,
            registry=registry,
            retention_days=settings.store.retention_days,
        )
    return FileStore(settings.store_path, memory_limit=f"{settings.store.memory_mb}MB")
