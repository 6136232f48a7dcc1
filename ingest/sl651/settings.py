"""Settings of the SL 651-2014 station server (the ``sl651`` section of the hub's settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Sl651Settings(BaseModel):
    """Where hydrological telemetry stations (or their DTUs) connect, and how they are answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, title="Accept SL 651-2014 stations over TCP")
    host: str = Field("127.0.0.1", title="Listen address", description="0.0.0.0 for DTUs outside")
    port: int = Field(5651, ge=0, le=65535, title="Listen port (0: any free port)")
    keep_online: bool = Field(
        False,
        title="Ask stations to stay connected",
        description="Confirmations end with ESC (terminal stays online) instead of EOT (transmission "
        "over, the station may hang up)",
    )
    flush_interval_s: float = Field(
        0.005,
        gt=0,
        le=5,
        title="How long frames that arrive together are gathered before they are decoded together",
    )
    max_pending_frames: int = Field(
        50_000,
        gt=0,
        title="Frames held before reading from stations pauses",
        description="Back-pressure: while the store is slow, the server stops reading sockets "
        "rather than buffering without bound",
    )
    idle_timeout_s: float = Field(
        900, gt=0, title="A station silent this long is disconnected (its DTU reconnects)"
    )
