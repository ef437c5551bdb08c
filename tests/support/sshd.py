"""A real OpenSSH server on loopback, for tests and benchmarks.

:func:`running_sshd` starts ``/usr/sbin/sshd -D -e`` on 127.0.0.1 with a free port, generated
host keys (ed25519 + rsa) and generated client keys (ed25519, rsa, ecdsa, an encrypted ed25519),
all in a temp dir. The server logs in the current user (root in CI: ``PermitRootLogin
prohibit-password``).

Two kinds of client key are authorized:

* the *test keys* carry ``environment="HOME=<empty dir>"`` in authorized_keys, so the remote shell
  finds no ``~/.bashrc``: commands cost what sshd + bash cost, not what the user's start-up costs;
* :attr:`SSHServer.login_key` has no such option: the user's real start-up files run, as they
  would on a real server.

The pytest fixture ``sshd`` is session-scoped; ``ssh_connector`` builds a fresh connector.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.engine.throwaway import free_port, loopback_sshd_config

SSHD = "/usr/sbin/sshd"
PASSPHRASE = "correct horse battery staple"


@dataclass
class SSHServer:
    host: str
    port: int
    user: str
    directory: Path
    #: client keys (private key paths) by type; "encrypted" needs :data:`PASSPHRASE`;
    #: "bashrc" logs in with a HOME whose .bashrc appends a line to ``bashrc_runs``
    keys: dict[str, Path]
    #: a key whose logins run the user's real ~/.bashrc
    login_key: Path
    #: a key the server does not accept
    unknown_key: Path
    #: the server's host public keys, by key type
    host_keys: dict[str, str] = field(default_factory=dict)
    #: SHA256 fingerprint of the ed25519 host key
    host_key_fingerprint: str = ""
    #: a known_hosts file holding this server's keys
    known_hosts: Path = Path()
    pid: int = 0

    @property
    def bashrc_runs(self) -> Path:
        return self.directory / "bashrc-runs"

    @property
    def client_key(self) -> Path:
        return self.keys["ed25519"]

    def known_hosts_lines(self) -> str:
        return "".join(f"[{self.host}]:{self.port} {line}\n" for line in self.host_keys.values())

    def connector(self, **overrides: Any) -> SSHConnector:
        """An SSHConnector for this server (no agent, no ~/.ssh, no retries unless asked)."""
        options: dict[str, Any] = {
            "port": self.port,
            "username": self.user,
            "key_filename": self.client_key,
            "known_hosts": self.known_hosts,
            "ssh_config": None,
            "use_agent": False,
            "look_for_keys": False,
            "connect_retries": 0,
            "connect_timeout": 5.0,
        }
        options.update(overrides)
        hostname = options.pop("hostname", self.host)
        return SSHConnector(hostname, **options)


def _keygen(path: Path, key_type: str, passphrase: str = "", comment: str = "") -> str:
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(path)]
    if key_type == "rsa":
        args += ["-b", "2048"]
    if comment:
        args += ["-C", comment]
    subprocess.run(args, check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


def public_fingerprint(public_line: str) -> str:
    """SHA256 fingerprint of an OpenSSH public key line."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], limit: float = 15.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.settimeout(2.0)
            if s.recv(4).startswith(b"SSH-"):
                return True
        time.sleep(0.05)
    return False


def _prepare(directory: Path) -> SSHServer:
    keys: dict[str, Path] = {}
    lines: list[str] = []
    home = directory / "home"
    home.mkdir()
    option = f'environment="HOME={home}"'
    for key_type in ("ed25519", "rsa", "ecdsa"):
        path = directory / f"client_{key_type}"
        lines.append(f"{option} {_keygen(path, key_type)}")
        keys[key_type] = path
    encrypted = directory / "client_encrypted"
    lines.append(f"{option} {_keygen(encrypted, 'ed25519', PASSPHRASE)}")
    keys["encrypted"] = encrypted
    rc_home = directory / "rc-home"
    rc_home.mkdir()
    (rc_home / ".bashrc").write_text(
        f"echo started >> {directory}/bashrc-runs\nexport FROM_BASHRC=yes\n"
    )
    rc_key = directory / "client_rc"
    lines.append(f'environment="HOME={rc_home}" {_keygen(rc_key, "ed25519")}')
    keys["bashrc"] = rc_key
    login_key = directory / "client_login"
    lines.append(_keygen(login_key, "ed25519"))
    unknown_key = directory / "client_unknown"
    _keygen(unknown_key, "ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text("\n".join(lines) + "\n")
    host_keys: dict[str, str] = {}
    for key_type in ("ed25519", "rsa"):
        public = _keygen(directory / f"ssh_host_{key_type}_key", key_type)
        host_keys[public.split()[0]] = " ".join(public.split()[:2])
    server = SSHServer(
        host="127.0.0.1",
        port=0,
        user=getpass.getuser(),
        directory=directory,
        keys=keys,
        login_key=login_key,
        unknown_key=unknown_key,
        host_keys=host_keys,
        host_key_fingerprint=public_fingerprint(host_keys["ssh-ed25519"]),
    )
    return server


def _config(server: SSHServer, port: int, sftp: bool = True, extra: Sequence[str] = ()) -> Path:
    directory = server.directory
    config = directory / "sshd_config"
    config.write_text(
        loopback_sshd_config(
            port,
            [f"{directory}/ssh_host_ed25519_key", f"{directory}/ssh_host_rsa_key"],
            f"{directory}/sshd.pid",
            extra=[
                f"AuthorizedKeysFile {directory}/authorized_keys",
                "PermitUserEnvironment HOME",
                *extra,
            ],
            sftp=sftp,
        )
    )
    return config


@contextlib.contextmanager
def running_sshd(
    directory: Path | None = None, *, sftp: bool = True, extra: Sequence[str] = ()
) -> Iterator[SSHServer]:
    """Start a loopback sshd for the duration of the block (without the SFTP subsystem when
    ``sftp`` is false; ``extra`` sshd_config lines last)."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        raise RuntimeError("OpenSSH server not installed (apt-get install -y openssh-server)")
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    owned = directory is None
    base = Path(tempfile.mkdtemp(prefix="aideploy-sshd.")) if directory is None else directory
    process: subprocess.Popen[bytes] | None = None
    try:
        server = _prepare(base)
        log = (base / "sshd.log").open("wb")
        for _ in range(5):
            port = free_port()
            config = _config(server, port, sftp, extra)
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
            )
            if _wait_for_port(port, process):
                break
            process.kill()
            process.wait()
            process = None
        if process is None:
            log.close()
            raise RuntimeError(f"sshd did not start: {(base / 'sshd.log').read_text()[-2000:]}")
        server.port = port
        server.pid = process.pid
        server.known_hosts = base / "known_hosts"
        server.known_hosts.write_text(server.known_hosts_lines())
        yield server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if owned:
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def running_sshds(count: int) -> Iterator[list[SSHServer]]:
    """``count`` loopback sshd's (hosts of a fleet), each with its own directory, for the block."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_sshd()) for _ in range(count)]


def fleet_config(work: Path, servers: Sequence[SSHServer]) -> Path:
    """A ``known_hosts`` naming every server's key and the aideploy config of a fleet run over
    them (one connection try, no retry delay), written in ``work``; the config's path."""
    known = work / "known_hosts"
    known.write_text("".join(s.known_hosts_lines() for s in servers))
    config = work / "config.json"
    config.write_text(
        json.dumps(
            {
                "ssh": {"known_hosts": str(known), "connect_retries": 1, "timeout": 10},
                "deployment": {"retry_delay": 0, "max_retries": 3},
            }
        )
    )
    return config


@pytest.fixture(scope="session")
def sshd() -> Iterator[SSHServer]:
    """A real OpenSSH server on 127.0.0.1 for the whole test session."""
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshd() as server:
        yield server


@pytest.fixture
def ssh_connector(sshd: SSHServer) -> Iterator[SSHConnector]:
    """A connected SSHConnector to :func:`sshd`, closed after the test."""
    connector = sshd.connector()
    connector.connect()
    try:
        yield connector
    finally:
        connector.close()
