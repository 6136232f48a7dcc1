"""``GET /metrics``: the hub's self-metrics in Prometheus' text format, for staff tokens only.

Prometheus scrapes with a bearer token (``authorization: {credentials_file: ...}`` in its scrape
config): create a ``viewer`` account for it and an API token with ``POST /api/v1/auth/tokens`` (see
the README). Figures are hub-wide (no vendor's devices are named), but they are still not public.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from devices.access import StaffOnly
from hub.metrics import HubMetrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Self-metrics in Prometheus format (staff; a viewer's API token for the scraper)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request, _: StaffOnly) -> Response:
    """Ingest and reject counts, queue depths, store write and rule evaluation times, screens, cameras."""
    hub_metrics: HubMetrics = request.app.state.metrics
    return Response(generate_latest(hub_metrics.registry), media_type=CONTENT_TYPE_LATEST)
