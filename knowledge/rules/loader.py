"""Reading a rule file (the built-in rules are ``rules.toml`` beside this module).

Every entry is checked when the file is read: its fields (:data:`FIELDS`, no others) and their
types, then their values (a known error class, known strategies, a weight in 0..1, a pattern that
compiles, a name used once). The first problem is raised as one :class:`RuleFileError` naming the
file, the rule and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import regex

from aideploy.core.errors import ConfigError
from aideploy.knowledge.classes import CATALOGUE, ERROR_CLASSES, UNKNOWN, strategies_for

#: the built-in rules
BUILTIN_RULE_FILE = Path(__file__).with_name("rules.toml")

#: flags every rule of a rule file is compiled with
RULE_FLAGS = regex.IGNORECASE


class RuleFileError(ConfigError):
    """A rule file that cannot be read or holds a bad entry."""


#: the fields of a ``[[rule]]``: what each holds, and whether it may be left out
FIELDS: dict[str, tuple[str, bool]] = {
    "name": ("a non-empty string", True),
    "error_class": ("an error class", True),
    "weight": ("a number from 0 to 1", True),
    "pattern": ("a non-empty string or a list of strings", True),
    "strategies": ("a non-empty list of strategy names", False),
}


@dataclass(frozen=True)
class RuleData:
    """A checked rule: the pattern joined, the strategies filled in from its class."""

    name: str
    error_class: str
    pattern: str
    strategies: tuple[str, ...]
    weight: float


def load_rules(path: Path, *, every_class: bool = False) -> tuple[RuleData, ...]:
    """The rules of the TOML file at ``path``, in file order; raises RuleFileError.

    With ``every_class``, each error class but ``unknown`` must have a rule.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read the rule file: {exc.strerror}") from None
    return parse_rules(text, source=str(path), every_class=every_class)


def parse_rules(
    text: str, *, source: str = "<rules>", every_class: bool = False
) -> tuple[RuleData, ...]:
    """The rules of a rule file's text (see :func:`load_rules`)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise RuleFileError(f"{source}: unknown top-level key {unknown[0]!r} (only [[rule]])")
    entries = document.get("rule")
    if not isinstance(entries, list) or not entries:
        raise RuleFileError(f"{source}: no [[rule]] entries")
    rules: list[RuleData] = []
    seen: set[str] = set()
    for number, raw in enumerate(entries, 1):
        rule = _checked(raw, f"{source}: rule {number}{_label(raw)}")
        if rule.name in seen:
            raise RuleFileError(
                f"{source}: rule {number}{_label(raw)}, field 'name': the name of an earlier rule"
            )
        seen.add(rule.name)
        rules.append(rule)
    if every_class:
        missing = [
            c for c in ERROR_CLASSES if c != UNKNOWN and c not in {r.error_class for r in rules}
        ]
        if missing:
            raise RuleFileError(f"{source}: no rule for error class {missing[0]!r}")
    return tuple(rules)


@cache
def builtin_rules() -> tuple[RuleData, ...]:
    """The built-in rules (read once per process)."""
    return load_rules(BUILTIN_RULE_FILE, every_class=True)


def _label(raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f" ({name!r})" if isinstance(name, str) and name else ""


def _checked(raw: Any, where: str) -> RuleData:
    if not isinstance(raw, dict):
        raise RuleFileError(f"{where}: expected a table of fields, got {type(raw).__name__}")

    def bad(field: str, problem: str) -> RuleFileError:
        return RuleFileError(f"{where}, field {field!r}: {problem}")

    for key in raw:
        if key not in FIELDS:
            raise bad(key, f"unknown field (the fields are: {', '.join(FIELDS)})")
    for key, (what, required) in FIELDS.items():
        if required and key not in raw:
            raise bad(key, f"missing (expected {what})")

    def typed(key: str, ok: bool) -> Any:
        if not ok:
            value = raw[key]
            raise bad(key, f"expected {FIELDS[key][0]}, got {type(value).__name__} {value!r}")
        return raw[key]

    name = typed("name", isinstance(raw["name"], str) and bool(raw["name"]))
    error_class = typed("error_class", isinstance(raw["error_class"], str))
    if error_class not in ERROR_CLASSES or error_class == UNKNOWN:
        known = ", ".join(c for c in ERROR_CLASSES if c != UNKNOWN)
        raise bad("error_class", f"unknown error class {error_class!r} (one of: {known})")
    w = raw["weight"]
    weight = typed("weight", isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w <= 1)
    p = raw["pattern"]
    parts = typed(
        "pattern",
        (isinstance(p, str) and bool(p))
        or (isinstance(p, list) and bool(p) and all(isinstance(x, str) for x in p)),
    )
    pattern = parts if isinstance(parts, str) else "".join(parts)
    try:
        regex.compile(pattern, RULE_FLAGS)
    except (regex.error, RecursionError, OverflowError) as exc:
        raise bad("pattern", f"does not compile: {exc}") from None
    strategies = strategies_for(error_class)
    if "strategies" in raw:
        given = raw["strategies"]
        typed("strategies", isinstance(given, list) and bool(given))
        for strategy in given:
            if not isinstance(strategy, str) or strategy not in CATALOGUE:
                raise bad("strategies", f"unknown strategy {strategy!r}")
        strategies = tuple(given)
    return RuleData(name, error_class, pattern, strategies, float(weight))
