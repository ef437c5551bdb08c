"""What the OpenSSH client configuration (``~/.ssh/config``) says about one host."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from aideploy.core.errors import ConfigError


@dataclass(frozen=True)
class SshConfigEntry:
    """The settings of one ``Host`` alias that aideploy honours; None where the file is silent."""

    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_files: tuple[str, ...] = ()
    proxy_jump: str | None = None


def read_ssh_config(path: Path | str | None, alias: str) -> SshConfigEntry:
    """The entry for ``alias`` in the file at ``path`` (empty when there is no such file)."""
    if path is None:
        return SshConfigEntry()
    expanded = Path(os.path.expanduser(str(path)))
    if not expanded.is_file():
        return SshConfigEntry()
    try:
        found = paramiko.SSHConfig.from_path(str(expanded)).lookup(alias)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(f"cannot read ssh config {expanded}: {exc}") from exc
    port = found.get("port")
    try:
        port_number = int(port) if port is not None else None
    except ValueError:
        raise ConfigError(f"{expanded}: Host {alias}: Port {port!r} is not a number") from None
    jump = found.get("proxyjump")
    return SshConfigEntry(
        # paramiko fills in the alias itself when the file names no HostName
        hostname=str(found["hostname"]) if found.get("hostname") else None,
        port=port_number,
        user=str(found["user"]) if found.get("user") else None,
        identity_files=tuple(os.path.expanduser(str(k)) for k in found.get("identityfile", [])),
        proxy_jump=None if not jump or str(jump).lower() == "none" else str(jump),
    )
