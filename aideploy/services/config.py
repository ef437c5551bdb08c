"""The configuration file (``ai_deployment_config.json``): one declared schema, validated once.

Every field is declared below with its type, default and description; :func:`load_config`
checks a file against it and returns typed settings, or raises :class:`ConfigError` with one line
naming the field and the problem. Values that end up in shell commands (host names, domains, user
names, paths) are checked here so that none can carry shell syntax; commands quote them anyway.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from aideploy.core.errors import ConfigError
from aideploy.core.schema import (
    _range,
    check_domain,
    check_hostname,
    check_name,
    check_path,
    check_username,
    spec,
)
from aideploy.core.settings import DeploymentSettings, SSHSettings
from aideploy.engine.metrics import MetricsSettings
from aideploy.engine.notify import NotificationSettings
from aideploy.knowledge.rules import (
    UnsafePatternError,
    check_pattern_safe,
    error_class_problem,
    severity_problem,
)

T = TypeVar("T")

# -- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AIFeatures:
    intelligent_error_detection: bool = spec("Classify failures (rules + model).", True)
    auto_fix_common_issues: bool = spec("Apply the ranked recovery automatically.", True)
    learn_from_failures: bool = spec("Record outcomes in the knowledge base.", True)
    optimization_suggestions: bool = spec("Show suggestions in the report.", True)


@dataclass(frozen=True)
class Specs:
    cpu_cores: int | None = spec("CPU cores the server is expected to have.", None, _range(1, 4096))
    memory_gb: int | None = spec(
        "Memory (GiB) the server is expected to have.", None, _range(1, 65536)
    )
    storage_gb: int | None = spec(
        "Disk (GiB) the server is expected to have.", None, _range(1, 1_000_000)
    )


@dataclass(frozen=True)
class ServerProfile:
    hostname: str = spec("Host name or IP address of the server.", check=check_hostname)
    username: str | None = spec(
        "Remote user to log in as (unset: ~/.ssh/config's User, then root).", None, check_username
    )
    domain: str | None = spec("Public domain the app is served on.", None, check_domain)
    port: int | None = spec("SSH port (default: ssh.port).", None, _range(1, 65535))
    key_file: Path | None = spec(
        "Private key for this server (default: ssh.key_file).", None, check_path
    )
    use_password: bool = spec("Log in with a password (asked for, never stored).", False)
    specs: Specs = spec("Expected server size.", default=None)
    protected: bool = spec(
        "Ask for confirmation (typing the profile name) before deploying.", False
    )
    allowed_users: list[str] = spec(
        "Local users allowed to deploy to this profile (empty: all).", []
    )


def _check_pattern(value: str) -> str | None:
    """A regular expression that RE2 compiles (and so matches in time linear in the text)."""

    try:
        check_pattern_safe(value)
    except UnsafePatternError as exc:
        return str(exc)
    return None


def _check_error_class(value: str) -> str | None:

    return error_class_problem(value)


def _check_severity(value: str) -> str | None:

    return severity_problem(value.lower())  # a file's severity is read in any case


@dataclass(frozen=True)
class PatternSpec:
    name: str = spec("Unique name of the custom error pattern.", check=check_name)
    pattern: str = spec(
        "Regular expression matched against the failed command's output.", check=_check_pattern
    )
    recovery: str = spec("Name of the recovery strategy to run.", check=check_name)
    error_class: str = spec("Error class the pattern detects.", "unknown", _check_error_class)
    severity: str = spec("low, medium, high or critical.", "medium", _check_severity)
    description: str = spec("What the error means.", "")
    retry_count: int = spec("Attempts with this recovery.", 3, _range(0, 20))


@dataclass(frozen=True)
class Config:
    version: str = spec("Configuration format version.", "1.0")
    ssh: SSHSettings = spec("SSH connection settings.", default=None)
    deployment: DeploymentSettings = spec("Deployment behaviour.", default=None)
    ai_features: AIFeatures = spec("Detection, recovery and learning switches.", default=None)
    server_profiles: dict[str, ServerProfile] = spec("Named servers (production, staging...).", {})
    metrics: MetricsSettings = spec("Prometheus textfile and live endpoint.", default=None)
    notifications: NotificationSettings = spec("Slack/Discord webhooks.", default=None)
    custom_patterns: list[PatternSpec] = spec(
        "Extra error patterns (the guide's ErrorPattern).", []
    )

    def profile(self, name: str) -> ServerProfile:
        try:
            return self.server_profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.server_profiles)) or "none defined"
            raise ConfigError(f"unknown profile {name!r} (profiles: {known})") from None


SUPPORTED_VERSIONS = ("1", "1.0")

# -- validation ------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is dict:
        return "object"
    if origin is list:
        return "list"
    if is_dataclass(tp):
        return "object"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "true/false",
        Path: "path string",
    }.get(tp, str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where)
    if is_dataclass(tp):
        return _build(typing.cast(type[Any], tp), value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {_json_type(value)}")
        _, val_tp = typing.get_args(tp)
        out = {}
        for key, item in value.items():
            problem = check_name(key)
            if problem:
                raise ConfigError(f"{where}: {problem}")
            out[key] = _convert(item, val_tp, _join(where, key))
        return out
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_json_type(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item, item_tp, f"{where}[{i}]") for i, item in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_json_type(value)}")
        return value
    if tp is int:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # the guide writes specs as strings ("4")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_json_type(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_json_type(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_json_type(value)}")
        if "\x00" in value or "\n" in value:
            raise ConfigError(f"{where}: control characters are not allowed")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {_json_type(value)}")
        return value  # checked as text, expanded after the check
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {_json_type(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"{_join(where, key)}: unknown key (allowed: {choices})")
    kwargs: dict[str, Any] = {}
    for name, fld in known.items():
        path = _join(where, name)
        tp = hints[name]
        if name not in data:
            if fld.default is MISSING and fld.default_factory is MISSING:
                raise ConfigError(f"{path}: missing required field")
            if fld.default is None and is_dataclass(tp):
                kwargs[name] = _build(
                    typing.cast(type[Any], tp), {}, path
                )  # a section left out: its defaults
            continue
        value = _convert(data[name], tp, path)
        check = fld.metadata.get("check")
        if check is not None and value is not None:
            problem = check(str(value) if isinstance(value, Path) else value)
            if problem:
                raise ConfigError(f"{path}: {problem}")
        if value is not None and (tp is Path or Path in typing.get_args(tp)):
            value = Path(value).expanduser()
        kwargs[name] = value
    for name, fld in known.items():
        if name not in kwargs and isinstance(fld.default, Path):
            kwargs[name] = fld.default.expanduser()
    return cls(**kwargs)


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate already-parsed JSON data against the schema."""
    try:
        config = _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if config.version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"{source}: version: unsupported version {config.version!r} "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    seen: set[str] = set()
    for i, pattern in enumerate(config.custom_patterns):
        if pattern.name in seen:
            raise ConfigError(
                f"{source}: custom_patterns[{i}].name: {pattern.name!r} is already the name of "
                "an earlier pattern"
            )
        seen.add(pattern.name)
    return config


def load_config(path: Path) -> Config:
    """Read and validate a configuration file; any problem is one ConfigError line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    return parse_config(data, path.name)


def default_config() -> Config:
    return parse_config({}, "defaults")


def schema_docs() -> str:
    """The schema as Markdown: every section, field, type, default and description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the schema in `aideploy/services/config.py`.",
        "",
    ]

    def section(cls: Any, title: str) -> None:
        lines.extend(
            [f"## {title}", "", "| key | type | default | description |", "|---|---|---|---|"]
        )
        hints = typing.get_type_hints(cls)
        nested = []
        for fld in fields(cls):
            tp = hints[fld.name]
            default = fld.default
            if default is MISSING and fld.default_factory is not MISSING:
                default = fld.default_factory()
            shown = (
                "required"
                if default is MISSING
                else json.dumps(str(default) if isinstance(default, Path) else default)
            )
            lines.append(
                f"| `{fld.name}` | {_type_name(tp)} | {shown} | "
                f"{fld.metadata.get('description', '')} |"
            )
            inner = typing.get_args(tp)[-1] if typing.get_origin(tp) in (dict, list) else tp
            if is_dataclass(inner):
                prefix = "" if cls is Config else title.strip("`") + "."
                nested.append(
                    (
                        inner,
                        f"`{prefix}{fld.name}"
                        + (
                            ".<name>"
                            if typing.get_origin(tp) is dict
                            else "[]"
                            if typing.get_origin(tp) is list
                            else ""
                        )
                        + "`",
                    )
                )
        lines.append("")
        for inner, name in nested:
            section(inner, name)

    section(Config, "Top level")
    return "\n".join(lines)
