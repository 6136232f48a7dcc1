"""Reading definition files (YAML, JSON, CSV) and importing them into a real SQLite registry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from devices.errors import InvalidDefinitionError
from devices.loader import (
    Definitions,
    ImportResult,
    import_definitions,
    load_files,
    load_shipped,
    parse_text,
    read_file,
    shipped_definitions,
)
from devices.registry import DeviceQuery, Registry

VENDOR = {"id": "hydrox", "name": "Hydrox"}
PROFILE = {
    "id": "hydrox-wl",
    "name": "water level gauge",
    "type": "water_level",
    "domain": "water",
    "vendor": "hydrox",
    "report_interval_s": 300,
    "metrics": [{"name": "water_level", "unit": "m", "min": -5, "max": 60}],
}


def _device(i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"wl-{i:05d}",
        "vendor": "hydrox",
        "profile": "hydrox-wl",
        "name": f"水位计 {i}",
        "lat": 30.25,
        "lon": 120.1,
        "area": "demo/riverside/binjiang-rd/g0605",
        **extra,
    }


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'registry.db'}")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- reading ------------------------------------------------------------------------------------


def test_yaml_mapping_holds_every_kind(tmp_path: Path) -> None:
    doc = {"vendors": [VENDOR], "profiles": [PROFILE], "devices": [_device(1), _device(2)]}
    defs = read_file(_write(tmp_path / "city.yaml", yaml.safe_dump(doc, allow_unicode=True)))
    assert [v.id for v in defs.vendors] == ["hydrox"]
    assert [p.id for p in defs.profiles] == ["hydrox-wl"]
    assert [d.id for d in defs.devices] == ["wl-00001", "wl-00002"]
    assert defs.devices[0].name == "水位计 1"


def test_yaml_plain_list_is_devices(tmp_path: Path) -> None:
    defs = read_file(_write(tmp_path / "d.yml", yaml.safe_dump([_device(1)])))
    assert defs.vendors == ()
    assert defs.profiles == ()
    assert defs.devices[0].area == "demo/riverside/binjiang-rd/g0605"


def test_plain_list_kind_can_be_chosen(tmp_path: Path) -> None:
    defs = read_file(_write(tmp_path / "v.yaml", yaml.safe_dump([VENDOR])), plain_list="vendors")
    assert defs.vendors[0].name == "Hydrox"


def test_json_mapping_and_list(tmp_path: Path) -> None:
    defs = read_file(_write(tmp_path / "a.json", json.dumps({"devices": [_device(7)]})))
    assert defs.devices[0].id == "wl-00007"
    defs = read_file(_write(tmp_path / "b.json", json.dumps([_device(8, tags={"k": "v"})])))
    assert defs.devices[0].tags == {"k": "v"}


def test_empty_yaml_file_defines_nothing(tmp_path: Path) -> None:
    assert read_file(_write(tmp_path / "e.yaml", "# nothing yet\n")) == Definitions()


def test_csv_with_tags_and_empty_cells(tmp_path: Path) -> None:
    text = (
        "id,vendor,profile,name,lat,lon,area,tag.river,tag.owner\n"
        'wl-00001,hydrox,hydrox-wl,"Gauge, north bank",30.27,120.08,demo/riverside/x/g01,yudai,\n'
        "\n"
        "wl-00002,hydrox,hydrox-wl,,,,,,water-bureau\n"
    )
    defs = read_file(_write(tmp_path / "d.csv", text))
    first, second = defs.devices
    assert first.name == "Gauge, north bank"
    assert (first.lat, first.lon) == (30.27, 120.08)
    assert first.tags == {"river": "yudai"}
    assert second.lat is None
    assert second.name == ""
    assert second.area == ""
    assert second.tags == {"owner": "water-bureau"}


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("id,vendor,profile\nwl-1,hydrox,hydrox-wl\n".encode("utf-8-sig"))
    assert read_file(path).devices[0].id == "wl-1"


def test_csv_error_names_file_line_and_field(tmp_path: Path) -> None:
    text = (
        "id,vendor,profile,name,lat,lon,area\n"
        "wl-00001,hydrox,hydrox-wl,a,30.2,120.1,\n"
        "wl-00002,hydrox,hydrox-wl,b,north,120.1,\n"
    )
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InvalidDefinitionError) as info:
        read_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "'wl-00002'" in message
    assert "field lat" in message


def test_csv_out_of_range_and_missing_field(tmp_path: Path) -> None:
    text = "id,vendor,profile,lat\nwl-1,hydrox,hydrox-wl,95\nwl-2,,hydrox-wl,\n"
    with pytest.raises(InvalidDefinitionError) as info:
        read_file(_write(tmp_path / "bad.csv", text))
    message = str(info.value)
    assert "line 2 (device 'wl-1'), field lat" in message
    assert "line 3 (device 'wl-2'), field vendor" in message
    assert "2 invalid devices" in message


def test_csv_unknown_column_and_short_row(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinitionError, match=r"line 1: unknown column 'colour'"):
        read_file(_write(tmp_path / "a.csv", "id,vendor,profile,colour\n"))
    with pytest.raises(InvalidDefinitionError, match=r"line 2: 2 cells, the header has 3"):
        read_file(_write(tmp_path / "b.csv", "id,vendor,profile\nwl-1,hydrox\n"))


def test_yaml_error_names_index_and_field(tmp_path: Path) -> None:
    doc = {"devices": [_device(1), _device(2, area="demo//x"), {"id": "wl-3", "vendor": "hydrox"}]}
    with pytest.raises(InvalidDefinitionError) as info:
        read_file(_write(tmp_path / "bad.yaml", yaml.safe_dump(doc)))
    message = str(info.value)
    assert "bad.yaml" in message
    assert "devices[1] (device 'wl-00002'), field area" in message
    assert "devices[2] (device 'wl-3'), field profile" in message


def test_profile_error_names_nested_field(tmp_path: Path) -> None:
    bad = {**PROFILE, "metrics": [{"name": "water_level", "unit": "m", "min": 5, "max": 1}]}
    with pytest.raises(InvalidDefinitionError, match=r"profiles\[0\] \(profile 'hydrox-wl'\)"):
        read_file(_write(tmp_path / "p.yaml", yaml.safe_dump({"profiles": [bad]})))
    bad = {**PROFILE, "report_interval_s": 0}
    with pytest.raises(InvalidDefinitionError, match=r"field report_interval_s"):
        read_file(_write(tmp_path / "q.yaml", yaml.safe_dump({"profiles": [bad]})))


def test_repeated_id_names_both_rows(tmp_path: Path) -> None:
    text = (
        "id,vendor,profile\nwl-1,hydrox,hydrox-wl\nwl-2,hydrox,hydrox-wl\nwl-1,hydrox,hydrox-wl\n"
    )
    with pytest.raises(InvalidDefinitionError, match=r"line 4, field id: 'wl-1' repeats line 2"):
        read_file(_write(tmp_path / "dup.csv", text))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.yaml", "devices: [1, 2\n", "not valid YAML"),
        ("b.json", "{devices: []}", "not valid JSON"),
        ("c.yaml", "things: []\n", "unknown top-level keys"),
        ("d.yaml", "devices: {id: x}\n", "devices must be a list"),
        ("e.yaml", "42\n", "expected a mapping"),
        ("f.txt", "", "unknown file type"),
    ],
)
def test_unreadable_documents(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(InvalidDefinitionError, match=expected):
        read_file(_write(tmp_path / name, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinitionError, match="cannot read"):
        read_file(tmp_path / "nowhere.csv")


# -- importing ----------------------------------------------------------------------------------


def _parse(doc: object) -> Definitions:
    return parse_text(json.dumps(doc), source="<test>", fmt="json")


def _defs(n: int) -> Definitions:
    return _parse(
        {"vendors": [VENDOR], "profiles": [PROFILE], "devices": [_device(i) for i in range(n)]}
    )


def test_import_puts_everything_and_reports_progress(registry: Registry) -> None:
    seen: list[int] = []
    result = import_definitions(registry, _defs(5), progress=seen.append, chunk=2)
    assert result == ImportResult(vendors=1, profiles=1, devices_new=5, devices_updated=0)
    assert seen == [2, 4, 5]
    devices, total = registry.devices(DeviceQuery(limit=10))
    assert total == 5
    assert devices[0].name == "水位计 0"
    assert [v.id for v in registry.vendors()] == ["hydrox"]
    again = import_definitions(registry, _defs(7))
    assert again == ImportResult(vendors=1, profiles=1, devices_new=2, devices_updated=5)


def test_import_refuses_unknown_profile_and_writes_nothing(registry: Registry) -> None:
    defs = _defs(3)
    bad = _parse([_device(9, profile="nope")]).devices
    with pytest.raises(
        InvalidDefinitionError, match=r"devices\[3\] \(device 'wl-00009'\), field profile"
    ):
        import_definitions(registry, Definitions(defs.vendors, defs.profiles, defs.devices + bad))
    assert registry.devices(DeviceQuery())[1] == 0
    assert registry.vendors() == []


def test_import_refuses_vendor_other_than_profiles(registry: Registry) -> None:
    defs = _defs(0)
    other = _parse({"vendors": [{"id": "acme", "name": "Acme"}]}).vendors
    bad = _parse([_device(1, vendor="acme")]).devices
    with pytest.raises(InvalidDefinitionError, match=r"field vendor: 'acme' differs from profile"):
        import_definitions(registry, Definitions(defs.vendors + other, defs.profiles, bad))


def test_files_load_together_and_ids_must_not_repeat_across_them(
    tmp_path: Path, registry: Registry
) -> None:
    first = _write(tmp_path / "a.json", json.dumps({"vendors": [VENDOR], "profiles": [PROFILE]}))
    second = _write(tmp_path / "b.csv", "id,vendor,profile\nwl-1,hydrox,hydrox-wl\n")
    assert load_files(registry, [first, second]).devices_new == 1
    third = _write(
        tmp_path / "c.yaml",
        yaml.safe_dump([{"id": "wl-1", "vendor": "hydrox", "profile": "hydrox-wl"}]),
    )
    with pytest.raises(
        InvalidDefinitionError, match=r"devices\[1\], field id: 'wl-1' repeats devices\[0\]"
    ):
        load_files(registry, [second, third])


def test_import_uses_what_the_registry_already_holds(registry: Registry) -> None:
    import_definitions(registry, _defs(0))
    result = import_definitions(registry, _parse([_device(1)]))
    assert result.devices_new == 1


def test_ten_thousand_csv_rows(tmp_path: Path, registry: Registry) -> None:
    lines = ["id,vendor,profile,name,lat,lon,area,tag.batch"]
    lines += [
        f"wl-{i:05d},hydrox,hydrox-wl,gauge {i},{30.2 + i * 1e-5:.5f},120.1,demo/riverside/s{i % 7}/g01,b{i % 3}"
        for i in range(10_000)
    ]
    path = _write(tmp_path / "many.csv", "\n".join(lines) + "\n")
    import_definitions(registry, _defs(0))
    started = time.perf_counter()
    defs = read_file(path)
    done: list[int] = []
    result = import_definitions(registry, defs, progress=done.append)
    elapsed = time.perf_counter() - started
    assert result.devices_new == 10_000
    assert done[-1] == 10_000
    assert len(done) == 5
    assert registry.interner.device_count == 10_000
    assert registry.devices(DeviceQuery(area="demo/riverside/s3"))[1] == 1429
    assert registry.device("wl-09999").tags == {"batch": "b0"}
    print(f"10,000 rows imported in {elapsed:.1f} s")  # a figure (bench/onboarding.py), not a test


# -- shipped ------------------------------------------------------------------------------------


def test_shipped_definitions_load(registry: Registry) -> None:
    defs = shipped_definitions()
    assert {v.id for v in defs.vendors} >= {"hydrox", "acme", "trafix", "rainco"}
    result = load_shipped(registry)
    assert result.profiles == len(defs.profiles) > 0
    assert registry.profile("hydrox-wl").vendor == "hydrox"
    assert load_shipped(registry) == result  # idempotent
