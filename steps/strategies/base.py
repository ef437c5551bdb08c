"""What every recovery strategy shares: identity, risk, and a way to run shell work."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from aideploy.core.recovery import Risk
from aideploy.core.result import Result
from aideploy.engine.recovery import StrategyContext

log = logging.getLogger("aideploy.recovery")


@dataclass(frozen=True)
class BaseStrategy:
    """A named, documented recovery. Subclasses implement :meth:`apply`."""

    name: str
    risk: Risk
    description: str
    classes: tuple[str, ...]

    def apply(self, ctx: StrategyContext) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    # helpers for subclasses
    @staticmethod
    def sh(ctx: StrategyContext, command: str, *, timeout: float | None = None) -> Result:
        result = ctx.runner.run(command, timeout=timeout)
        log.info("recovery: %s -> exit %s", command, result.exit_code)
        return result

    @staticmethod
    def detail(ctx: StrategyContext, *keys: str) -> str | None:
        for key in keys:
            value = ctx.failure.details.get(key)
            if value:
                return str(value)
        return None


@dataclass(frozen=True)
class CommandStrategy(BaseStrategy):
    """Runs a fixed list of shell commands (details are passed as quoted env vars, never pasted).

    Succeeds when every command exits 0. ``guard``, when given, is a command whose success means
    the problem is not there: then nothing is done (and False is returned: nothing to retry for).
    """

    commands: tuple[str, ...] = ()
    guard: str | None = None
    timeout: float | None = None

    def apply(self, ctx: StrategyContext) -> bool:
        env_prefix = " ".join(
            f"AIDEPLOY_{key.upper()}={shlex.quote(str(value))}"
            for key, value in sorted(ctx.failure.details.items())
            if key.isidentifier()
        )
        prefix = f"export {env_prefix}; " if env_prefix else ""
        if self.guard is not None and ctx.runner.run(prefix + self.guard).ok:
            log.info("%s: nothing to do", self.name)
            return False
        for command in self.commands:
            if not self.sh(ctx, prefix + command, timeout=self.timeout).ok:
                return False
        return True


@dataclass(frozen=True)
class FunctionStrategy(BaseStrategy):
    """A strategy whose work is a Python function (the guide's custom recovery function)."""

    func: Callable[[StrategyContext], bool] | None = None

    def apply(self, ctx: StrategyContext) -> bool:
        assert self.func is not None
        return bool(self.func(ctx))
