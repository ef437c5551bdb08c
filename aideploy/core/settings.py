"""Settings the engine floor runs with, declared once with their ranges, defaults and descriptions.

SSH settings have one set of defaults, :data:`SSH_DEFAULTS`, used by the configuration schema,
the deployment target and the SSH connector alike. Where a setting comes from is decided in one
place, :func:`aideploy.services.target.resolve_target`: command-line flag, then the server
profile, then the configuration's ``ssh`` section, then ``~/.ssh/config``, then these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from aideploy.core.schema import Port


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


class SSHSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    key_file: Annotated[
        Path | None, Meta(description="Private key used when a profile names none.")
    ] = None
    port: Annotated[
        Port | None,
        Meta(
            description="SSH port when a profile names none (unset: ~/.ssh/config's Port, then 22)."
        ),
    ] = None
    timeout: Annotated[
        float,
        Meta(ge=0.1, le=3600, description="Seconds to wait for the TCP connection and handshake."),
    ] = SSH_DEFAULTS.connect_timeout
    known_hosts: Annotated[Path, Meta(description="known_hosts file used to verify host keys.")] = (
        Path(SSH_DEFAULTS.known_hosts)
    )
    accept_new_host_key: Annotated[
        bool,
        Meta(
            description="Record the key of a host seen for the first time (like accept-new); "
            "changed keys are always refused."
        ),
    ] = SSH_DEFAULTS.accept_new_host_key
    keepalive: Annotated[
        int, Meta(ge=0, le=3600, description="Seconds between keepalive packets (0 = off).")
    ] = SSH_DEFAULTS.keepalive
    connect_retries: Annotated[
        int, Meta(ge=1, le=20, description="Connection attempts before giving up.")
    ] = SSH_DEFAULTS.connect_retries
    session_mode: Annotated[
        bool,
        Meta(
            description="Keep one remote shell open for the whole deployment instead of a channel "
            "per command."
        ),
    ] = SSH_DEFAULTS.session_mode
    ssh_config: Annotated[
        Path | None,
        Meta(
            description="OpenSSH client configuration read for HostName, Port, User, IdentityFile "
            "and ProxyJump (null: none)."
        ),
    ] = Path(SSH_DEFAULTS.ssh_config)


class DeploymentSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_retries: Annotated[
        int, Meta(ge=0, le=20, description="Recovery attempts per failing step.")
    ] = 3
    retry_delay: Annotated[
        float,
        Meta(
            ge=0, le=3600, description="Base delay (s) of the exponential backoff between attempts."
        ),
    ] = 5.0
    command_timeout: Annotated[
        float, Meta(ge=1, le=86400, description="Seconds before a command is stopped.")
    ] = 300.0
    auto_approve: Annotated[bool, Meta(description="Run high-risk recoveries without asking.")] = (
        False
    )
    auto_recovery: Annotated[
        bool, Meta(description="Try recoveries at all (off: the first failure stops).")
    ] = True
    backup_on_failure: Annotated[
        bool, Meta(description="Back up files a recovery rewrites before changing them.")
    ] = True
    keep_releases: Annotated[int, Meta(ge=1, le=100, description="Releases kept on the host.")] = 5
