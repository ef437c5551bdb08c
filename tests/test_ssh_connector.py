"""SSHConnector against a real OpenSSH server on loopback (see tests/support/sshd.py)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from aideploy.core.backoff import Backoff
from aideploy.core.clock import FakeClock
from aideploy.core.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    ConnectionRefusedError_,
    ConnectTimeoutError,
    DNSError,
    UnknownHostKeyError,
)
from aideploy.engine.connectors.base import Stream
from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.engine.responders import apt_yes
from aideploy.engine.runner import Runner
from tests.support.sshd import PASSPHRASE, SSHServer, free_port, public_fingerprint


def client_ports(server_port: int) -> set[int]:
    """Local ports of established TCP connections from this machine to ``server_port``."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def pgrep(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return found.stdout.split()


# -- commands ------------------------------------------------------------------------------


def test_many_commands_share_one_tcp_connection(sshd: SSHServer) -> None:
    before = client_ports(sshd.port)
    with sshd.connector() as connector:
        runner = Runner(connector, timeout=10)
        results = [runner.run(f"echo {i}") for i in range(20)]
        assert [r.stdout for r in results] == [str(i) for i in range(20)]
        with connector.sftp.open("/dev/null", "wb") as handle:
            handle.write(b"x")
        new = client_ports(sshd.port) - before
        assert len(new) == 1, new
        assert connector.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # type: ignore[union-attr]


def test_lines_stream_before_the_command_ends(ssh_connector: SSHConnector) -> None:
    seen: list[tuple[float, Stream, str]] = []
    runner = Runner(ssh_connector, on_line=lambda s, line: seen.append((time.monotonic(), s, line)))
    result = runner.run("echo first; sleep 1; echo second")
    ended = time.monotonic()
    assert result.ok and result.stdout == "first\nsecond"
    first = next(t for t, _, line in seen if line == "first")
    assert ended - first > 0.7


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_codes(ssh_connector: SSHConnector, code: int) -> None:
    assert Runner(ssh_connector).run(f"exit {code}").exit_code == code


def test_stdout_and_stderr_are_separate(ssh_connector: SSHConnector) -> None:
    result = Runner(ssh_connector).run("echo out; echo err >&2; echo out2; echo err2 >&2")
    assert result.stdout == "out\nout2"
    assert result.stderr == "err\nerr2"


def test_environment_is_exported_and_quoted(ssh_connector: SSHConnector) -> None:
    value = 'a b\'c $HOME "d" `x`'
    result = Runner(ssh_connector).run('printf %s "$ODD"', env={"ODD": value})
    assert result.stdout == value


def test_timeout_kills_the_remote_process_group(ssh_connector: SSHConnector) -> None:
    marker = f"3{secrets.randbelow(10**6):06d}"
    runner = Runner(ssh_connector)
    started = time.monotonic()
    result = runner.run(f"sleep {marker}1 & sleep {marker}2; wait", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 6
    deadline = time.monotonic() + 3
    while pgrep(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pgrep(f"sleep {marker}") == []
    # the connection is still usable afterwards
    assert runner.run("echo still here").stdout == "still here"


def test_prompt_is_answered(ssh_connector: SSHConnector) -> None:
    runner = Runner(ssh_connector, responders=[apt_yes()], timeout=10)
    result = runner.run("printf 'Do you want to continue? [Y/n] '; read a; echo \"answer=$a\"")
    assert result.ok
    assert "answer=Y" in result.stdout


def test_reconnects_when_the_connection_dropped(sshd: SSHServer) -> None:
    with sshd.connector() as connector:
        assert Runner(connector).run("echo one").stdout == "one"
        connector.transport.close()
        assert Runner(connector).run("echo two").stdout == "two"


# -- host keys -----------------------------------------------------------------------------


def test_unknown_host_is_refused_with_fingerprint(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    connector = sshd.connector(known_hosts=known)
    with pytest.raises(UnknownHostKeyError) as caught:
        connector.connect()
    message = str(caught.value)
    fingerprints = [public_fingerprint(line) for line in sshd.host_keys.values()]
    assert any(fp in message for fp in fingerprints)
    assert "--accept-new-host-key" in message
    assert "ssh-" in message
    assert "\n" not in message
    assert not known.exists()


def test_changed_host_key_is_refused_and_not_overwritten(sshd: SSHServer, tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.unknown_key))
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.host}]:{sshd.port} ssh-ed25519 {other.get_base64()}\n")
    before = known.read_bytes()
    with pytest.raises(ChangedHostKeyError) as caught:
        sshd.connector(known_hosts=known, accept_new_host_key=True).connect()
    assert "CHANGED" in str(caught.value)
    assert known.read_bytes() == before


def test_accept_new_records_the_key(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "sub" / "known_hosts"
    with sshd.connector(known_hosts=known, accept_new_host_key=True) as connector:
        assert Runner(connector).run("echo ok").stdout == "ok"
        fingerprint = connector.host_key_fingerprint
    recorded = known.read_text()
    assert recorded.startswith(f"[{sshd.host}]:{sshd.port} ssh-")
    assert known.stat().st_mode & 0o777 == 0o600
    with sshd.connector(known_hosts=known) as again:
        assert Runner(again).run("echo again").stdout == "again"
        assert again.host_key_fingerprint == fingerprint
    assert known.read_text() == recorded


def test_host_key_fingerprint_is_exposed(ssh_connector: SSHConnector, sshd: SSHServer) -> None:
    assert ssh_connector.host_key_fingerprint in {
        public_fingerprint(line) for line in sshd.host_keys.values()
    }
    assert str(ssh_connector.host_key_fingerprint).startswith("SHA256:")


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "rsa", "ecdsa"])
def test_key_types(sshd: SSHServer, key_type: str) -> None:
    with sshd.connector(key_filename=sshd.keys[key_type]) as connector:
        assert Runner(connector).run("echo $0 >/dev/null; echo ok").stdout == "ok"


def test_wrong_key_fails_with_the_methods_tried(sshd: SSHServer) -> None:
    with pytest.raises(AuthenticationError) as caught:
        sshd.connector(key_filename=sshd.unknown_key).connect()
    message = str(caught.value)
    assert "authentication failed" in message
    assert str(sshd.unknown_key) in message
    assert "publickey" in message


def test_auth_failure_is_not_retried(sshd: SSHServer) -> None:
    clock = FakeClock()
    with pytest.raises(AuthenticationError):
        sshd.connector(key_filename=sshd.unknown_key, connect_retries=3, clock=clock).connect()
    assert clock.sleeps == []


def test_encrypted_key_uses_the_passphrase_callback(sshd: SSHServer) -> None:
    asked: list[str] = []

    def passphrase(path: str) -> str:
        asked.append(path)
        return PASSPHRASE

    key = sshd.keys["encrypted"]
    with sshd.connector(key_filename=key, passphrase_callback=passphrase) as connector:
        assert Runner(connector).run("echo ok").stdout == "ok"
    assert asked == [str(key)]
    with pytest.raises(AuthenticationError, match="encrypted"):
        sshd.connector(key_filename=key).connect()
    with pytest.raises(AuthenticationError, match="wrong passphrase"):
        sshd.connector(key_filename=key, passphrase_callback=lambda _: "nope").connect()


# -- ssh config ----------------------------------------------------------------------------


def test_ssh_config_is_honoured(sshd: SSHServer, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host deploy-target\n"
        f"    HostName {sshd.host}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.keys['rsa']}\n"
    )
    connector = SSHConnector(
        "deploy-target",
        ssh_config=config,
        known_hosts=sshd.known_hosts,
        use_agent=False,
        look_for_keys=False,
        connect_retries=0,
    )
    assert (connector.hostname, connector.port, connector.username) == (
        sshd.host,
        sshd.port,
        sshd.user,
    )
    with connector:
        assert Runner(connector).run("id -un").stdout == sshd.user
        assert connector.host == "deploy-target"


def test_proxy_jump_from_ssh_config(sshd: SSHServer, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host bastion\n"
        f"    HostName {sshd.host}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n"
        "Host inner\n"
        f"    HostName {sshd.host}\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n"
        "    ProxyJump bastion\n"
    )
    connector = SSHConnector(
        "inner",
        ssh_config=config,
        known_hosts=sshd.known_hosts,
        use_agent=False,
        look_for_keys=False,
        connect_retries=0,
    )
    with connector:
        assert Runner(connector).run("echo via-jump").stdout == "via-jump"
        assert isinstance(connector.transport.sock, paramiko.Channel)


# -- connect failures ----------------------------------------------------------------------


def test_dns_failure_is_not_retried(sshd: SSHServer) -> None:
    clock = FakeClock()
    connector = sshd.connector(hostname="no-such-host.invalid", connect_retries=3, clock=clock)
    with pytest.raises(DNSError, match=r"cannot resolve host no-such-host\.invalid"):
        connector.connect()
    assert clock.sleeps == []


def test_refused_is_retried_with_backoff_on_the_injected_clock(sshd: SSHServer) -> None:
    clock = FakeClock()
    backoff = Backoff(base=1.0, factor=2.0, cap=30.0)
    connector = sshd.connector(port=free_port(), connect_retries=3, clock=clock, backoff=backoff)
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError_, match="connection refused"):
        connector.connect()
    assert time.monotonic() - started < 2
    assert len(clock.sleeps) == 3
    for attempt, slept in enumerate(clock.sleeps, start=1):
        assert 0.5 <= slept <= 2 ** (attempt - 1)


def test_silent_server_times_out_and_is_retried() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        clock = FakeClock()
        connector = SSHConnector(
            "127.0.0.1",
            port=port,
            ssh_config=None,
            connect_timeout=0.3,
            connect_retries=1,
            clock=clock,
            use_agent=False,
            look_for_keys=False,
        )
        with pytest.raises(ConnectTimeoutError):
            connector.connect()
        assert len(clock.sleeps) == 1


# -- files ---------------------------------------------------------------------------------


def test_write_file_is_atomic_with_mode(ssh_connector: SSHConnector, tmp_path: Path) -> None:
    target = tmp_path / "remote" / "settings.env"
    target.parent.mkdir()
    target.write_text("old\n")
    old_inode = target.stat().st_ino
    ssh_connector.write_file(str(target), b"SECRET=1\n", mode=0o600)
    assert target.read_bytes() == b"SECRET=1\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.stat().st_ino != old_inode  # replaced by rename, not rewritten in place
    assert os.listdir(target.parent) == ["settings.env"]


def test_put_and_get_file(ssh_connector: SSHConnector, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    payload = os.urandom(300_000)
    source.write_bytes(payload)
    remote = tmp_path / "remote.bin"
    ssh_connector.put_file(source, str(remote), mode=0o750)
    assert remote.read_bytes() == payload
    assert remote.stat().st_mode & 0o777 == 0o750
    back = tmp_path / "back" / "copy.bin"
    ssh_connector.get_file(str(remote), back)
    assert back.read_bytes() == payload


def test_write_file_failure_is_a_command_error(ssh_connector: SSHConnector) -> None:
    from aideploy.core.errors import CommandError

    with pytest.raises(CommandError, match="cannot write"):
        ssh_connector.write_file("/nonexistent-dir/x/y", b"data")


def test_hashed_known_hosts_entry_is_accepted(sshd: SSHServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    entry = paramiko.HostKeys.hash_host(f"[{sshd.host}]:{sshd.port}")
    known.write_text("".join(f"{entry} {line}\n" for line in sshd.host_keys.values()))
    with sshd.connector(known_hosts=known) as connector:
        assert Runner(connector).run("echo ok").stdout == "ok"


def test_ssh_agent_keys_are_offered(
    sshd: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(sshd.keys["ecdsa"])], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        connector = sshd.connector(key_filename=None, use_agent=True)
        with connector:
            assert Runner(connector).run("echo agent").stdout == "agent"
    finally:
        agent.terminate()
        agent.wait()


def test_a_dropped_connection_ends_the_running_command(sshd: SSHServer) -> None:
    # sshd leaves the command running when the connection drops: the process reconnects,
    # finds it by its marker, waits orphan_wait for it, then stops its process group
    with sshd.connector(orphan_wait=0.5) as connector:
        marker = f"3{secrets.randbelow(10**6):06d}"
        process = connector.start(f"sleep {marker}")
        process.read(0.5)  # the command has started (its pgid marker came)
        assert process.pgid is not None
        connector.transport.close()
        out = b""
        deadline = time.monotonic() + 30
        while not process.done() and time.monotonic() < deadline:
            out += b"".join(c.data for c in process.read(0.1))
        assert process.done()
        assert process.exit_code() is None
        assert process.lost is not None and process.lost.message in out.decode()
        assert f"SSH connection to {sshd.host} lost after" in process.lost.message
        assert f"pid {process.pgid}" in process.lost.message
        assert "its process group was stopped" in process.lost.message
        process.close()
        assert pgrep(f"sleep {marker}") == []
