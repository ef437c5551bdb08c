"""Where a deployment goes: the target description kept in state, and the connector built from it.

A :class:`Target` holds only what is safe to store (kind, host, port, user, key path, options);
passwords and passphrases are asked for when a connection needs them and never kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.core.schema import check_domain, check_hostname, check_username
from aideploy.engine.connectors.base import Connector
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.services.config import Config

Ask = Callable[[str], str]


@dataclass(frozen=True)
class Target:
    kind: str  # "local" | "ssh"
    hostname: str = "localhost"
    port: int = 22
    username: str | None = None
    key_file: str | None = None
    use_password: bool = False
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new_host_key: bool = False
    session_mode: bool = True
    connect_timeout: float = 30.0
    connect_retries: int = 3
    keepalive: int = 30
    profile: str | None = None
    domain: str | None = None

    def describe(self) -> str:
        if self.kind == "local":
            return "local machine"
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.hostname}:{self.port}"

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Target:
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"saved target is unreadable: {exc}") from None


def resolve_target(
    config: Config,
    *,
    local: bool = False,
    profile: str | None = None,
    server: str | None = None,
    domain: str | None = None,
    username: str | None = None,
    port: int | None = None,
    key_file: str | None = None,
    accept_new_host_key: bool = False,
) -> Target:
    """Combine command-line options with a profile and the config's ssh defaults."""
    if domain:
        problem = check_domain(domain)
        if problem:
            raise ConfigError(f"--domain: {problem}")
    ssh = config.ssh
    base: dict[str, Any] = {
        "known_hosts": str(ssh.known_hosts),
        "accept_new_host_key": accept_new_host_key or ssh.accept_new_host_key,
        "session_mode": ssh.session_mode,
        "connect_timeout": ssh.timeout,
        "connect_retries": ssh.connect_retries,
        "keepalive": ssh.keepalive,
        "port": ssh.port,
        "key_file": str(ssh.key_file) if ssh.key_file else None,
    }
    if local:
        base["session_mode"] = False  # a local shell starts fast; no session needed
        return Target(kind="local", profile=profile, domain=domain, **base)
    if profile:
        prof = config.profile(profile)
        base.update(
            hostname=prof.hostname,
            username=prof.username,
            port=prof.port or ssh.port,
            key_file=str(prof.key_file) if prof.key_file else base["key_file"],
            use_password=prof.use_password,
            domain=prof.domain,
        )
    if server:
        problem = check_hostname(server)
        if problem:
            raise ConfigError(f"--server: {problem}")
        base["hostname"] = server
    if "hostname" not in base:
        raise ConfigError("no target: give --profile NAME, --server HOST or --local")
    if username:
        problem = check_username(username)
        if problem:
            raise ConfigError(f"--user: {problem}")
        base["username"] = username
    if port:
        base["port"] = port
    if key_file:
        base["key_file"] = str(Path(key_file).expanduser())
    if domain:
        base["domain"] = domain
    return Target(kind="ssh", profile=profile, **base)


def build_connector(
    target: Target,
    *,
    ask_secret: Ask | None = None,
    session: bool | None = None,
) -> Connector:
    """The connector for ``target`` (not yet connected); wrapped in a session when asked."""
    inner: Connector
    if target.kind == "local":
        inner = LocalConnector()
    else:
        password = None
        if target.use_password:
            if ask_secret is None:
                raise ConfigError(
                    f"{target.describe()}: password login needs an interactive terminal"
                )
            password = ask_secret(f"Password for {target.describe()}")
        inner = SSHConnector(
            target.hostname,
            port=target.port,
            username=target.username,
            key_filename=target.key_file,
            password=password,
            passphrase_callback=(
                (lambda path: ask_secret(f"Passphrase for {path}")) if ask_secret else None
            ),
            known_hosts=Path(target.known_hosts).expanduser(),
            accept_new_host_key=target.accept_new_host_key,
            connect_timeout=target.connect_timeout,
            connect_retries=target.connect_retries,
            keepalive=target.keepalive,
        )
    use_session = target.session_mode if session is None else session
    if use_session:
        return SessionConnector(inner)
    return inner
