"""A failure before the first command ran is a configuration error: one line naming what and
where, the documented exit code, no recovery tried, nothing recorded, no deployment left behind.
Through the installed CLI, against a real loopback sshd and a real closed port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from aideploy.core.errors import EXIT_CODES
from aideploy.knowledge.store import KnowledgeBase
from tests.support.cli import run_cli
from tests.support.sshd import SSHServer

CONFIG_ERROR, CONNECT_ERROR = 2, 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(tmp_path: Path, proc: object, code: int, *names: str) -> str:
    """The run ended with ``code``, one error line naming each of ``names``, nothing tried,
    recorded or left behind; the error line."""
    import subprocess

    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert code in EXIT_CODES
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr
    for name in names:
        assert name in errors[0], errors[0]
    assert "recover" not in proc.stdout.lower(), proc.stdout
    kb = tmp_path / "kb.db"
    if kb.exists():
        with KnowledgeBase.open(kb) as store:
            counts = store.counts()
        assert counts["attempts"] == counts["deployments"] == counts["step_runs"] == 0
    deployments = tmp_path / "home" / "deployments"
    assert not deployments.exists() or not list(deployments.glob("*.json"))
    return errors[0]


def _ssh_config(
    tmp_path: Path, sshd: SSHServer, *, known: bool = True, key: Path | None = None
) -> Path:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_lines() if known else "")
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "ssh": {"known_hosts": str(known_hosts), "connect_retries": 1, "timeout": 5},
                "server_profiles": {
                    "loopback": {
                        "hostname": sshd.host,
                        "port": sshd.port,
                        "username": sshd.user,
                        "key_file": str(key or sshd.client_key),
                    }
                },
            }
        )
    )
    return path


def _deploy(tmp_path: Path, *args: str) -> object:
    return run_cli(tmp_path, *args, "--auto", "--kb", str(tmp_path / "kb.db"), timeout=120)


def test_a_closed_ssh_port_is_a_connect_error_naming_host_and_port(tmp_path: Path) -> None:
    port = _closed_port()
    proc = _deploy(tmp_path, "deploy", "--server", "127.0.0.1", "--port", str(port))
    _check(tmp_path, proc, CONNECT_ERROR, f"127.0.0.1:{port}", "refused")


def test_a_name_that_does_not_resolve_is_a_connect_error(tmp_path: Path) -> None:
    proc = _deploy(tmp_path, "deploy", "--server", "no-such-host.invalid")
    _check(tmp_path, proc, CONNECT_ERROR, "no-such-host.invalid")


def test_a_key_the_server_does_not_accept(tmp_path: Path, sshd: SSHServer) -> None:
    config = _ssh_config(tmp_path, sshd, key=sshd.unknown_key)
    proc = _deploy(tmp_path, "--config", str(config), "deploy", "--profile", "loopback")
    line = _check(tmp_path, proc, CONNECT_ERROR, f"{sshd.host}:{sshd.port}", str(sshd.unknown_key))
    assert "authentication failed" in line


def test_a_key_file_that_is_not_there(tmp_path: Path, sshd: SSHServer) -> None:
    missing = tmp_path / "no_such_key"
    config = _ssh_config(tmp_path, sshd, key=missing)
    proc = _deploy(tmp_path, "--config", str(config), "deploy", "--profile", "loopback")
    _check(tmp_path, proc, CONFIG_ERROR, str(missing), "does not exist")


def test_an_unknown_host_key(tmp_path: Path, sshd: SSHServer) -> None:
    config = _ssh_config(tmp_path, sshd, known=False)
    proc = _deploy(tmp_path, "--config", str(config), "deploy", "--profile", "loopback")
    _check(tmp_path, proc, CONNECT_ERROR, sshd.host, "--accept-new-host-key")


def test_a_changed_host_key(tmp_path: Path, sshd: SSHServer) -> None:
    config = _ssh_config(tmp_path, sshd)
    known = tmp_path / "known_hosts"
    lines = known.read_text().splitlines()
    other = sshd.unknown_key.with_suffix(".pub")
    kind, key = other.read_text().split()[:2] if other.exists() else ("", "")
    if not key:
        pytest.skip("no second public key to stand in for a changed host key")
    known.write_text("".join(f"{line.split()[0]} {kind} {key}\n" for line in lines))
    proc = _deploy(tmp_path, "--config", str(config), "deploy", "--profile", "loopback")
    _check(tmp_path, proc, CONNECT_ERROR, "changed")


@pytest.mark.parametrize(
    ("files", "args", "names"),
    [
        ({"c.json": "{not json"}, ("--config", "c.json"), ("c.json", "JSON")),
        (
            {"c.json": '{"deployment": {"max_retries": "many"}}'},
            ("--config", "c.json"),
            ("c.json", "max_retries"),
        ),
        ({}, ("--plan", "missing.toml"), ("missing.toml",)),
        ({"p.toml": 'name = "x"\n[[steps]]\nnam = "a"\n'}, ("--plan", "p.toml"), ("p.toml", "nam")),
        ({}, ("--set", "NOEQUALS"), ("NOEQUALS", "KEY=VALUE")),
    ],
)
def test_local_auto_with_an_invalid_config_or_plan(
    tmp_path: Path, files: dict[str, str], args: tuple[str, ...], names: tuple[str, ...]
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = [a for a in args if a in ("--config",)]
    head = list(args[:2]) if config else []
    tail = list(args[2:]) if config else list(args)
    proc = _deploy(tmp_path, *head, "deploy", "--local", *tail)
    _check(tmp_path, proc, CONFIG_ERROR, *names)
