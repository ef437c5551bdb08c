"""Recovery strategies: the built-in catalogue, plugins, and custom strategies from config."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from aideploy.engine.errors import ConfigError
from aideploy.engine.recovery import Strategy
from aideploy.steps.strategies.catalogue import BUILTIN

log = logging.getLogger("aideploy.recovery")

ENTRY_POINT_GROUP = "aideploy.strategies"


def registry(extra: Iterable[Strategy] = (), *, plugins: bool = True) -> dict[str, Strategy]:
    """Every strategy by name: built-ins, then entry-point plugins, then ``extra``.

    A plugin is an entry point in the ``aideploy.strategies`` group whose object is a Strategy
    (or a callable returning one).
    """
    found: dict[str, Strategy] = {s.name: s for s in BUILTIN}
    if plugins:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                strategy = obj() if callable(obj) and not hasattr(obj, "apply") else obj
            except Exception as exc:
                log.error("strategy plugin %s failed to load: %s", ep.name, exc)
                continue
            if not all(hasattr(strategy, a) for a in ("name", "risk", "apply", "classes")):
                log.error("strategy plugin %s is not a strategy", ep.name)
                continue
            found[strategy.name] = strategy
    for strategy in extra:
        found[strategy.name] = strategy
    return found


def get(name: str, strategies: dict[str, Strategy]) -> Strategy:
    try:
        return strategies[name]
    except KeyError:
        raise ConfigError(f"unknown recovery strategy {name!r}") from None
