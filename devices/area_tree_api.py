"""HTTP routes of the administrative area tree (``/api/v1/areas/tree``): read it, draw it, keep it.

Staff read the tree (names, levels, parents, boundaries); administrators create, change and remove
areas. ``/api/v1/areas/tree.geojson`` draws one level's boundaries as a GeoJSON FeatureCollection.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from devices.access import AdminOnly, StaffOnly
from devices.areas import Area, AreaLevel, AreaTree
from devices.errors import InvalidDefinitionError

GEOJSON = "application/geo+json"


def get_tree(request: Request) -> AreaTree:
    """The area tree the app was started with."""
    tree: AreaTree = request.app.state.area_tree
    return tree


TreeDep = Annotated[AreaTree, Depends(get_tree)]

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])


class AreaView(BaseModel):
    """An area of the tree."""

    path: str
    parent: str | None
    level: str = Field(description="province, city, county, town or village")
    name: str
    name_zh: str
    lat: float | None
    lon: float | None
    boundary: dict[str, Any] | None = Field(description="GeoJSON Polygon or MultiPolygon")

    @classmethod
    def of(cls, a: Area, *, boundary: bool = True) -> AreaView:
        """The view of ``a`` (without its boundary when ``boundary`` is False)."""
        return cls(
            path=a.path,
            parent=a.parent,
            level=a.level.label,
            name=a.name,
            name_zh=a.name_zh,
            lat=a.lat,
            lon=a.lon,
            boundary=a.boundary if boundary else None,
        )


class AreaDetail(AreaView):
    """An area with the areas above it (nearest first) and below it."""

    chain: list[str]
    children: list[AreaView]


class AreaBody(BaseModel):
    """An area to create or replace."""

    parent: str | None = Field(None, max_length=300)
    level: str = Field(description="province, city, county, town or village")
    name: str = Field(min_length=1, max_length=200)
    name_zh: str = Field("", max_length=200)
    boundary: dict[str, Any] | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


def _level(name: str) -> AreaLevel:
    try:
        return AreaLevel.parse(name)
    except ValueError as exc:
        raise InvalidDefinitionError(str(exc)) from exc


@router.get("/tree", response_model=list[AreaView], summary="The area tree, by path")
def list_areas(
    _: StaffOnly,
    tree: TreeDep,
    level: Annotated[str | None, Query(description="Only this level")] = None,
    boundaries: Annotated[bool, Query(description="Include the GeoJSON boundaries")] = False,
) -> list[AreaView]:
    """Every area (of ``level``); boundaries only when asked for (they are the bulk)."""
    found = tree.areas(_level(level) if level else None)
    return [AreaView.of(a, boundary=boundaries) for a in found]


@router.get(
    "/tree.geojson",
    summary="One level's boundaries as GeoJSON",
    response_class=JSONResponse,
    responses={200: {"content": {GEOJSON: {}}}},
)
def tree_geojson(
    _: StaffOnly, tree: TreeDep, level: Annotated[str, Query(description="e.g. county")] = "county"
) -> JSONResponse:
    """A FeatureCollection of the areas of ``level`` that have a boundary (RFC 7946, lon/lat)."""
    features = [
        {
            "type": "Feature",
            "id": a.path,
            "properties": {
                "path": a.path,
                "parent": a.parent,
                "level": a.level.label,
                "name": a.name,
                "name_zh": a.name_zh,
                "center": [a.lon, a.lat] if a.lat is not None and a.lon is not None else None,
            },
            "geometry": a.boundary,
        }
        for a in tree.areas(_level(level))
        if a.boundary
    ]
    return JSONResponse({"type": "FeatureCollection", "features": features}, media_type=GEOJSON)


@router.get(
    "/tree/{path:path}", response_model=AreaDetail, summary="One area, its chain, its children"
)
def get_area(_: StaffOnly, tree: TreeDep, path: str) -> AreaDetail:
    """The area, the areas above it (nearest first) and its children."""
    area = tree.get(path.strip("/"))
    return AreaDetail(
        **AreaView.of(area).model_dump(),
        chain=tree.chain(area.path)[1:],
        children=[AreaView.of(c, boundary=False) for c in tree.children(area.path)],
    )


@router.put("/tree/{path:path}", response_model=AreaView, summary="Create or replace an area")
def put_area(_: AdminOnly, tree: TreeDep, path: str, body: Annotated[AreaBody, Body()]) -> AreaView:
    """The parent must exist and sit at a higher level."""
    area = Area(
        path=path.strip("/"),
        level=_level(body.level),
        name=body.name,
        parent=body.parent.strip("/") if body.parent else None,
        name_zh=body.name_zh,
        boundary=body.boundary,
        lat=body.lat,
        lon=body.lon,
    )
    tree.put([area])
    return AreaView.of(tree.get(area.path))


@router.delete("/tree/{path:path}", response_model=AreaView, summary="Remove a leaf area")
def delete_area(_: AdminOnly, tree: TreeDep, path: str) -> AreaView:
    """Remove an area without children; what was under it keeps its path."""
    return AreaView.of(tree.delete(path.strip("/")))
