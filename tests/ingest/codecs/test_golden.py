"""Golden vendor payloads (``testdata/<vendor>/<case>/``) and checks of the shipped profiles.

Each case directory holds:

* ``topic.txt``: the topic the message arrived on (``sensors/{vendor}/{device}/up``);
* ``payload.json``: the bytes the device sent (need not be valid JSON);
* ``profile.txt`` (optional): the profile whose codec decodes it; default: the topic device's;
* ``expected.csv``: the readings, ``device_id,metric,ts_ms,value,quality`` in canonical units;
* ``expected.err``: with ``expected.csv``, the rejected parts in order, one ``reason[,device_id]``
  a line; without it, the one reason the whole message is rejected for.

The message is received at ``tests.strategies.RECEIVED_MS``. Add a case by adding files.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from ingest import units
from ingest.codecs import build
from tests.ingest.codecs.conftest import TESTDATA, shipped_profiles, shipped_vendors

CASES = sorted(p.parent for p in TESTDATA.glob("*/*/topic.txt"))


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [s.strip() for s in text.splitlines() if s.strip() and not s.startswith("#")]


def test_there_are_cases_for_every_vendor():
    assert {case.parent.name for case in CASES} >= {v.id for v in shipped_vendors()}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_golden(codecs, case):
    topic = (case / "topic.txt").read_text(encoding="utf-8").strip()
    raw = codecs.raw(topic, (case / "payload.json").read_bytes())
    profile = case / "profile.txt"
    codec = codecs.codec(profile.read_text().strip()) if profile.exists() else None
    out = codecs.decode(raw, codec)

    expected_err = _lines(case / "expected.err") if (case / "expected.err").exists() else []
    if not (case / "expected.csv").exists():
        assert len(expected_err) == 1, "a case without expected.csv needs one reason"
        assert out.whole is not None, f"expected the message to be rejected ({expected_err[0]})"
        assert out.whole.reason == expected_err[0], out.whole.detail
        assert out.rows == []
        return

    assert out.whole is None, out.whole
    assert len(out.rejected) == len(expected_err), [e.detail for e in out.rejected]
    for line, err in zip(expected_err, out.rejected, strict=True):
        reason, _, device = line.partition(",")
        assert err.reason == reason, err.detail
        assert not device or err.device_id == device, err.detail

    with (case / "expected.csv").open(encoding="utf-8", newline="") as f:
        expected = list(csv.DictReader(f))
    assert len(out.rows) == len(expected), out.rows
    for (device, metric, ts, value, quality), row in zip(out.rows, expected, strict=True):
        assert (device, metric, ts, quality) == (
            row["device_id"],
            row["metric"],
            int(row["ts_ms"]),
            int(row["quality"]),
        )
        assert math.isclose(value, float(row["value"]), rel_tol=1e-9, abs_tol=1e-12), (
            metric,
            value,
        )


# -- the shipped profiles ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", shipped_profiles(), ids=lambda p: p.id)
def test_shipped_profile(profile):
    assert profile.vendor in {v.id for v in shipped_vendors()}
    for m in profile.metrics:
        assert units.known(m.unit), f"{profile.id}.{m.name}: unit {m.unit!r}"
    build(profile.codec)  # validates the codec block
    # A gateway decodes for other devices of its vendor: their profiles hold the metrics.
    peers = [p for p in shipped_profiles() if p.vendor == profile.vendor]
    for f in profile.codec.get("fields", []):
        holders = [profile] if profile.type != "gateway" else peers
        specs = [s for p in holders if (s := p.metric(f["metric"])) is not None]
        assert specs, f"{profile.id}: codec field {f['path']} maps to no metric of {holders}"
        for spec in specs:
            units.conversion(f.get("unit") or spec.unit, spec.unit)  # raises if not convertible


def test_shipped_metrics_have_one_unit_each():
    seen: dict[str, tuple[str, str]] = {}
    for p in shipped_profiles():
        for m in p.metrics:
            first = seen.setdefault(m.name, (p.id, m.unit))
            assert first[1] == m.unit, f"{m.name}: {first[0]} says {first[1]}, {p.id} says {m.unit}"


def test_shipped_ids_are_unique():
    ids = [p.id for p in shipped_profiles()]
    assert len(ids) == len(set(ids))
