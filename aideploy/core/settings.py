"""Settings the engine floor runs with, declared once with their defaults and descriptions.

SSH settings have one set of defaults, :data:`SSH_DEFAULTS`, used by the configuration schema,
the deployment target and the SSH connector alike. Where a setting comes from is decided in one
place, :func:`aideploy.services.target.resolve_target`: command-line flag, then the server
profile, then the configuration's ``ssh`` section, then ``~/.ssh/config``, then these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aideploy.core.schema import _range, check_path, spec


@dataclass(frozen=True)
class SshDefaults:
    """The defaults of an SSH connection (OpenSSH's where it has one)."""

    port: int = 22
    connect_timeout: float = 30.0
    connect_retries: int = 3
    keepalive: int = 30
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_config: str = "~/.ssh/config"
    accept_new_host_key: bool = False
    session_mode: bool = True


SSH_DEFAULTS = SshDefaults()


@dataclass(frozen=True)
class SSHSettings:
    key_file: Path | None = spec("Private key used when a profile names none.", None, check_path)
    port: int | None = spec(
        "SSH port when a profile names none (unset: ~/.ssh/config's Port, then 22).",
        None,
        _range(1, 65535),
    )
    timeout: float = spec(
        "Seconds to wait for the TCP connection and handshake.",
        SSH_DEFAULTS.connect_timeout,
        _range(0.1, 3600),
    )
    known_hosts: Path = spec(
        "known_hosts file used to verify host keys.", Path(SSH_DEFAULTS.known_hosts), check_path
    )
    accept_new_host_key: bool = spec(
        "Record the key of a host seen for the first time (like accept-new); changed keys are "
        "always refused.",
        SSH_DEFAULTS.accept_new_host_key,
    )
    keepalive: int = spec(
        "Seconds between keepalive packets (0 = off).", SSH_DEFAULTS.keepalive, _range(0, 3600)
    )
    connect_retries: int = spec(
        "Connection attempts before giving up.", SSH_DEFAULTS.connect_retries, _range(1, 20)
    )
    session_mode: bool = spec(
        "Keep one remote shell open for the whole deployment instead of a channel per command.",
        SSH_DEFAULTS.session_mode,
    )
    ssh_config: Path | None = spec(
        "OpenSSH client configuration read for HostName, Port, User, IdentityFile and ProxyJump "
        "(null: none).",
        Path(SSH_DEFAULTS.ssh_config),
        check_path,
    )


@dataclass(frozen=True)
class DeploymentSettings:
    max_retries: int = spec("Recovery attempts per failing step.", 3, _range(0, 20))
    retry_delay: float = spec(
        "Base delay (s) of the exponential backoff between attempts.", 5.0, _range(0, 3600)
    )
    command_timeout: float = spec("Seconds before a command is stopped.", 300.0, _range(1, 86400))
    auto_approve: bool = spec("Run high-risk recoveries without asking.", False)
    auto_recovery: bool = spec("Try recoveries at all (off: the first failure stops).", True)
    backup_on_failure: bool = spec("Back up files a recovery rewrites before changing them.", True)
    keep_releases: int = spec("Releases kept on the host.", 5, _range(1, 100))
