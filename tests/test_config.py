"""Configuration: one declared schema, one clear line per problem, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aideploy.core.errors import ConfigError
from aideploy.services.config import load_config, parse_config, schema_docs
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
