"""The CLI over a real loopback sshd: host-key policy, test-connection, a deploy in session mode."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.sshd import SSHServer


def _config(tmp_path: Path, sshd: SSHServer, known_hosts: Path) -> Path:
    path = tmp_path / "ai_deployment_config.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "ssh": {"known_hosts": str(known_hosts), "connect_retries": 1, "timeout": 5},
                "server_profiles": {
                    "loopback": {
                        "hostname": sshd.host,
                        "port": sshd.port,
                        "username": sshd.user,
                        "key_file": str(sshd.client_key),
                    }
                },
            }
        )
    )
    return path


def test_unknown_host_refused_then_accept_new_records_it(tmp_path: Path, sshd: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    config = _config(tmp_path, sshd, known)
    refused = run_cli(tmp_path, "--config", str(config), "test-connection", "--profile", "loopback")
    assert refused.returncode == 3, refused.stderr
    assert "--accept-new-host-key" in refused.stderr and "Traceback" not in refused.stderr
    assert not known.exists() or sshd.host_key_fingerprint not in known.read_text()

    accepted = run_cli(
        tmp_path,
        "--config",
        str(config),
        "test-connection",
        "--profile",
        "loopback",
        "--accept-new-host-key",
    )
    assert accepted.returncode == 0, accepted.stderr
    assert sshd.host_key_fingerprint in accepted.stdout
    assert "round trip" in accepted.stdout

    again = run_cli(tmp_path, "--config", str(config), "test-connection", "--profile", "loopback")
    assert again.returncode == 0, again.stderr


def test_changed_host_key_refused_even_with_accept_new(tmp_path: Path, sshd: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    other = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    assert other.returncode == 0
    public = (tmp_path / "other.pub").read_text().split()
    known.write_text(f"[{sshd.host}]:{sshd.port} {public[0]} {public[1]}\n")
    config = _config(tmp_path, sshd, known)
    proc = run_cli(
        tmp_path,
        "--config",
        str(config),
        "test-connection",
        "--profile",
        "loopback",
        "--accept-new-host-key",
    )
    assert proc.returncode == 3
    assert "changed" in proc.stderr.lower()


def test_example_deploy_over_ssh_session(tmp_path: Path, sshd: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_lines())
    config = _config(tmp_path, sshd, known)
    site = tmp_path / "remote-site"
    proc = run_cli(
        tmp_path,
        "--config",
        str(config),
        "deploy",
        "--profile",
        "loopback",
        "--set",
        f"SITE_ROOT={site}",
        "--kb",
        str(tmp_path / "kb.sqlite"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stdout
    assert (site / "current" / "index.html").is_file()
    state_files = list((tmp_path / "home" / "deployments").glob("*.json"))
    state = json.loads(state_files[0].read_text())
    assert state["server_info"]["hostname"] == sshd.host
    assert state["options"]["target"]["session_mode"] is True


def _ssh_home(tmp_path: Path, sshd: SSHServer, alias: str) -> dict[str, str]:
    """A HOME whose ~/.ssh/config names the test sshd by ``alias`` (port, user, key) and whose
    ~/.ssh/known_hosts holds its keys; nothing on the command line says any of it."""
    home = tmp_path / "user-home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    (ssh_dir / "config").write_text(
        f"Host {alias}\n"
        f"    HostName {sshd.host}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n"
    )
    (ssh_dir / "known_hosts").write_text(sshd.known_hosts_lines())
    return {"HOME": str(home), "SSH_AUTH_SOCK": ""}


def test_ssh_config_port_user_and_key_are_honoured_without_flags(
    tmp_path: Path, sshd: SSHServer
) -> None:
    env = _ssh_home(tmp_path, sshd, "appserver")
    proc = run_cli(tmp_path, "test-connection", "--server", "appserver", env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sshd.host_key_fingerprint in proc.stdout

    site = tmp_path / "remote-site"
    deployed = run_cli(
        tmp_path,
        "deploy",
        "--server",
        "appserver",
        "--set",
        f"SITE_ROOT={site}",
        "--kb",
        str(tmp_path / "kb.sqlite"),
        env=env,
        timeout=240,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert (site / "current" / "index.html").is_file()
    (state_file,) = (tmp_path / "home" / "deployments").glob("*.json")
    target = json.loads(state_file.read_text())["options"]["target"]
    assert (target["port"], target["username"]) == (sshd.port, sshd.user)


def test_a_port_flag_wins_over_ssh_config(tmp_path: Path, sshd: SSHServer) -> None:
    env = _ssh_home(tmp_path, sshd, "appserver")
    closed = _closed_port()
    proc = run_cli(
        tmp_path, "test-connection", "--server", "appserver", "--port", str(closed), env=env
    )
    assert proc.returncode != 0
    assert f":{closed}" in proc.stderr, proc.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
