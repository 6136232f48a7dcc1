"""The rule parser on hostile input: a list of rules or a `RuleError` that names where, nothing else.

Rules arrive as YAML files and as JSON bodies of ``/api/v1/rules`` (Python's json reads NaN, Infinity
and 1e999, so they are in the strategies). `parse_rules`, `parse_text` and `RuleBook.validate`/`put`
must refuse what they cannot use with the documented error and a message that names the rule and field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.rulebook import InvalidRuleError, RuleBook
from alerts.rules import RuleError
from alerts.ruleset import parse_rules, parse_text

BUDGET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ("threshold", "rate", "accumulation", "offline", "composite", "cluster")
FIELDS = (
    "id", "kind", "name", "description", "enabled", "device_type", "areas", "metric", "levels",
    "for_s", "repeat", "deadband", "clear_below", "clear_above", "clear_after_s", "overrides",
    "skip_out_of_range", "direction", "window_s", "max_samples", "resolution_s", "after_intervals",
    "after_s", "level", "remind_s", "area", "all_of", "area_depth", "min_level", "rule",
    "min_devices", "radius_m", "depth", "min_fraction", "suspect_intervals", "device", "disabled",
    "above", "below",
)  # fmt: skip
LEVELS = ("blue", "yellow", "orange", "red", "purple", "", "Red")

numbers = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.sampled_from([0, -1, 1e-320, 1e308, 4096, 300, 3600, 0.5]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(max_size=10),
    st.sampled_from(
        KINDS + LEVELS + ("above", "below", "rise", "fall", "water_level", "r1", "a" * 65)
    ),
)
junk = st.recursive(
    scalars,
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS + LEVELS) | st.text(max_size=3), c, max_size=5)
    ),
    max_leaves=20,
)
levels = st.dictionaries(
    st.sampled_from(LEVELS),
    numbers
    | st.fixed_dictionaries({}, optional={"above": numbers, "below": numbers, "window_s": numbers})
    | junk,
    max_size=5,
)
rule_like = st.fixed_dictionaries(
    {"id": st.sampled_from(["r1", "r2", "bad id", "", "a" * 65]) | st.text(max_size=5), "kind": st.sampled_from(KINDS) | scalars},
    optional={
        **{f: junk for f in FIELDS if f not in ("id", "kind")},
        "levels": levels,
        "metric": st.just("water_level"),
        "window_s": numbers,
        "resolution_s": numbers,
        "overrides": st.lists(st.fixed_dictionaries({}, optional={"device": scalars, "area": scalars, "levels": levels | junk, "disabled": scalars}), max_size=3) | junk,
        "all_of": st.lists(st.sampled_from(["r1", "r2", "x"]), max_size=3) | junk,
    },
)  # fmt: skip
documents = st.one_of(
    junk,
    st.lists(rule_like | junk, max_size=4),
    st.fixed_dictionaries({"rules": st.lists(rule_like, max_size=3)}),
)


def assert_readable(message: str) -> None:
    assert message.strip()
    assert "Traceback" not in message
    assert len(message) < 20_000  # at most _MAX_PROBLEMS problems, each naming rule and field


@BUDGET
@given(documents)
def test_parse_rules_returns_rules_or_rule_error(items):
    try:
        rules = parse_rules(items, "request")
    except RuleError as exc:
        message = str(exc)
        assert_readable(message)
        assert message.startswith("request")
    else:
        assert all(r.id for r in rules)


@BUDGET
@given(st.text(max_size=400) | documents.map(repr))
def test_parse_text_returns_rules_or_rule_error(text):
    try:
        parse_text(text, "rules.yaml")
    except RuleError as exc:
        assert_readable(str(exc))


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a", "kind": "accumulation", "metric": "rainfall", "window_s": float("inf"), "levels": {"yellow": 50}},
        {"id": "a", "kind": "accumulation", "metric": "rainfall", "window_s": 3600, "levels": {"yellow": {"above": 50, "window_s": float("inf")}}},
        {"id": "a", "kind": "rate", "metric": "water_level", "window_s": float("inf"), "levels": {"yellow": 1}},
        {"id": "a", "kind": "threshold", "metric": "water_level", "levels": {"yellow": 1}, "for_s": float("nan")},
        {"id": "a", "kind": "cluster", "rule": "b", "radius_m": float("inf"), "window_s": 60},
    ],
)  # fmt: skip
def test_infinite_and_nan_numbers_are_refused_by_name(body):
    # An infinite accumulation window used to escape as OverflowError (a 500 on the rules API).
    with pytest.raises(RuleError, match="Input should be a finite number"):
        parse_rules([body], "request")


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuleBook]:
    db: Path = tmp_path_factory.mktemp("rulebook") / "rules.db"
    b = RuleBook(f"sqlite:///{db}")
    yield b
    b.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_rule_book_refuses_with_invalid_rule_error_only(book, items):
    before = [r.id for r in book.rules()]
    try:
        book.validate(items)
    except InvalidRuleError as exc:
        assert_readable(str(exc))
    try:
        book.put(items, actor="fuzz")
    except InvalidRuleError as exc:
        assert_readable(str(exc))
    else:
        book.delete(items["id"], actor="fuzz")
    assert [r.id for r in book.rules()] == before
