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
from aideploy.core.settings import SSH_DEFAULTS
from aideploy.engine.connectors.ssh_config import read_ssh_config
from aideploy.services.config import Config

Ask = Callable[[str], str]

#: the user a server profile logs in as when neither it nor ~/.ssh/config names one
PROFILE_USER = "root"


@dataclass(frozen=True)
class Target:
    kind: str  # "local" | "ssh"
    hostname: str = "localhost"
    port: int = SSH_DEFAULTS.port
    username: str | None = None
    key_file: str | None = None
    use_password: bool = False
    known_hosts: str = SSH_DEFAULTS.known_hosts
    accept_new_host_key: bool = SSH_DEFAULTS.accept_new_host_key
    session_mode: bool = SSH_DEFAULTS.session_mode
    connect_timeout: float = SSH_DEFAULTS.connect_timeout
    connect_retries: int = SSH_DEFAULTS.connect_retries
    keepalive: int = SSH_DEFAULTS.keepalive
    ssh_config: str | None = SSH_DEFAULTS.ssh_config
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
    """Where a command goes, each setting taken from the first source that gives it: the
    command-line flag, the server profile, the configuration's ``ssh`` section,
    ``~/.ssh/config`` (Port, User; HostName, IdentityFile and ProxyJump are applied when
    connecting), then the defaults in :data:`~aideploy.core.settings.SSH_DEFAULTS`."""
    if domain:
        problem = check_domain(domain)
        if problem:
            raise ConfigError(f"--domain: {problem}")
    ssh = config.ssh
    ssh_config = str(ssh.ssh_config) if ssh.ssh_config else None
    common: dict[str, Any] = {
        "known_hosts": str(ssh.known_hosts),
        "accept_new_host_key": accept_new_host_key or ssh.accept_new_host_key,
        "connect_timeout": ssh.timeout,
        "connect_retries": ssh.connect_retries,
        "keepalive": ssh.keepalive,
        "ssh_config": ssh_config,
    }
    if local:
        # a local shell starts fast; no session needed
        return Target(kind="local", profile=profile, domain=domain, session_mode=False, **common)
    prof = config.profile(profile) if profile else None
    if server:
        problem = check_hostname(server)
        if problem:
            raise ConfigError(f"--server: {problem}")
    if username:
        problem = check_username(username)
        if problem:
            raise ConfigError(f"--user: {problem}")
    hostname = server or (prof.hostname if prof else None)
    if hostname is None:
        raise ConfigError("no target: give --profile NAME, --server HOST or --local")
    from_file = read_ssh_config(ssh_config, hostname)
    key = key_file or (prof.key_file if prof else None) or ssh.key_file
    return Target(
        kind="ssh",
        profile=profile,
        hostname=hostname,
        port=_first(port, prof.port if prof else None, ssh.port, from_file.port)
        or SSH_DEFAULTS.port,
        username=_first(
            username,
            prof.username if prof else None,
            from_file.user,
            PROFILE_USER if prof else None,
        ),
        key_file=str(Path(key).expanduser()) if key else None,
        use_password=prof.use_password if prof else False,
        domain=domain or (prof.domain if prof else None),
        session_mode=ssh.session_mode,
        **common,
    )


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)
