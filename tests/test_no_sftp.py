"""A server without the SFTP subsystem: files go over the exec channel (temp file, byte count
and SHA-256 checked on the server, chmod, rename), whole or not at all."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.core.errors import CommandError
from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.engine.connectors.stream import write_command
from tests.support.sshd import SSHD, SSHServer, running_sshd


@pytest.fixture(scope="module")
def no_sftp() -> Iterator[SSHServer]:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshd(sftp=False) as server:
        yield server


@pytest.fixture
def connector(no_sftp: SSHServer) -> Iterator[SSHConnector]:
    connector = no_sftp.connector()
    connector.connect()
    try:
        yield connector
    finally:
        connector.close()


def test_write_file_streams_over_exec_with_mode(connector: SSHConnector, tmp_path: Path) -> None:
    target = tmp_path / "conf" / "app.env"
    target.parent.mkdir()
    data = bytes(range(256)) * 3000 + b"\n'$(echo no)' \\ end"  # binary, > one block
    connector.write_file(str(target), data, mode=0o640)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert connector.sftp_available is False
    assert os.listdir(target.parent) == ["app.env"]  # no temporary file left


def test_put_and_get_file_round_trip(connector: SSHConnector, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(700_000))
    remote = tmp_path / "name with spaces;$x"
    connector.put_file(local, str(remote), mode=0o600)
    assert remote.read_bytes() == local.read_bytes()
    assert stat.S_IMODE(remote.stat().st_mode) == 0o600
    back = tmp_path / "back.bin"
    connector.get_file(str(remote), back)
    assert back.read_bytes() == local.read_bytes()


def test_a_failed_write_leaves_the_destination_untouched(
    connector: SSHConnector, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="cannot write"):
        connector.write_file(str(tmp_path / "missing-dir" / "f"), b"x")
    target = tmp_path / "kept"
    target.write_bytes(b"old")
    # a transfer cut short (the server got fewer bytes than announced): nothing renamed
    command = write_command(str(target), str(tmp_path / ".kept.tmp"), 0o644, 10, "0" * 64)
    channel = connector._exec_channel(command)
    channel.sendall(b"new")
    channel.shutdown_write()
    assert channel.recv_exit_status() == 3
    channel.close()
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["kept"]


def test_reading_a_missing_file_is_a_clear_error(connector: SSHConnector, tmp_path: Path) -> None:
    local = tmp_path / "never"
    with pytest.raises(CommandError, match=r"cannot read .*No such file"):
        connector.get_file(str(tmp_path / "absent"), local)
    assert not local.exists()
