"""HTTP route of devices that cannot speak MQTT: ``POST /api/v1/uplink/{vendor}/{device_id}``.

The device authenticates with its own MQTT credential (HTTP Basic, see `devices.device_auth`) and
may post only for itself (403 otherwise). The body is the payload exactly as the device would publish
it on ``sensors/{vendor}/{device_id}/up``, decoded by its profile's codec (`ingest.http_uplink`).

Answers, each only once readings and dead letters are durable:

- 200 ``{"device", "readings", "rejected": [...]}``: readings stored (a repeat stores nothing new:
  the store's (device, metric, ts) key); parts the codec refused are listed and dead-lettered, as
  MQTT ingestion keeps the good part of a message and rejects the rest;
- 422 problem with ``reasons``: nothing stored, every reason listed (and dead-lettered);
- 413 problem: over the size limit (dead-lettered as ``oversized``);
- 503 problem: not stored in time (the hub may still store it; retrying is safe).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from devices.device_auth import DeviceCaller
from ingest.codecs.base import DecodeReason
from ingest.columns import Rejection
from ingest.http_uplink import HttpUplink, UplinkResult, UplinkTimeoutError

router = APIRouter(prefix="/api/v1/uplink", tags=["ingest"])

PROBLEM = "application/problem+json"


def get_uplink(request: Request) -> HttpUplink:
    """The hub's HTTP uplink (set by the app's lifespan)."""
    uplink: HttpUplink = request.app.state.uplink
    return uplink


def _reason(r: Rejection) -> dict[str, Any]:
    return {
        "reason": str(r.error.reason),
        "detail": r.error.detail,
        "device": r.error.device_id or r.raw.device_id,
    }


def _problem(status: int, title: str, detail: str, path: str, **extra: Any) -> JSONResponse:  # noqa: ANN401
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["instance"] = path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


@router.post(
    "/{vendor}/{device_id}",
    summary="A device posts a payload as it would publish it over MQTT",
    responses={
        401: {"description": "No valid device credential (HTTP Basic)"},
        403: {"description": "The credential is another device's"},
        413: {"description": "Over the payload size limit"},
        422: {"description": "Nothing could be stored; the reasons are listed"},
        503: {"description": "Not stored in time: retry (a repeat is stored once)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The payload exactly as the device would publish it (any content type)",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def uplink(
    vendor: str,
    device_id: str,
    request: Request,
    device: DeviceCaller,
    service: Annotated[HttpUplink, Depends(get_uplink)],
) -> JSONResponse:
    """Decode the body with the device's profile codec and store it as MQTT ingestion would."""
    device.check_path(vendor, device_id)
    # Never hold more than the size limit and one byte: a huge body is counted as it streams by.
    limit = service.max_payload
    kept = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if len(kept) <= limit:
            kept += chunk[: limit + 1 - len(kept)]
    path = request.url.path
    try:
        result = await service.post(vendor, device_id, bytes(kept), size=size)
    except UplinkTimeoutError as exc:
        return _problem(503, "Not stored in time", str(exc), path)
    return _answer(result, device_id, path)


def _answer(result: UplinkResult, device_id: str, path: str) -> JSONResponse:
    reasons = [_reason(r) for r in result.rejections]
    if result.refused:
        detail = "; ".join(f"{r['reason']}: {r['detail']}" for r in reasons)
        oversize = any(r.error.reason is DecodeReason.OVERSIZED for r in result.rejections)
        if oversize:
            return _problem(413, "Payload too large", detail, path, reasons=reasons)
        return _problem(422, "Payload rejected", detail, path, reasons=reasons)
    body = {"device": device_id, "readings": result.readings, "rejected": reasons}
    return JSONResponse(body, status_code=200)
