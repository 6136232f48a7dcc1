"""HTTP route of the command screen's settings: ``GET /api/v1/screen/config``.

The screen needs to know, for the person logged in, which alert buttons to show in which alert
state. Rather than copy the lifecycle's tables into JavaScript (and let them drift), the screen asks
`alerts.lifecycle.allowed_actions` here once, for every (state, condition) pair. The optional map
tile URL (``HUB_HTTP__TILE_URL``) comes along, so an operations centre with a tile server of its own
gets a base map; without one the screen draws the area outlines only.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from alerts.events import Level
from alerts.lifecycle import Action, Alert, State, allowed_actions
from devices.access import Role, StaffOnly
from hub.settings import HttpSettings

router = APIRouter(prefix="/api/v1/screen", tags=["screen"])


class ScreenConfig(BaseModel):
    """What the command screen needs before it draws."""

    user: str
    role: Role
    actions: dict[State, dict[str, list[Action]]] = Field(
        description="state -> {'firing': [...], 'cleared': [...]}: the buttons this role gets"
    )
    tile_url: str | None = Field(
        description="XYZ tile template ({z}/{x}/{y}) of a base map; null: outlines only"
    )
    tile_attribution: str = Field(description="Shown in the map's corner when tiles are drawn")


def _probe(state: State, firing: bool) -> Alert:
    # allowed_actions reads only state and firing; the rest is filler of the right types.
    return Alert(
        id=0,
        rule="",
        source="",
        kind="",
        level=Level.INFO,
        state=state,
        firing=firing,
        summary="",
        first_ms=0,
        last_ms=0,
        updated_ms=0,
        seq=0,
        state_ms=0,
    )


def actions_for(role: Role) -> dict[State, dict[str, list[Action]]]:
    """For every alert state and condition, the actions ``role`` may take (the lifecycle's rule)."""
    return {
        state: {
            "firing": allowed_actions(_probe(state, firing=True), role),
            "cleared": allowed_actions(_probe(state, firing=False), role),
        }
        for state in State
    }


@router.get("/config", response_model=ScreenConfig, summary="The command screen's settings")
def screen_config(principal: StaffOnly, request: Request) -> ScreenConfig:
    """Who is logged in, which alert buttons they get, and the optional base-map tiles."""
    http: HttpSettings = request.app.state.components.settings.http
    return ScreenConfig(
        user=principal.user,
        role=principal.role,
        actions=actions_for(principal.role),
        tile_url=http.tile_url,
        tile_attribution=http.tile_attribution,
    )
