"""The rule model: the shipped rules, YAML files, and validation errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.engine import RuleEngine
from alerts.rules import AccumulationRule, OfflineRule, RuleError, ThresholdRule
from alerts.ruleset import load_rules, parse_text, shipped_rules
from devices.loader import shipped_definitions
from devices.registry import Registry
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture


def test_shipped_rules_cover_the_shipped_device_types_and_metrics() -> None:
    profiles = shipped_definitions().profiles
    reports = {(p.type, m.name) for p in profiles for m in p.metrics}
    types = {p.type for p in profiles}
    rules = shipped_rules()
    kinds = {r.kind for r in rules}
    assert kinds == {"threshold", "rate", "accumulation", "offline", "composite", "cluster"}
    for r in rules:
        if isinstance(r, OfflineRule):
            assert set(r.device_type) <= types, r.id
        elif hasattr(r, "metric"):
            assert all((t, r.metric) in reports for t in r.device_type), r.id
            assert r.device_type or any(m == r.metric for _, m in reports), r.id
    # Every shipped device type is watched for silence.
    watched = {t for r in rules if isinstance(r, OfflineRule) for t in r.device_type}
    assert watched == types


def test_shipped_rules_compile_against_the_registry(registry: Registry) -> None:
    engine = RuleEngine(registry, shipped_rules(), lambda: 0)
    assert [r.id for r in engine.rules] == [r.id for r in shipped_rules()]
    assert engine.tick(0) == []


def test_bare_numbers_take_the_rule_s_direction() -> None:
    (rule,) = parse_text(
        """
- id: p
  kind: threshold
  metric: pressure
  direction: below
  levels: {yellow: 0.2, red: {below: 0.1}}
"""
    )
    assert isinstance(rule, ThresholdRule)
    assert {k: (b.direction, b.value) for k, b in rule.levels.items()} == {
        "yellow": ("below", 0.2),
        "red": ("below", 0.1),
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "kind: threshold\n  metric: m\n  levels: {yellow: 5, orange: 4}",
            "rules[0] (rule 'r'): levels.orange: bound 4 must be above yellow's 5",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {purple: 5}",
            "rules[0] (rule 'r'), field levels.purple.[key]: Input should be 'blue', 'yellow', 'orange' or 'red'",
        ),
        ("kind: threshold\n  metric: m\n  levles: {red: 5}", "field levels: Field required"),
        (
            "kind: threshold\n  metric: m\n  levles: {red: 5}",
            "field levles: Extra inputs are not permitted",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {red: 5}\n  for_s: -1",
            "field for_s: Input should be greater than or equal to 0",
        ),
        (
            "kind: thresold\n  metric: m",
            "does not match any of the expected tags: 'threshold', 'rate'",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {red: 5}\n  clear_below: 6",
            "clear_below: 6 must be at or below the lowest bound 5",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {red: {above: 5, below: 3}}",
            "field levels.red: give exactly one of 'above' or 'below'",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {red: 5}\n  overrides: [{device: d1, area: a}]",
            "field overrides[0]: give exactly one of 'device' or 'area'",
        ),
        (
            "kind: threshold\n  metric: m\n  levels: {yellow: 5, red: 7}\n  overrides: [{device: d1, levels: {red: 4}}]",
            "overrides[0] (device d1): levels.red: bound 4 must be above yellow's 5",
        ),
        (
            "kind: rate\n  metric: m\n  window_s: 60\n  levels: {red: {below: 1}}",
            "levels.red: the level is a change within the window",
        ),
        (
            "kind: accumulation\n  metric: m\n  window_s: 1000\n  levels: {red: 5}",
            "window_s: 1000 s is not a whole number of resolution_s (300 s)",
        ),
        (
            "kind: offline\n  after_intervals: 0.5",
            "field after_intervals: Input should be greater than or equal to 1",
        ),
        ("kind: composite\n  all_of: [a]", "field all_of: Tuple should have at least 2 items"),
    ],
)
def test_errors_name_the_rule_and_the_field(body: str, message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_text(f"- id: r\n  {body}\n", "city.yaml")
    assert str(err.value).startswith("city.yaml: rules[0] (rule 'r')")
    assert message in str(err.value)


def test_rule_sets_are_checked_across_files(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("rules:\n- {id: r1, kind: threshold, metric: m, levels: {red: 5}}\n")
    b.write_text(
        "- {id: r2, kind: composite, all_of: [r1, r3]}\n"
        "- {id: r4, kind: cluster, rule: r2, radius_m: 10, window_s: 60}\n"
    )
    with pytest.raises(RuleError, match=r"rule 'r2', field all_of\[1\]: no rule 'r3'"):
        load_rules([a, b])
    b.write_text(
        "- {id: r4, kind: cluster, rule: r1, radius_m: 10, window_s: 60}\n- {id: r5, kind: composite, all_of: [r1, r4]}\n"
    )
    with pytest.raises(RuleError, match=r"'r4' is a cluster rule; name a device rule"):
        load_rules([a, b])
    b.write_text("- {id: r1, kind: offline}\n")
    with pytest.raises(RuleError, match="rule 'r1', field id: defined twice"):
        load_rules([a, b])
    b.write_text("- {id: r2, kind: offline, device_type: water_level}\n")
    assert [r.id for r in load_rules([a, b])] == ["r1", "r2"]
    with pytest.raises(RuleError, match=r"missing\.yaml: cannot read rules"):
        load_rules([tmp_path / "missing.yaml"])
    b.write_text("- {id: r2, kind: offline\n")
    with pytest.raises(RuleError, match=r"b\.yaml: not valid YAML"):
        load_rules([a, b])


def test_accumulation_levels_may_have_their_own_windows() -> None:
    (rule,) = parse_text(
        """
- id: storm
  kind: accumulation
  metric: rainfall
  window_s: 10800
  resolution_s: 900
  levels: {blue: {above: 50, window_s: 43200}, orange: 50}
"""
    )
    assert isinstance(rule, AccumulationRule)
    assert [rule.level_window_s(b) for b in rule.levels.values()] == [43200, 10800]


def test_fingerprints_change_with_the_definition() -> None:
    a = parse_text("- {id: r, kind: threshold, metric: m, levels: {red: 5}}")[0]
    b = parse_text("- {id: r, kind: threshold, metric: m, levels: {red: 6}}")[0]
    assert (
        a.fingerprint()
        == parse_text("- {id: r, kind: threshold, metric: m, levels: {red: 5}}")[0].fingerprint()
    )
    assert a.fingerprint() != b.fingerprint()
