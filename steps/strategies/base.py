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
from dataclasses import dataclass, replace

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


def need(ctx: StrategyContext, name: str) -> str:
    """What a strategy needs: the detail ``name`` (lower case) of the failure's evidence, or
    the plan variable ``name`` (upper case). There is no default: the executor applies a
    strategy only with every need given, so a missing one is a bug and raises LookupError."""
    source = ctx.failure.details if name.islower() else ctx.settings
    value = source.get(name)
    if value is None or not str(value).strip():
        raise LookupError(f"{name} was not given: a strategy never guesses what to act on")
    return str(value)


#: settings a strategy may read besides its needs: how it may act, never what it acts on
_HOW = ("auto_approve",)


def only_needs(spec: StrategySpec, apply: Apply) -> Apply:
    """``apply``, seeing only what ``spec`` needs: the failure's details it names, the plan
    variables it names (and whether high-risk work is approved). What it does not declare, it
    cannot read, so it cannot act on something nobody named."""
    details = frozenset(spec.details)
    wanted = frozenset(spec.plan_variables) | frozenset(_HOW)

    def narrowed(ctx: StrategyContext) -> bool:
        failure = replace(
            ctx.failure, details={k: v for k, v in ctx.failure.details.items() if k in details}
        )
        settings = {k: v for k, v in ctx.settings.items() if k in wanted}
        return apply(replace(ctx, failure=failure, settings=settings))

    narrowed.__doc__ = getattr(apply, "__doc__", None)
    narrowed.__wrapped__ = apply  # type: ignore[attr-defined]
    return narrowed


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
