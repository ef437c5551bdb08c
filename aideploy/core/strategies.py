"""The recovery-strategy catalogue: one :class:`StrategySpec` per built-in strategy.

The data is in ``strategies.toml`` beside this module, read and checked once at import: a
mistake there stops the import with the file, the strategy and the key at fault. Both floors that
need it read it from here: the knowledge floor (the ranker's risks, classes and related
strategies, the reports) and the steps floor (whose ``APPLY`` table holds the code that applies
each strategy, under the same name).

A strategy from elsewhere (a plugin, a trusted command strategy of the knowledge base) is
described by a ``StrategySpec`` too; it is simply not in :data:`CATALOGUE`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from aideploy.core.errors import AideployError
from aideploy.core.recovery import Risk

#: in ``classes``: the strategy serves every error class
EVERY_CLASS = "*"

CATALOGUE_FILE = "strategies.toml"
#: how errors name the file
CATALOGUE_SOURCE = f"aideploy/core/{CATALOGUE_FILE}"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DETAIL = re.compile(r"^[a-z][a-z0-9_]*$")  # found in the error text: port, service, path...
_PLAN_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")  # set by the plan: APP_ROOT, DB_USER...
_NEED = re.compile(f"{_DETAIL.pattern}|{_PLAN_VARIABLE.pattern}")
_KEYS = ("risk", "classes", "needs", "description")


class CatalogueError(AideployError):
    """The strategy catalogue's data file is not valid."""


@dataclass(frozen=True)
class StrategySpec:
    """What a recovery strategy is, without running it.

    ``classes`` are the error classes it serves (``"*"``: every class); ``needs`` what it reads:
    details found in the error text in lower case (``port``, ``service``, ``path``, ``command``,
    ``package``; commands see them as ``AIDEPLOY_<NAME>``) and plan variables in upper case
    (``APP_ROOT``, ``DEPLOY_USER``...).
    """

    name: str
    risk: Risk
    description: str
    classes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def serves(self, error_class: str) -> bool:
        return EVERY_CLASS in self.classes or error_class in self.classes

    def unmet(
        self, details: Mapping[str, object], variables: Mapping[str, object]
    ) -> tuple[str, ...]:
        """What it needs and was not given: details the failure's evidence does not name,
        plan variables the plan does not set (an empty value is not a value). A strategy with
        an unmet need is not a candidate: it would have to guess what to act on."""
        return tuple(
            n
            for n in self.needs
            if not str((details if _DETAIL.match(n) else variables).get(n) or "").strip()
        )

    @property
    def details(self) -> tuple[str, ...]:
        """What it needs from the failure's evidence (the error text)."""
        return tuple(n for n in self.needs if _DETAIL.match(n))

    @property
    def plan_variables(self) -> tuple[str, ...]:
        """What it needs from the plan."""
        return tuple(n for n in self.needs if _PLAN_VARIABLE.match(n))


def _words(
    where: str, key: str, value: Any, pattern: re.Pattern[str], *, empty: bool
) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogueError(f"{where}: {key} must be a list of strings, not {value!r}")
    if not value and not empty:
        raise CatalogueError(f"{where}: {key} is empty")
    bad = [v for v in value if not pattern.match(v)]
    if bad:
        raise CatalogueError(f"{where}: {key}: {bad[0]!r} is not a valid name")
    if len(set(value)) != len(value):
        raise CatalogueError(f"{where}: {key} names one entry twice")
    return tuple(value)


def _spec(source: str, name: str, entry: Any) -> StrategySpec:
    where = f"{source}: [{name}]"
    if not _NAME.match(name):
        raise CatalogueError(f"{where}: a strategy name is lower case letters, digits and _")
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a table of {', '.join(_KEYS)}")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise CatalogueError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(_KEYS)})")
    missing = [k for k in _KEYS if k not in entry]
    if missing:
        raise CatalogueError(f"{where}: missing {missing[0]!r}")
    risk = entry["risk"]
    if risk not in {r.value for r in Risk}:
        raise CatalogueError(
            f"{where}: risk {risk!r} is not one of {', '.join(r.value for r in Risk)}"
        )
    description = entry["description"]
    if not isinstance(description, str) or not description.strip() or "\n" in description:
        raise CatalogueError(f"{where}: description must be one line of text")
    classes = entry["classes"]
    if classes != [EVERY_CLASS]:
        classes = _words(where, "classes", classes, _NAME, empty=False)
    needs = _words(where, "needs", entry["needs"], _NEED, empty=True)
    return StrategySpec(name, Risk(risk), description.strip(), tuple(classes), needs)


def load_catalogue(text: str, source: str = CATALOGUE_SOURCE) -> dict[str, StrategySpec]:
    """Every strategy of a catalogue file's text, by name, in the file's order."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: not valid TOML: {exc}") from None
    if not data:
        raise CatalogueError(f"{source}: no strategy")
    return {name: _spec(source, name, entry) for name, entry in data.items()}


def _read() -> dict[str, StrategySpec]:
    resource = files("aideploy.core").joinpath(CATALOGUE_FILE)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{CATALOGUE_SOURCE} cannot be read: {exc}") from None
    return load_catalogue(text)


#: every built-in strategy by name, in the catalogue file's order
CATALOGUE: dict[str, StrategySpec] = _read()
