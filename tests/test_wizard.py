"""``aideploy init`` driven non-interactively and interactively; keys, modes and the written config
checked; key installation and the connection test against a real sshd."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner

from aideploy.cli import ops, wizard
from aideploy.cli.ops import init
from aideploy.core.errors import ConfigError, UsageError
from aideploy.services.config import load_config
from tests.support.cli import run_cli
from tests.support.sshd import SSHServer


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "state"))


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The click runner's input stands for a person at a terminal."""
    monkeypatch.setattr(ops, "stdin_is_terminal", lambda: True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _auto(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--auto",
        "--config",
        str(tmp_path / "cfg.json"),
        "--hostname",
        "prod.example.com",
        "--domain",
        "myapp.com",
        "--key-file",
        str(tmp_path / "keys" / "id_ed25519"),
        *extra,
    ]


def test_auto_creates_key_profile_and_valid_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(init, _auto(tmp_path))
    assert result.exit_code == 0, result.output
    key = tmp_path / "keys" / "id_ed25519"
    assert "created key" in result.output
    assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
    assert Path(f"{key}.pub").read_text().startswith("ssh-ed25519 ")
    assert isinstance(paramiko.PKey.from_path(key), paramiko.Ed25519Key)
    cfg = tmp_path / "cfg.json"
    assert _mode(cfg) == 0o600
    config = load_config(cfg)
    prod = config.profile("production")
    assert prod.hostname == "prod.example.com" and prod.domain == "myapp.com"
    assert prod.protected is True and prod.username == "root"
    assert (prod.specs.cpu_cores, prod.specs.memory_gb, prod.specs.storage_gb) == (8, 16, 200)
    assert config.ssh.key_file == key


def test_auto_never_clobbers_without_force(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(init, _auto(tmp_path)).exit_code == 0
    cfg = tmp_path / "cfg.json"
    key = tmp_path / "keys" / "id_ed25519"
    before_cfg, before_key = cfg.read_text(), key.read_bytes()
    again = runner.invoke(init, [*_auto(tmp_path), "--domain", "other.com"])
    assert isinstance(again.exception, UsageError) and "--force" in str(again.exception)
    assert cfg.read_text() == before_cfg
    forced = runner.invoke(init, [*_auto(tmp_path), "--domain", "other.com", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "using key" in forced.output and key.read_bytes() == before_key  # key reused
    assert load_config(cfg).profile("production").domain == "other.com"


def test_auto_rsa_with_passphrase_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KEY_PASS", "a long passphrase")
    key = tmp_path / "id_rsa"
    args = ["--auto", "--config", str(tmp_path / "c.json"), "--hostname", "10.0.0.5"]
    args += ["--profile", "staging", "--key-type", "rsa", "--key-file", str(key)]
    result = CliRunner().invoke(init, [*args, "--passphrase-env", "KEY_PASS"])
    assert result.exit_code == 0, result.output
    with pytest.raises(wizard.KeyError_, match="encrypted"):
        wizard.load_key(key)
    loaded = paramiko.PKey.from_path(key, password=b"a long passphrase")
    assert isinstance(loaded, paramiko.RSAKey) and loaded.get_bits() == 4096
    staging = load_config(tmp_path / "c.json").profile("staging")
    assert staging.protected is False and staging.specs.memory_gb == 8
    assert "a long passphrase" not in (tmp_path / "c.json").read_text()


def test_auto_needs_a_hostname_and_a_set_passphrase_variable(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(init, ["--auto", "--config", str(tmp_path / "c.json")])
    assert isinstance(result.exception, UsageError)
    missing = runner.invoke(init, [*_auto(tmp_path), "--passphrase-env", "NOT_SET_ANYWHERE"])
    assert isinstance(missing.exception, UsageError)
    assert not (tmp_path / "cfg.json").exists()


@pytest.mark.usefixtures("terminal")
def test_interactive_flow(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    answers = [
        "",  # key type: ed25519
        str(key),  # key path
        "pass phrase 1",  # passphrase
        "pass phrase 1",  # confirmation
        "staging,production",
        "bad host!",  # rejected, asked again
        "staging.example.com",
        "",  # user: the guide's default (root)
        "staging.myapp.com",
        "",  # protected: default no
        "prod.example.com",
        "deploy",
        "",  # no domain
        "",  # protected: default yes
        "",  # install key: default no
        "n",  # test connection: no
    ]
    cfg = tmp_path / "ai_deployment_config.json"
    result = CliRunner().invoke(init, ["--config", str(cfg)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "malformed host name" in result.output
    assert _mode(key) == 0o600
    assert paramiko.PKey.from_path(key, password=b"pass phrase 1")
    config = load_config(cfg)
    assert sorted(config.server_profiles) == ["production", "staging"]
    assert config.profile("staging").domain == "staging.myapp.com"
    assert config.profile("production").username == "deploy"
    assert config.profile("production").domain is None
    assert config.profile("production").protected is True
    # a second run asks before replacing; answering no keeps the file
    before = cfg.read_text()
    again = CliRunner().invoke(init, ["--config", str(cfg)], input="n\n")
    assert again.exit_code == 0 and "left unchanged" in again.output
    assert cfg.read_text() == before


@pytest.mark.usefixtures("terminal")
def test_interactive_existing_key_is_used_not_overwritten(tmp_path: Path) -> None:
    pair = wizard.generate_key(tmp_path / "mine")
    before = pair.private.read_bytes()
    answers = [
        "",
        str(pair.private),
        "y",
        "",
        "production",
        "prod.example.com",
        "",
        "",
        "",
        "",
        "n",
    ]
    cfg = tmp_path / "cfg.json"
    result = CliRunner().invoke(init, ["--config", str(cfg)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "using key" in result.output
    assert pair.private.read_bytes() == before
    assert load_config(cfg).ssh.key_file == pair.private


def test_generate_key_refuses_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "id"
    path.write_text("precious")
    with pytest.raises(wizard.KeyError_, match="never overwritten"):
        wizard.generate_key(path)
    assert path.read_text() == "precious"


def test_write_config_validates_first(tmp_path: Path) -> None:
    bad = wizard.build_config(
        {"production": wizard.profile_data("production", "bad host")}, key_file=None
    )
    with pytest.raises(ConfigError, match="malformed host name"):
        wizard.write_config(tmp_path / "c.json", bad)
    assert not (tmp_path / "c.json").exists()


def test_auto_connection_test_against_a_real_sshd(tmp_path: Path, sshd: SSHServer) -> None:
    args = ["--auto", "--config", str(tmp_path / "c.json"), "--hostname", sshd.host]
    args += ["--port", str(sshd.port), "--username", sshd.user, "--key-file", str(sshd.client_key)]
    args += ["--known-hosts", str(sshd.known_hosts), "--test-connection"]
    result = CliRunner().invoke(init, args)
    assert result.exit_code == 0, result.output
    assert "using key" in result.output
    assert f"host key {sshd.host_key_fingerprint}" in result.output
    profile = load_config(tmp_path / "c.json").profile("production")
    assert profile.port == sshd.port


def test_failed_connection_test_is_a_warning(tmp_path: Path, sshd: SSHServer) -> None:
    args = ["--auto", "--config", str(tmp_path / "c.json"), "--hostname", sshd.host]
    args += ["--port", str(sshd.port), "--username", sshd.user]
    args += ["--key-file", str(tmp_path / "new_key"), "--known-hosts", str(sshd.known_hosts)]
    result = CliRunner().invoke(init, [*args, "--test-connection"])
    assert result.exit_code == 0, result.output
    assert "warning: connection test failed" in result.output
    assert (tmp_path / "c.json").exists()


def test_install_public_key_once_then_log_in_with_it(tmp_path: Path, sshd: SSHServer) -> None:
    pair = wizard.generate_key(tmp_path / "fresh")
    server = {
        "port": sshd.port,
        "username": sshd.user,
        "known_hosts": sshd.known_hosts,
    }
    with pytest.raises(Exception):  # noqa: B017 - not authorized yet
        wizard.check_connection(sshd.host, key_file=pair.private, **server)
    authorized = str(sshd.directory / "authorized_keys")
    # logged in with a key that is authorized (the fixture's sshd has no password login)
    added = wizard.install_public_key(
        pair.public_line,
        sshd.host,
        key_file=sshd.client_key,
        authorized_keys=authorized,
        **server,
    )
    assert added is True
    again = wizard.install_public_key(
        pair.public_line,
        sshd.host,
        key_file=sshd.client_key,
        authorized_keys=authorized,
        **server,
    )
    assert again is False
    lines = Path(authorized).read_text().splitlines()
    assert lines.count(pair.public_line) == 1
    check = wizard.check_connection(sshd.host, key_file=pair.private, **server)
    assert check.fingerprint == sshd.host_key_fingerprint and check.system


def test_install_rejects_a_line_that_is_not_a_key() -> None:
    with pytest.raises(wizard.KeyError_):
        wizard.install_public_key("ssh-ed25519 AAAA'; rm -rf ~ #", "h", username="u")


def test_guide_profiles_round_trip() -> None:
    data = wizard.build_config(
        {n: wizard.profile_data(n, f"{n}.example.com") for n in wizard.GUIDE_PROFILES},
        key_file=Path("/k"),
    )
    text = json.dumps(data)
    assert json.loads(text)["server_profiles"]["development"]["username"] == "deploy"


# -- scripted: through the installed command, stdin not a terminal -------------------------------


def test_init_without_a_terminal_names_the_flags_and_writes_nothing(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "init", "--config", str(tmp_path / "c.json"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    for flag in ("--yes", "--hostname", "--profile", "--key-file", "--protected", "--force"):
        assert flag in lines[0], flag
    assert "not a terminal" in lines[0]
    assert not (tmp_path / "c.json").exists()
    assert not (tmp_path / "home" / ".ssh").exists()


def test_init_yes_with_a_flag_per_answer(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "id_rsa"
    cfg = tmp_path / "c.json"
    args = [
        "init", "--yes", "--config", str(cfg), "--profile", "staging", "--hostname",
        "10.0.0.5", "--username", "ops", "--domain", "staging.myapp.com", "--port", "2222",
        "--key-type", "rsa", "--key-file", str(key), "--protected",
    ]  # fmt: skip
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _mode(cfg) == 0o600 and _mode(key) == 0o600
    profile = load_config(cfg).profile("staging")
    assert (profile.hostname, profile.username, profile.domain) == (
        "10.0.0.5",
        "ops",
        "staging.myapp.com",
    )
    assert profile.port == 2222 and profile.protected is True
    again = run_cli(tmp_path, *args)  # never replaced without --force
    assert again.returncode == 2 and "--force" in again.stderr
    # without --yes but with the answers given, a script still runs (stdin is no terminal)
    other = tmp_path / "d.json"
    quiet = run_cli(
        tmp_path, "init", "--config", str(other), "--hostname", "h.example.com", "--key-file",
        str(key), "--unprotected",
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert load_config(other).profile("production").protected is False
