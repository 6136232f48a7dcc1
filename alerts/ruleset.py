"""Rule files and rule sets: YAML in, validated rules out, with errors that name file, rule and field.

`load_rules` reads every file before checking the set, so one bad file loads nothing; `check_rule_set`
checks what no single rule can (unique ids, composite and cluster rules naming device rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from alerts.rules import DEVICE_KINDS, ClusterRule, CompositeRule, Rule, RuleError

_MAX_PROBLEMS = 10  # a file with hundreds of bad rules should not make a megabyte-long message

_ADAPTER: pydantic.TypeAdapter[list[Rule]] = pydantic.TypeAdapter(list[Rule])


def parse_rules(items: Any, source: str = "rules") -> list[Rule]:  # noqa: ANN401 - raw YAML
    """Validate a list of rule mappings.

    Raises:
        RuleError: naming the source, the rule (position and id) and the field for each problem.
    """
    if isinstance(items, Mapping) and set(items) == {"rules"}:
        items = items["rules"]
    if items is None:
        return []
    if not isinstance(items, list):
        msg = f"{source}: expected a list of rules (or a mapping with 'rules'), not {type(items).__name__}"
        raise RuleError(msg)
    try:
        return _ADAPTER.validate_python(items)
    except pydantic.ValidationError as exc:
        raise RuleError(_describe(exc, items, source)) from exc


def _describe(exc: pydantic.ValidationError, items: list[Any], source: str) -> str:
    problems = []
    for err in exc.errors(include_url=False)[:_MAX_PROBLEMS]:
        loc = list(err["loc"])
        index = loc.pop(0) if loc and isinstance(loc[0], int) else None
        item = items[index] if isinstance(index, int) else None
        at = f"rules[{index}]" if index is not None else "rules"
        if isinstance(item, Mapping):
            if "id" in item:
                at += f" (rule {item['id']!r})"
            if loc and loc[0] == item.get("kind"):
                loc.pop(0)  # the discriminator's tag is not a field
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{at}, field {field}: {message}" if field else f"{at}: {message}")
    more = exc.error_count() - len(problems)
    tail = f"; and {more} more" if more > 0 else ""
    return f"{source}: {'; '.join(problems)}{tail}"


def check_rule_set(rules: Sequence[Rule], source: str = "rules") -> None:
    """Checks across rules: unique ids, and composite/cluster rules naming device-level rules.

    Raises:
        RuleError: naming the rule and field.
    """
    by_id: dict[str, Rule] = {}
    for r in rules:
        if r.id in by_id:
            msg = f"{source}: rule {r.id!r}, field id: defined twice"
            raise RuleError(msg)
        by_id[r.id] = r
    for r in rules:
        refs: list[tuple[str, str]] = []
        if isinstance(r, CompositeRule):
            refs = [(f"all_of[{i}]", ref) for i, ref in enumerate(r.all_of)]
        elif isinstance(r, ClusterRule):
            refs = [("rule", r.rule)]
        for field, ref in refs:
            target = by_id.get(ref)
            if target is None:
                msg = f"{source}: rule {r.id!r}, field {field}: no rule {ref!r}"
                raise RuleError(msg)
            if target.kind not in DEVICE_KINDS:
                msg = f"{source}: rule {r.id!r}, field {field}: {ref!r} is a {target.kind} rule; name a device rule ({', '.join(DEVICE_KINDS)})"
                raise RuleError(msg)


def _read_yaml(text: str, source: str) -> Any:  # noqa: ANN401 - whatever the document holds
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise RuleError(msg) from exc


def parse_text(text: str, source: str = "rules") -> list[Rule]:
    """Rules from YAML (or JSON) text: a list of rules, or a mapping ``{rules: [...]}``."""
    return parse_rules(_read_yaml(text, source), source)


def load_rules(paths: Iterable[str | Path]) -> list[Rule]:
    """Read and validate every file first, then check the set: one bad file loads nothing.

    Raises:
        RuleError: a file is unreadable or invalid, or the files together define a rule twice.
    """
    rules: list[Rule] = []
    names: list[str] = []
    for path in paths:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"{p}: cannot read rules: {exc.strerror}"
            raise RuleError(msg) from exc
        rules.extend(parse_text(text, str(p)))
        names.append(str(p))
    check_rule_set(rules, ", ".join(names) or "rules")
    return rules


def shipped_rules() -> list[Rule]:
    """The rules that ship with the hub (``alerts/data/rules.yaml``), for the shipped device types."""
    text = (resources.files("alerts") / "data" / "rules.yaml").read_text(encoding="utf-8")
    rules = parse_text(text, "alerts/data/rules.yaml")
    check_rule_set(rules, "alerts/data/rules.yaml")
    return rules
