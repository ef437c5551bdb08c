"""Settings the engine floor runs with, declared once with their defaults and descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aideploy.core.schema import _range, check_path, spec


@dataclass(frozen=True)
class SSHSettings:
    key_file: Path | None = spec("Private key used when a profile names none.", None, check_path)
    port: int = spec("SSH port when a profile names none.", 22, _range(1, 65535))
    timeout: float = spec(
        "Seconds to wait for the TCP connection and handshake.", 30.0, _range(0.1, 3600)
    )
    known_hosts: Path = spec(
        "known_hosts file used to verify host keys.", Path("~/.ssh/known_hosts"), check_path
    )
    accept_new_host_key: bool = spec(
        "Record the key of a host seen for the first time (like accept-new); changed keys are "
        "always refused.",
        False,
    )
    keepalive: int = spec("Seconds between keepalive packets (0 = off).", 30, _range(0, 3600))
    connect_retries: int = spec("Connection attempts before giving up.", 3, _range(1, 20))
    session_mode: bool = spec(
        "Keep one remote shell open for the whole deployment instead of a channel per command.",
        True,
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
