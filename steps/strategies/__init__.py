"""Recovery strategies: the built-in catalogue, plugins, and custom strategies from config."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.core.recovery import Risk
from aideploy.engine.recovery import Strategy
from aideploy.steps.strategies.catalogue import BUILTIN, PlanCommandStrategy

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


def from_knowledge(infos: Iterable[Any], known: Iterable[str] = ()) -> list[Strategy]:
    """Command strategies the knowledge base defines, for those a person trusts.

    ``infos`` are the KB's strategy rows (``name``, ``description``, ``risk``, ``trusted``,
    ``commands``). A row without commands only names a strategy for the statistics; an
    untrusted one (imported, not yet reviewed with ``aideploy learn trust``) never runs; a row
    named like a built-in or plugin strategy in ``known`` does not replace it.
    """
    taken = set(known)
    out: list[Strategy] = []
    for info in infos:
        if not info.commands:
            continue
        if not info.trusted:
            log.info("strategy %s from the knowledge base is not trusted; not run", info.name)
            continue
        if info.name in taken:
            log.warning(
                "strategy %s from the knowledge base has the name of a built-in or plugin "
                "strategy; the built-in one is kept",
                info.name,
            )
            continue
        out.append(
            PlanCommandStrategy(
                name=info.name,
                risk=Risk(info.risk),
                description=info.description or f"commands from the knowledge base ({info.name})",
                classes=(),
                commands=tuple(info.commands),
            )
        )
    return out


def get(name: str, strategies: dict[str, Strategy]) -> Strategy:
    try:
        return strategies[name]
    except KeyError:
        raise ConfigError(f"unknown recovery strategy {name!r}") from None
