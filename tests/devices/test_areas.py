"""The area tree on SQLite: levels and parents, chains and spans, locating points; area-bound accounts."""

from __future__ import annotations

import numpy as np
import pytest

from devices.access import Principal, Role
from devices.areas import Area, AreaLevel, AreaTree, path_parent, within
from devices.errors import InvalidDefinitionError, NotFoundError
from devices.users import UserStore


def _box(x0: float, y0: float, x1: float, y1: float) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


TREE = [
    Area("zj", AreaLevel.PROVINCE, "Province", None, "省", _box(0, 0, 10, 10)),
    Area("demo", AreaLevel.CITY, "City", "zj", "市", _box(1, 1, 9, 9)),
    Area("demo/river", AreaLevel.COUNTY, "River district", "demo", "区", _box(1, 1, 5, 9)),
    Area("demo/hill", AreaLevel.COUNTY, "Hill district", "demo", "区", _box(5, 1, 9, 9)),
    Area("demo/river/a-rd", AreaLevel.TOWN, "A road", "demo/river", "街道", _box(2, 2, 3, 3)),
    Area("demo/river/a-rd/g1", AreaLevel.VILLAGE, "Grid 1", "demo/river/a-rd", "网格"),
]


@pytest.fixture
def tree(db_url: str) -> AreaTree:
    t = AreaTree(db_url)  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    assert t.put(TREE) == len(TREE)
    return t


def test_paths_nest_by_segment() -> None:
    assert within("demo/river/x", "demo/river")
    assert within("demo/river", "demo/river")
    assert not within("demo/riverside", "demo/river")
    assert not within(None, "demo")
    assert path_parent("a/b/c") == "a/b"
    assert path_parent("a") is None


def test_chain_covers_and_children(tree: AreaTree) -> None:
    assert tree.chain("demo/river/a-rd/g1") == [
        "demo/river/a-rd/g1",
        "demo/river/a-rd",
        "demo/river",
        "demo",
        "zj",
    ]
    # An area the tree does not know still has a parent: its path cut by one segment.
    assert tree.chain("demo/hill/b-rd/g9") == [
        "demo/hill/b-rd/g9",
        "demo/hill/b-rd",
        "demo/hill",
        "demo",
        "zj",
    ]
    assert tree.covers("zj") == ("zj", "demo")
    assert tree.covers("demo/river") == ("demo/river",)
    assert tree.contains("zj", "demo/hill/x")
    assert not tree.contains("demo/river", "demo/hill/x")
    assert [a.path for a in tree.children("demo")] == ["demo/hill", "demo/river"]
    assert tree.get("demo/river/a-rd").lat == pytest.approx(2.5)  # the boundary's centre
    assert tree.level_of("demo") is AreaLevel.CITY
    with pytest.raises(NotFoundError):
        tree.get("nowhere")


def test_locate_finds_the_deepest_boundary(tree: AreaTree) -> None:
    lat = np.array([2.5, 4.0, 6.0, 0.5, 20.0])
    lon = np.array([2.5, 4.0, 6.0, 0.5, 20.0])
    assert tree.locate(lat, lon) == ["demo/river/a-rd", "demo/river", "demo/hill", "zj", None]


def test_the_tree_refuses_what_would_break_it(tree: AreaTree) -> None:
    with pytest.raises(InvalidDefinitionError, match="not in the tree"):
        tree.put([Area("x/y", AreaLevel.TOWN, "orphan", "x")])
    with pytest.raises(InvalidDefinitionError, match="must sit below"):
        tree.put([Area("demo/up", AreaLevel.CITY, "as high as its parent", "demo")])
    with pytest.raises(InvalidDefinitionError, match="segments"):
        tree.put([Area("/bad path", AreaLevel.CITY, "bad")])
    with pytest.raises(InvalidDefinitionError, match="Polygon"):
        tree.put(
            [Area("p2", AreaLevel.PROVINCE, "p", boundary={"type": "Point", "coordinates": [0, 0]})]
        )
    with pytest.raises(InvalidDefinitionError, match="child areas"):
        tree.delete("demo/river")
    assert tree.delete("demo/river/a-rd/g1").name == "Grid 1"
    assert tree.find("demo/river/a-rd/g1") is None


def test_another_process_s_changes_are_seen(db_url: str) -> None:
    url = db_url
    now = [0.0]
    reader = AreaTree(url, clock=lambda: now[0])
    assert len(reader) == 0
    AreaTree(url).put(TREE[:2])
    assert len(reader) == 0  # within the refresh interval: the cached view
    now[0] += 1.5
    assert len(reader) == 2


def test_an_area_bound_account_carries_its_area(db_url: str) -> None:
    users = UserStore(db_url)
    users.create_user("town", Role.OFFICER, password="a long enough password", area="demo/river")
    token = users.login("town", "a long enough password")
    assert token is not None
    principal = users.authenticate(token.token)
    assert principal == Principal(
        "town",
        Role.OFFICER,
        None,
        token.token_id if hasattr(token, "token_id") else token.id,
        "demo/river",
    )
    assert principal.sees_area("demo/river/a-rd")
    assert not principal.sees_area("demo/riverside")
    assert not principal.sees_area(None)
    assert Principal("city", Role.OFFICER).sees_area(None)
    with pytest.raises(InvalidDefinitionError, match="area"):
        users.create_user("bad", Role.OFFICER, area="/demo")
    # Moving the account to another area ends its sessions: they carried the old area.
    users.update_user("town", area="demo/hill")
    assert users.authenticate(token.token) is None
    assert users.update_user("town", clear_area=True).area is None
