"""The one shape of a recovery strategy: its spec and the code that applies it.

A :class:`Recovery` is a :class:`~aideploy.core.strategies.StrategySpec` (name, risk, classes,
needs, description) and an ``apply(ctx) -> bool`` callable. Built-ins, plugins and the knowledge
base's trusted command strategies are all built this way. Shell work is described one way,
:func:`commands`: details from the error text reach the commands as quoted ``AIDEPLOY_*``
environment variables (never pasted), and the plan's variables are in their environment as in the
plan's own steps.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from aideploy.core.result import Result
from aideploy.core.strategies import StrategySpec
from aideploy.engine.recovery import StrategyContext

log = logging.getLogger("aideploy.recovery")

_PLAN_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")

#: what applies a strategy: True when it did something worth running the step again
Apply = Callable[[StrategyContext], bool]


@dataclass(frozen=True)
class Recovery:
    """A strategy: what it is (``spec``) and how to apply it (``apply``)."""

    spec: StrategySpec
    apply: Apply


def detail(ctx: StrategyContext, *keys: str) -> str | None:
    """The first of ``keys`` detection found in the error text."""
    for key in keys:
        value = ctx.failure.details.get(key)
        if value:
            return str(value)
    return None


def sh(ctx: StrategyContext, command: str, *, timeout: float | None = None) -> Result:
    """Run ``command`` on the target and log its exit code."""
    result = ctx.runner.run(command, timeout=timeout)
    log.info("recovery: %s -> exit %s", command, result.exit_code)
    return result


def plan_env(ctx: StrategyContext) -> dict[str, str]:
    """The plan's variables (APP_ROOT, DEPLOY_USER, DB_USER...) for a strategy's commands."""
    return {
        key: value
        for key, value in ctx.settings.items()
        if isinstance(value, str) and _PLAN_VARIABLE.match(key) and not key.startswith("AIDEPLOY_")
    }


def details_prefix(ctx: StrategyContext) -> str:
    """``export AIDEPLOY_PORT=...; `` for every detail detection found (quoted), or ``""``."""
    exports = " ".join(
        f"AIDEPLOY_{key.upper()}={shlex.quote(str(value))}"
        for key, value in sorted(ctx.failure.details.items())
        if key.isidentifier()
    )
    return f"export {exports}; " if exports else ""


@dataclass(frozen=True)
class Commands:
    """Shell commands run in order on the target; applied when every one exits 0.

    ``guard``, when given, is a command whose success means the problem is not there: then
    nothing is done and False is returned (nothing to retry for).
    """

    commands: tuple[str, ...]
    guard: str | None = None
    timeout: float | None = None

    def __call__(self, ctx: StrategyContext) -> bool:
        env = plan_env(ctx)
        prefix = details_prefix(ctx)
        if self.guard is not None and ctx.runner.run(prefix + self.guard, env=env).ok:
            log.info("recovery: nothing to do (%s)", self.guard)
            return False
        for command in self.commands:
            result = ctx.runner.run(prefix + command, timeout=self.timeout, env=env)
            log.info("recovery: %s -> exit %s", command, result.exit_code)
            if not result.ok:
                return False
        return True


def commands(*lines: str, guard: str | None = None, timeout: float | None = None) -> Commands:
    """Apply a strategy by running shell commands (see :class:`Commands`)."""
    if not lines:
        raise ValueError("a command strategy needs at least one command")
    return Commands(tuple(lines), guard=guard, timeout=timeout)
