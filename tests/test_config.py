"""Configuration: one declared schema, one clear line per problem, exit code 2."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from aideploy.core.errors import ConfigError
from aideploy.services.config import Config, load_config, parse_config, schema_docs
from tests.support.cli import run_cli

GUIDE_CONFIG = {
    "version": "1.0",
    "ssh": {"key_file": "~/.ssh/id_ed25519", "port": 22, "timeout": 30},
    "deployment": {
        "max_retries": 3,
        "retry_delay": 5,
        "command_timeout": 300,
        "auto_approve": False,
        "auto_recovery": True,
        "backup_on_failure": True,
    },
    "ai_features": {
        "intelligent_error_detection": True,
        "auto_fix_common_issues": True,
        "learn_from_failures": True,
        "optimization_suggestions": True,
    },
    "server_profiles": {
        "production": {
            "hostname": "prod.example.com",
            "username": "root",
            "domain": "myapp.com",
            "use_password": False,
            "key_file": "~/keys/prod",
            "specs": {"cpu_cores": "8", "memory_gb": "16", "storage_gb": "200"},
        }
    },
}


def _with(path: str, value: object) -> dict[str, object]:
    data = json.loads(json.dumps(GUIDE_CONFIG))
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()


def test_guide_config_is_valid_and_paths_expanded() -> None:
    config = parse_config(GUIDE_CONFIG)
    prof = config.profile("production")
    assert prof.hostname == "prod.example.com"
    assert prof.key_file == Path.home() / "keys/prod"
    assert config.ssh.key_file == Path.home() / ".ssh/id_ed25519"
    assert prof.specs.cpu_cores == 8
    assert config.deployment.command_timeout == 300.0


BAD = [
    ("unknown top key", _with("colour", "blue"), "config: colour: unknown key"),
    ("unknown nested key", _with("ssh.prot", 22), "ssh.prot: unknown key"),
    ("wrong type", _with("ssh.port", "twenty"), "ssh.port: expected an integer"),
    ("port range", _with("ssh.port", 70000), "ssh.port: must be between 1 and 65535"),
    ("bool as string", _with("deployment.auto_approve", "yes"), "expected true or false"),
    (
        "missing hostname",
        _with("server_profiles.production.hostname", _DELETE),
        "server_profiles.production.hostname: missing required field",
    ),
    (
        "malformed domain",
        _with("server_profiles.production.domain", "my app.com"),
        "malformed domain",
    ),
    (
        "shell in domain",
        _with("server_profiles.production.domain", "a.com;rm -rf /"),
        "malformed domain",
    ),
    (
        "shell in hostname",
        _with("server_profiles.production.hostname", "$(reboot)"),
        "malformed host name",
    ),
    (
        "shell in username",
        _with("server_profiles.production.username", "root`id`"),
        "malformed user name",
    ),
    (
        "shell in path",
        _with("server_profiles.production.key_file", "/tmp/k; curl x|sh"),
        "not allowed",
    ),
    ("negative timeout", _with("deployment.command_timeout", -1), "must be between"),
    ("profiles not an object", _with("server_profiles", ["a"]), "expected an object"),
    (
        "bad profile name",
        _with("server_profiles", {"pro duction": {"hostname": "a.b"}}),
        "malformed name",
    ),
    ("unsupported version", _with("version", "9"), "unsupported version"),
    (
        "spec not a number",
        _with("server_profiles.production.specs.cpu_cores", "many"),
        "expected an integer",
    ),
    (
        "pattern does not compile",
        _with("custom_patterns", [{"name": "x", "pattern": "([", "recovery": "r"}]),
        "custom_patterns[0].pattern: pattern does not compile",
    ),
    (
        "pattern RE2 cannot run",
        _with("custom_patterns", [{"name": "x", "pattern": "(a+)\\1", "recovery": "r"}]),
        "custom_patterns[0].pattern: pattern uses a backreference",
    ),
    (
        "pattern of an unknown class",
        _with(
            "custom_patterns",
            [{"name": "x", "pattern": "a", "recovery": "r", "error_class": "bogus"}],
        ),
        "custom_patterns[0].error_class: unknown error class 'bogus'",
    ),
    (
        "pattern of an unknown severity",
        _with(
            "custom_patterns",
            [{"name": "x", "pattern": "a", "recovery": "r", "severity": "urgent"}],
        ),
        "custom_patterns[0].severity: must be one of low, medium, high, critical",
    ),
    (
        "two patterns of one name",
        _with(
            "custom_patterns",
            [{"name": "x", "pattern": "a", "recovery": "r"}] * 2,
        ),
        "custom_patterns[1].name: 'x' is already the name of an earlier pattern",
    ),
]


@pytest.mark.parametrize(("kind", "data", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_field_and_problem(kind: str, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("kind", "data", "message"), BAD[:12], ids=[b[0] for b in BAD[:12]])
def test_config_validate_cli_exit_2_one_line(
    tmp_path: Path, kind: str, data: object, message: str
) -> None:
    path = tmp_path / "ai_deployment_config.json"
    path.write_text(json.dumps(data))
    proc = run_cli(tmp_path, "config", "validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert message.replace("config: ", "ai_deployment_config.json: ") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"version": "1.0",\n  "ssh": {"port": 22,}\n}')
    proc = run_cli(tmp_path, "config", "validate", str(path))
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "invalid JSON" in proc.stderr
    proc = run_cli(tmp_path, "config", "validate", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_valid_config_cli(tmp_path: Path) -> None:
    path = tmp_path / "ai_deployment_config.json"
    path.write_text(json.dumps(GUIDE_CONFIG))
    proc = run_cli(tmp_path, "config", "validate")
    assert proc.returncode == 0, proc.stderr
    assert "valid (production)" in proc.stdout
    assert load_config(path).profile("production").domain == "myapp.com"


def test_unknown_profile_is_clear() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'staging'"):
        parse_config(GUIDE_CONFIG).profile("staging")


def test_docs_cover_every_field() -> None:
    docs = schema_docs()
    for key in (
        "hostname",
        "use_password",
        "command_timeout",
        "accept_new_host_key",
        "learn_from_failures",
        "retry_count",
        "cpu_cores",
    ):
        assert f"`{key}`" in docs


# -- strict types: what a field says it is, and nothing that merely looks like it -------------

STRICT = [
    ("port as a string", "ssh.port", "22", "ssh.port: expected an integer or null, got a string"),
    ("port as true", "ssh.port", True, "ssh.port: expected an integer or null, got true/false"),
    (
        "retries as false",
        "deployment.max_retries",
        False,
        "deployment.max_retries: expected an integer, got true/false",
    ),
    (
        "delay as true",
        "deployment.retry_delay",
        True,
        "deployment.retry_delay: expected a number, got true/false",
    ),
    (
        "timeout as a string",
        "ssh.timeout",
        "30",
        "ssh.timeout: expected a number, got a string",
    ),
    (
        "profile port as a string",
        "server_profiles.production.port",
        "2222",
        "server_profiles.production.port: expected an integer or null, got a string",
    ),
    (
        "spec as true",
        "server_profiles.production.specs.cpu_cores",
        True,
        "server_profiles.production.specs.cpu_cores: expected an integer or null, got true/false",
    ),
    (
        "switch as 1",
        "ai_features.learn_from_failures",
        1,
        "ai_features.learn_from_failures: expected true or false, got an integer",
    ),
]


@pytest.mark.parametrize(("kind", "key", "value", "message"), STRICT, ids=[s[0] for s in STRICT])
def test_types_are_strict(kind: str, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(key, value))
    assert str(info.value) == f"config: {message}"


def test_a_string_port_is_refused_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_with("ssh.port", "22")))
    proc = run_cli(tmp_path, "config", "validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "c.json: ssh.port: expected an integer or null, got a string" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_digit_strings_are_numbers_in_specs_only() -> None:
    specs = (
        parse_config(
            _with("server_profiles.production.specs", {"cpu_cores": " 4 ", "memory_gb": 8})
        )
        .profile("production")
        .specs
    )
    assert (specs.cpu_cores, specs.memory_gb, specs.storage_gb) == (4, 8, None)
    for text in ("4.5", "-1", "", "٤"):  # not a plain run of ASCII digits
        with pytest.raises(ConfigError, match=r"specs\.cpu_cores: expected an integer"):
            parse_config(_with("server_profiles.production.specs.cpu_cores", text))
    with pytest.raises(ConfigError, match=r"specs\.cpu_cores: must be between 1 and 4096, got 0"):
        parse_config(_with("server_profiles.production.specs.cpu_cores", "0"))


def test_an_unknown_key_lists_the_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with("ssh.prot", 22))
    assert str(info.value) == (
        "config: ssh.prot: unknown key (allowed: accept_new_host_key, connect_retries, "
        "keepalive, key_file, known_hosts, port, session_mode, ssh_config, timeout)"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(_with("server_profiles.production.hostnme", "a.example.com"))
    assert str(info.value) == (
        "config: server_profiles.production.hostnme: unknown key (allowed: allowed_users, "
        "domain, hostname, key_file, port, protected, specs, use_password, username)"
    )
    with pytest.raises(ConfigError, match=r"^config: colour: unknown key \(allowed: ai_features,"):
        parse_config(_with("colour", "blue"))


def test_the_failing_profile_is_named_among_several() -> None:
    data = json.loads(json.dumps(GUIDE_CONFIG))
    data["server_profiles"]["staging.eu"] = {"hostname": "s.example.com", "port": 0}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == (
        "config: server_profiles.staging.eu.port: must be between 1 and 65535, got 0"
    )


def test_missing_sections_get_their_defaults_and_paths_are_expanded() -> None:
    config = parse_config({"version": "1.0"})
    assert config.ssh.port is None and config.ssh.timeout == 30.0
    assert config.ssh.known_hosts == Path.home() / ".ssh/known_hosts"
    assert config.ssh.ssh_config == Path.home() / ".ssh/config"
    assert config.deployment.max_retries == 3 and config.notifications.retries == 2
    assert config.metrics.http_address == "127.0.0.1" and config.server_profiles == {}
    assert parse_config({"ssh": {"ssh_config": None}}).ssh.ssh_config is None


@pytest.mark.parametrize("depth", [33, 10_000])
def test_deep_nesting_is_refused_with_the_limit(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"custom_patterns": ' + "[" * depth + "]" * depth + "}")
    expected = "deep.json: lists and objects nested more than 32 levels deep"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
    proc = run_cli(tmp_path, "config", "validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_nesting_up_to_the_limit_reaches_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"custom_patterns": ' + "[" * 31 + "]" * 31 + "}")
    with pytest.raises(ConfigError, match=r"custom_patterns\[0\]: expected an object, got a list"):
        load_config(path)


def _sections(cls: type[msgspec.Struct], title: str) -> Iterator[tuple[str, str, type]]:
    hints = typing.get_type_hints(cls)
    for field in msgspec.structs.fields(cls):
        yield title, field.encode_name, hints[field.name]
        tp = hints[field.name]
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = args[-1] if origin in (dict, list) else tp
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
            prefix = "" if cls is Config else title.strip("`") + "."
            suffix = ".<name>" if origin is dict else "[]" if origin is list else ""
            yield from _sections(inner, f"`{prefix}{field.encode_name}{suffix}`")


def test_docs_list_every_key_of_the_schema_with_its_description() -> None:
    docs = schema_docs()
    tables: dict[str, str] = {}
    for block in docs.split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        tables[title] = body
    keys = list(_sections(Config, "Top level"))
    assert len(keys) > 40
    for title, key, _ in keys:
        assert f"| `{key}` |" in tables[title], f"{title}: {key} is not documented"
    for row in docs.splitlines():
        if row.startswith("| `"):
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            assert len(cells) == 4 and all(cells), row  # key, type, default, description
    assert "| `port` | integer | null | SSH port when a profile names none" in tables["`ssh`"]
    assert "| `hostname` | string | required |" in tables["`server_profiles.<name>`"]
    assert 'a digit string such as "8" is accepted' in tables["`server_profiles.<name>.specs`"]
