"""Recovery strategies: the built-in catalogue, plugins, and the knowledge base's own.

Every strategy has one shape, :class:`Recovery`: a :class:`StrategySpec` (what it is) and an
``apply(ctx) -> bool`` callable (how it is done). A plugin is an entry point in the
``aideploy.strategies`` group whose object is a ``Recovery`` (or a callable returning one)::

    flush_cache = Recovery(
        StrategySpec("flush_cache", Risk.LOW, "Empty the app's cache.", ("disk_full",)),
        commands('rm -rf "$APP_ROOT/shared/cache"/*'),
    )
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.core.recovery import Risk
from aideploy.core.strategies import CATALOGUE, StrategySpec
from aideploy.engine.recovery import Strategy
from aideploy.steps.strategies.base import Apply, Commands, Recovery, commands
from aideploy.steps.strategies.catalogue import APPLY, BUILTIN

log = logging.getLogger("aideploy.recovery")

ENTRY_POINT_GROUP = "aideploy.strategies"

__all__ = [
    "APPLY",
    "BUILTIN",
    "CATALOGUE",
    "ENTRY_POINT_GROUP",
    "Apply",
    "Commands",
    "Recovery",
    "StrategySpec",
    "as_strategy",
    "commands",
    "from_knowledge",
    "get",
    "registry",
]


def as_strategy(obj: Any) -> Strategy | None:
    """``obj`` as a strategy: a :class:`Recovery` (or anything with a ``spec`` and an
    ``apply``) as it is; an older plugin object with ``name``, ``risk``, ``description``,
    ``classes`` and ``apply`` as a ``Recovery`` of the same; None for anything else."""
    if isinstance(getattr(obj, "spec", None), StrategySpec) and callable(
        getattr(obj, "apply", None)
    ):
        return obj  # type: ignore[no-any-return]
    if all(hasattr(obj, a) for a in ("name", "risk", "description", "apply")) and callable(
        obj.apply
    ):
        try:
            spec = StrategySpec(
                str(obj.name),
                Risk(obj.risk),
                str(obj.description),
                tuple(getattr(obj, "classes", ()) or ()),
            )
        except ValueError:
            return None
        return Recovery(spec, obj.apply)
    return None


def registry(extra: Iterable[Strategy] = (), *, plugins: bool = True) -> dict[str, Strategy]:
    """Every strategy by name: built-ins, then entry-point plugins, then ``extra``.

    A plugin with the name of a built-in replaces it.
    """
    found: dict[str, Strategy] = {s.spec.name: s for s in BUILTIN}
    if plugins:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                strategy = as_strategy(obj)
                if strategy is None and callable(obj):
                    strategy = as_strategy(obj())
            except Exception as exc:
                log.error("strategy plugin %s failed to load: %s", ep.name, exc)
                continue
            if strategy is None:
                log.error("strategy plugin %s is not a strategy", ep.name)
                continue
            found[strategy.spec.name] = strategy
    for strategy in extra:
        found[strategy.spec.name] = strategy
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
        spec = StrategySpec(
            info.name,
            Risk(info.risk),
            info.description or f"commands from the knowledge base ({info.name})",
        )
        out.append(Recovery(spec, commands(*info.commands)))
    return out


def get(name: str, strategies: dict[str, Strategy]) -> Strategy:
    try:
        return strategies[name]
    except KeyError:
        raise ConfigError(f"unknown recovery strategy {name!r}") from None
