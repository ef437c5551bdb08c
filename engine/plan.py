"""Plans: an ordered list of steps, each with its work, an optional "already done?" check and a
verification.

Values a step needs (paths, names, domains) reach its commands as environment variables, never
pasted into the command text, so no value can change what the shell runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import ConfigError
from aideploy.core.inputs import MAX_NESTING, check_regular, decode_within_nesting

if TYPE_CHECKING:
    from aideploy.core.result import Result
    from aideploy.engine.connectors.base import Connector
    from aideploy.engine.preview import StepPreview
    from aideploy.engine.runner import Runner

_STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass
class StepContext:
    """What a step's Python work may use."""

    runner: Runner
    connector: Connector
    env: Mapping[str, str]
    deployment_id: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: time for a step that waits (injectable, so waiting is tested without waiting)
    clock: Clock = field(default_factory=SystemClock)

    def run(self, command: str, *, timeout: float | None = None) -> Result:
        return self.runner.run(command, env=self.env, timeout=timeout)


Check = str | Callable[[StepContext], bool] | None


@dataclass(frozen=True)
class Step:
    """One step. Besides its work, a step may say what it needs and how to look before acting:

    ``requires`` names the plan variables that must be set (non-empty) for it to work, so a
    deployment missing one stops before connecting; ``follows`` names earlier steps whose change
    makes this one change too (a new release must be built); ``preview`` is a read-only look at
    the target saying what the step would change (``deploy --check``), for a step whose check
    alone cannot say it (or that has none).
    """

    name: str
    description: str = ""
    commands: tuple[str, ...] = ()
    work: Callable[[StepContext], Result | None] | None = None
    check: Check = None
    verify: Check = None
    timeout: float | None = None
    requires: tuple[str, ...] = ()
    follows: tuple[str, ...] = ()
    preview: Callable[[StepContext], StepPreview] | None = None

    def __post_init__(self) -> None:
        if not _STEP_NAME.match(self.name):
            raise ConfigError(f"step name {self.name!r}: use lower-case letters, digits and '_'")
        if not self.commands and self.work is None:
            raise ConfigError(f"step {self.name!r}: needs commands or work")
        for name in self.requires:
            if not _ENV_NAME.match(name):
                raise ConfigError(f"step {self.name!r}: requires {name!r}, not a variable name")


Hook = Callable[[StepContext], "Result | None"]


@dataclass(frozen=True)
class Plan:
    """Steps in order, their shared environment, and two optional hooks.

    ``on_resume`` runs before a resumed deployment continues (a failing result stops the resume);
    ``on_failed`` runs once when a deployment ends FAILED (not when it pauses for a person), to
    give back what the plan holds on the target. Both get the context the steps get.
    """

    name: str
    steps: tuple[Step, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    on_resume: Hook | None = None
    on_failed: Hook | None = None
    #: how a deployed host shows it is healthy (a shell command that must exit 0, or a function
    #: of the context); a fleet run checks it on every host of a batch before the next batch
    health: Check = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"plan {self.name!r}: duplicate step names {', '.join(dupes)}")
        if not self.steps:
            raise ConfigError(f"plan {self.name!r}: no steps")
        for key, value in self.env.items():
            check_env(key, value, f"plan {self.name!r}")


def check_env(key: str, value: str, where: str) -> None:
    if not _ENV_NAME.match(key):
        raise ConfigError(f"{where}: variable name {key!r} must be UPPER_CASE letters/digits/_")
    if not isinstance(value, str) or "\x00" in value:
        raise ConfigError(f"{where}: value of {key} must be a string without NUL bytes")


@dataclass(frozen=True)
class MissingVariable:
    """A variable a step requires that the plan's environment leaves unset or empty."""

    name: str
    step: str


def missing_variables(plan: Plan) -> tuple[MissingVariable, ...]:
    """Every required variable that is unset, in step order (each named once)."""
    found: dict[str, MissingVariable] = {}
    for step in plan.steps:
        for name in step.requires:
            if not plan.env.get(name) and name not in found:
                found[name] = MissingVariable(name, step.name)
    return tuple(found.values())


def require_variables(plan: Plan) -> None:
    """Raise one ConfigError naming every unset required variable (and the step needing it)."""
    missing = missing_variables(plan)
    if missing:
        listed = ", ".join(f"{m.name} (for {m.step})" for m in missing)
        raise ConfigError(
            f"plan {plan.name}: unset required variable{'s' if len(missing) > 1 else ''} "
            f"{listed}; set with --set NAME=VALUE"
        )


def with_env(plan: Plan, extra: Mapping[str, str]) -> Plan:
    for key, value in extra.items():
        check_env(key, value, "--set")
    return dataclasses.replace(plan, env={**plan.env, **extra})


# -- loading --------------------------------------------------------------------------------

BUILTIN_PLANS = {
    "example": "aideploy.steps.example:plan",
    "stack": "aideploy.steps.stack.plan:plan",
}


def load_plan(spec: str) -> Plan:
    """A plan by built-in name, ``module:attribute``, or a ``.toml`` plan file.

    ``module:attribute`` names a :class:`Plan`, or a Python function that takes no arguments and
    returns one (as the built-in plans do). Anything else (a module, a class, a built-in
    function, a function that needs arguments) is refused without being called.
    """
    if spec.endswith(".toml") or Path(spec).is_file():
        return load_plan_file(Path(spec))
    target = BUILTIN_PLANS.get(spec, spec)
    if ":" not in target:
        check_regular(spec, error=ConfigError)  # a FIFO or directory given as the plan file
        known = ", ".join(sorted(BUILTIN_PLANS))
        raise ConfigError(f"unknown plan {spec!r} (built-in: {known}; or a .toml file)")
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        # TypeError, ValueError: a relative or empty module name (":x", ".x:y")
        raise ConfigError(f"cannot load plan {spec!r}: {exc}") from None
    if isinstance(obj, Plan):
        return obj
    if not (inspect.isfunction(obj) and _takes_no_arguments(obj)):
        raise ConfigError(f"--plan {spec}: not a plan ({_kind_of(obj)})")
    plan = obj()
    if not isinstance(plan, Plan):
        raise ConfigError(f"--plan {spec}: not a plan ({attr}() returned {_kind_of(plan)})")
    return plan


def _takes_no_arguments(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind()
    except (TypeError, ValueError):
        return False
    return True


def _kind_of(obj: object) -> str:
    """What ``obj`` is, for a message: "a module", "a built-in function", "a str"..."""
    if inspect.ismodule(obj):
        return "a module"
    if inspect.isclass(obj):
        return "a class"
    if inspect.isbuiltin(obj) or inspect.ismethoddescriptor(obj):
        return "a built-in function"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return "a function that needs arguments"
    if obj is None:
        return "None"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_STEP_KEYS = {"name", "description", "commands", "check", "verify", "timeout", "requires"}


def load_plan_file(path: Path) -> Plan:
    """Read a TOML plan::

    name = "hello"
    [env]
    SITE_ROOT = "/srv/hello"
    [[steps]]
    name = "prepare"
    requires = ["SITE_ROOT"]          # must be set (non-empty), else nothing connects
    commands = ['mkdir -p "$SITE_ROOT"']
    check = 'test -d "$SITE_ROOT"'

    A top-level ``health = "curl -fsS http://localhost/health"`` names the plan's health check.
    """
    check_regular(path, error=ConfigError)
    too_deep = ConfigError(
        f"{path}: tables and arrays nested more than {MAX_NESTING} levels deep "
        "(the limit for a plan file)"
    )
    try:
        data = decode_within_nesting(tomllib.loads, path.read_text(encoding="utf-8"), too_deep)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = set(data) - {"name", "description", "env", "steps", "health"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    steps = []
    for index, raw in enumerate(data.get("steps", [])):
        where = f"{path}: steps[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table")
        bad = set(raw) - _STEP_KEYS
        if bad:
            raise ConfigError(f"{where}: unknown key {sorted(bad)[0]!r}")
        commands = raw.get("commands", [])
        if isinstance(commands, str):
            commands = [commands]
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise ConfigError(f"{where}.commands: expected a list of strings")
        for key in ("check", "verify"):
            if key in raw and not isinstance(raw[key], str):
                raise ConfigError(f"{where}.{key}: expected a string")
        timeout = raw.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ConfigError(f"{where}.timeout: expected a positive number")
        requires = raw.get("requires", [])
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            raise ConfigError(f"{where}.requires: expected a list of variable names")
        if "name" not in raw or not isinstance(raw["name"], str):
            raise ConfigError(f"{where}.name: missing required field")
        steps.append(
            Step(
                name=raw["name"],
                description=str(raw.get("description", "")),
                commands=tuple(commands),
                check=raw.get("check"),
                verify=raw.get("verify"),
                timeout=float(timeout) if timeout is not None else None,
                requires=tuple(requires),
            )
        )
    env = data.get("env", {})
    if not isinstance(env, dict):
        raise ConfigError(f"{path}: env: expected a table")
    health = data.get("health")
    if health is not None and not isinstance(health, str):
        raise ConfigError(f"{path}: health: expected a string (a shell command)")
    return Plan(
        name=str(data.get("name", path.stem)),
        steps=tuple(steps),
        env={str(k): str(v) for k, v in env.items()},
        description=str(data.get("description", "")),
        health=health,
    )
