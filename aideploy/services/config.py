"""The configuration file (``ai_deployment_config.json``): one declared schema, validated once.

Every field is declared below (and in the settings sections it is made of) as a msgspec struct
field with its type, range, default and description; :func:`load_config` checks a file against it
strictly (a string is not an integer, ``true`` is not a number, an unknown key is refused) and
returns typed settings, or raises :class:`ConfigError` with one line naming the field and the
problem. Values that end up in shell commands (host names, domains, user names, paths) are checked
here so that none can carry shell syntax; commands quote them anyway. ``aideploy config docs``
prints the same schema as Markdown (:func:`schema_docs`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect as schema_info
from msgspec import Meta

from aideploy.core.errors import ConfigError
from aideploy.core.inputs import MAX_NESTING, check_regular, decode_within_nesting
from aideploy.core.redact import register_found
from aideploy.core.schema import (
    Port,
    check_domain,
    check_hostname,
    check_name,
    check_username,
    checked,
    convert,
    describe,
    unwrap,
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

# -- the schema ------------------------------------------------------------------------------


class AIFeatures(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    intelligent_error_detection: Annotated[
        bool, Meta(description="Classify failures (rules + model).")
    ] = True
    auto_fix_common_issues: Annotated[
        bool, Meta(description="Apply the ranked recovery automatically.")
    ] = True
    learn_from_failures: Annotated[
        bool, Meta(description="Record outcomes in the knowledge base.")
    ] = True
    optimization_suggestions: Annotated[
        bool, Meta(description="Show suggestions in the report.")
    ] = True


def _expected(what: str) -> Meta:
    return Meta(
        description=f'{what} the server is expected to have; a digit string such as "8" is '
        "accepted (the guide writes specs as strings)."
    )


class Specs(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    cpu_cores: Annotated[int, Meta(ge=1, le=4096), _expected("CPU cores")] | None = None
    memory_gb: Annotated[int, Meta(ge=1, le=65536), _expected("Memory (GiB)")] | None = None
    storage_gb: Annotated[int, Meta(ge=1, le=1_000_000), _expected("Disk (GiB)")] | None = None


class ServerProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hostname: Annotated[str, checked(check_hostname, "Host name or IP address of the server.")]
    username: Annotated[
        str | None,
        checked(
            check_username, "Remote user to log in as (unset: ~/.ssh/config's User, then root)."
        ),
    ] = None
    domain: Annotated[str | None, checked(check_domain, "Public domain the app is served on.")] = (
        None
    )
    port: Annotated[Port | None, Meta(description="SSH port (default: ssh.port).")] = None
    key_file: Annotated[
        Path | None, Meta(description="Private key for this server (default: ssh.key_file).")
    ] = None
    use_password: Annotated[
        bool, Meta(description="Log in with a password (asked for, never stored).")
    ] = False
    specs: Annotated[Specs, Meta(description="Expected server size.")] = msgspec.field(
        default_factory=Specs
    )
    protected: Annotated[
        bool, Meta(description="Ask for confirmation (typing the profile name) before deploying.")
    ] = False
    allowed_users: Annotated[
        list[str], Meta(description="Local users allowed to deploy to this profile (empty: all).")
    ] = msgspec.field(default_factory=list)


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


class PatternSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, checked(check_name, "Unique name of the custom error pattern.")]
    pattern: Annotated[
        str,
        checked(_check_pattern, "Regular expression matched against the failed command's output."),
    ]
    recovery: Annotated[str, checked(check_name, "Name of the recovery strategy to run.")]
    error_class: Annotated[str, checked(_check_error_class, "Error class the pattern detects.")] = (
        "unknown"
    )
    severity: Annotated[str, checked(_check_severity, "low, medium, high or critical.")] = "medium"
    description: Annotated[str, Meta(description="What the error means.")] = ""
    retry_count: Annotated[int, Meta(ge=0, le=20, description="Attempts with this recovery.")] = 3


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    version: Annotated[str, Meta(description="Configuration format version.")] = "1.0"
    ssh: Annotated[SSHSettings, Meta(description="SSH connection settings.")] = msgspec.field(
        default_factory=SSHSettings
    )
    deployment: Annotated[DeploymentSettings, Meta(description="Deployment behaviour.")] = (
        msgspec.field(default_factory=DeploymentSettings)
    )
    ai_features: Annotated[
        AIFeatures, Meta(description="Detection, recovery and learning switches.")
    ] = msgspec.field(default_factory=AIFeatures)
    server_profiles: Annotated[
        dict[str, ServerProfile], Meta(description="Named servers (production, staging...).")
    ] = msgspec.field(default_factory=dict)
    metrics: Annotated[
        MetricsSettings, Meta(description="Prometheus textfile and live endpoint.")
    ] = msgspec.field(default_factory=MetricsSettings)
    notifications: Annotated[NotificationSettings, Meta(description="Slack/Discord webhooks.")] = (
        msgspec.field(default_factory=NotificationSettings)
    )
    custom_patterns: Annotated[
        list[PatternSpec], Meta(description="Extra error patterns (the guide's ErrorPattern).")
    ] = msgspec.field(default_factory=list)

    def profile(self, name: str) -> ServerProfile:
        try:
            return self.server_profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.server_profiles)) or "none defined"
            raise ConfigError(f"unknown profile {name!r} (profiles: {known})") from None


SUPPORTED_VERSIONS = ("1", "1.0")

# -- validation ------------------------------------------------------------------------------


def _specs_as_numbers(data: Any) -> Any:
    """``server_profiles.*.specs.*`` with digit strings read as integers (the guide writes
    ``"cpu_cores": "4"``); the only place where a string stands for a number."""
    profiles = data.get("server_profiles") if isinstance(data, dict) else None
    if not isinstance(profiles, dict):
        return data
    read = {}
    for name, profile in profiles.items():
        specs = profile.get("specs") if isinstance(profile, dict) else None
        if isinstance(specs, dict):
            specs = {key: _digits(value) for key, value in specs.items()}
            profile = {**profile, "specs": specs}
        read[name] = profile
    return {**data, "server_profiles": read}


def _digits(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return value


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate already-parsed JSON data against the schema."""
    try:
        config = convert(_specs_as_numbers(data), Config)
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
    check_regular(path, error=ConfigError)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    too_deep = ConfigError(
        f"{path}: lists and objects nested more than {MAX_NESTING} levels deep "
        "(the limit for a configuration file)"
    )
    try:
        data = decode_within_nesting(json.loads, text, too_deep)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    register_found(data)  # secret-looking fields and URL credentials: masked wherever shown
    return parse_config(data, path.name)


def default_config() -> Config:
    return parse_config({}, "defaults")


# -- the reference ---------------------------------------------------------------------------


def _type_name(node: schema_info.Type) -> str:
    if isinstance(node, schema_info.Metadata):
        return _type_name(node.type)
    if isinstance(node, schema_info.UnionType):
        members = [t for t in node.types if not isinstance(t, schema_info.NoneType)]
        return " or ".join(_type_name(t) for t in members)
    if isinstance(node, schema_info.CustomType) and node.cls is Path:
        return "path string"
    names: dict[type[schema_info.Type], str] = {
        schema_info.StrType: "string",
        schema_info.IntType: "integer",
        schema_info.FloatType: "number",
        schema_info.BoolType: "true/false",
        schema_info.DictType: "object",
        schema_info.StructType: "object",
        schema_info.ListType: "list",
    }
    return names.get(type(node), type(node).__name__)


def _default_shown(field: schema_info.Field) -> str:
    if field.required:
        return "required"
    default = field.default
    if default is msgspec.NODEFAULT:
        default = field.default_factory()
    if isinstance(default, msgspec.Struct):
        return "{}"  # a section left out is the section with every default
    return json.dumps(str(default) if isinstance(default, Path) else default)


def schema_docs() -> str:
    """The schema as Markdown: every section, field, type, default and description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the schema in `aideploy/services/config.py`.",
        "",
    ]

    def section(node: schema_info.StructType, title: str) -> None:
        lines.extend(
            [f"## {title}", "", "| key | type | default | description |", "|---|---|---|---|"]
        )
        nested = []
        for field in node.fields:
            lines.append(
                f"| `{field.encode_name}` | {_type_name(field.type)} | {_default_shown(field)} | "
                f"{describe(field.type)} |"
            )
            kind = unwrap(field.type)
            inner, suffix = kind, ""
            if isinstance(kind, schema_info.DictType):
                inner, suffix = unwrap(kind.value_type), ".<name>"
            elif isinstance(kind, schema_info.ListType):
                inner, suffix = unwrap(kind.item_type), "[]"
            if isinstance(inner, schema_info.StructType):
                prefix = "" if node.cls is Config else title.strip("`") + "."
                nested.append((inner, f"`{prefix}{field.encode_name}{suffix}`"))
        lines.append("")
        for inner, name in nested:
            section(inner, name)

    root = schema_info.type_info(Config)
    assert isinstance(root, schema_info.StructType)
    section(root, "Top level")
    return "\n".join(lines)
