"""The setup wizard's building blocks: local checks, SSH keys, server profiles, a validated config.

Each piece is a plain function so that ``aideploy init`` (interactive or ``--auto``) is only the
order in which they are called and how answers are obtained. Keys are generated with
``cryptography`` (paramiko's own dependency) in OpenSSH format and loaded back with paramiko to
prove they work; private keys are created 0600 with ``O_EXCL``, so an existing key is never
overwritten. The config is validated by :func:`aideploy.services.config.parse_config` before it is
written atomically, 0600.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from aideploy.core.atomic import write_atomic
from aideploy.core.errors import AideployError, ConfigError, UsageError
from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.services.config import Config, default_config, parse_config

KEY_TYPES = ("ed25519", "rsa")
RSA_BITS = 4096
TOOLS = ("ssh", "git")

#: the guide's environments: expected size, default user, and whether deploying needs confirming
GUIDE_PROFILES: dict[str, dict[str, Any]] = {
    "development": {
        "username": "deploy",
        "specs": {"cpu_cores": 2, "memory_gb": 4, "storage_gb": 50},
        "protected": False,
    },
    "staging": {
        "username": "root",
        "specs": {"cpu_cores": 4, "memory_gb": 8, "storage_gb": 100},
        "protected": False,
    },
    "production": {
        "username": "root",
        "specs": {"cpu_cores": 8, "memory_gb": 16, "storage_gb": 200},
        "protected": True,
    },
}

_PUBLIC_LINE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/]+=*( [^\n]*)?$")


class KeyError_(AideployError):
    """An SSH key cannot be read or created."""


def missing_tools(tools: tuple[str, ...] = TOOLS) -> list[str]:
    """Local programs the guide expects that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


# -- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_line: str
    created: bool


def default_key_path(key_type: str) -> Path:
    return Path("~/.ssh").expanduser() / f"id_{key_type}"


def load_key(path: Path, passphrase: str | None = None) -> KeyPair:
    """An existing private key (its public line from ``.pub`` or derived from the key)."""
    try:
        secret = passphrase.encode() if passphrase else None
        key = paramiko.PKey.from_path(path, password=secret)  # type: ignore[arg-type]  # bytes at run time
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: no password given
        raise KeyError_(f"{path}: the key is encrypted; give its passphrase") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise KeyError_(f"{path}: not a usable private key: {exc}") from None
    public = Path(f"{path}.pub")
    line = f"{key.get_name()} {key.get_base64()}"
    if public.is_file():
        text = public.read_text(encoding="utf-8").strip()
        if text.split()[:2] == line.split():
            line = text
    return KeyPair(path, line, created=False)


def generate_key(
    path: Path,
    key_type: str = "ed25519",
    passphrase: str | None = None,
    *,
    comment: str | None = None,
    bits: int = RSA_BITS,
) -> KeyPair:
    """Create a new key pair at ``path`` (+ ``.pub``); refuses to touch an existing file."""
    if key_type not in KEY_TYPES:
        raise UsageError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = public.decode() + (f" {comment}" if comment else "")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyError_(f"{path} already exists; it is never overwritten") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    write_atomic(Path(f"{path}.pub"), (line + "\n").encode(), mode=0o644)
    loaded = load_key(path, passphrase)  # proves paramiko can use it
    return KeyPair(path, loaded.public_line, created=True)


def ensure_key(
    path: Path,
    key_type: str = "ed25519",
    passphrase: str | None = None,
    *,
    comment: str | None = None,
) -> KeyPair:
    """Use the key at ``path`` if there is one, else generate it."""
    if path.exists():
        return load_key(path, passphrase)
    return generate_key(path, key_type, passphrase, comment=comment)


# -- profiles and the config -----------------------------------------------------------------------


def profile_data(
    name: str,
    hostname: str,
    *,
    username: str | None = None,
    domain: str | None = None,
    port: int | None = None,
    key_file: Path | None = None,
    protected: bool | None = None,
) -> dict[str, Any]:
    """One ``server_profiles`` entry; the guide's environments get its specs and defaults."""
    guide = GUIDE_PROFILES.get(name, {})
    data: dict[str, Any] = {
        "hostname": hostname,
        "username": username or guide.get("username", "root"),
    }
    if domain:
        data["domain"] = domain
    if port and port != 22:
        data["port"] = port
    if key_file is not None:
        data["key_file"] = str(key_file)
    if "specs" in guide:
        data["specs"] = dict(guide["specs"])
    data["protected"] = guide.get("protected", False) if protected is None else protected
    return data


def build_config(
    profiles: dict[str, dict[str, Any]], *, key_file: Path | None, port: int = 22
) -> dict[str, Any]:
    """The whole file: every section written out with its defaults, so it is easy to edit."""
    defaults = default_config()
    ssh: dict[str, Any] = {"port": port}
    if key_file is not None:
        ssh["key_file"] = str(key_file)
    return {
        "version": "1.0",
        "ssh": ssh,
        "deployment": msgspec.structs.asdict(defaults.deployment),
        "ai_features": msgspec.structs.asdict(defaults.ai_features),
        "server_profiles": profiles,
    }


def write_config(path: Path, data: dict[str, Any], *, overwrite: bool = False) -> Config:
    """Validate ``data`` and write it to ``path`` (atomically, 0600). Never replaces a file
    unless ``overwrite``."""
    config = parse_config(data, path.name)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists (nothing written; --force replaces it)")
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
    return config


# -- the server ------------------------------------------------------------------------------------


def _connector(
    hostname: str,
    *,
    port: int,
    username: str,
    key_file: Path | None = None,
    passphrase: str | None = None,
    password: str | None = None,
    known_hosts: Path = Path("~/.ssh/known_hosts"),
    accept_new_host_key: bool = False,
    timeout: float = 15.0,
) -> Any:

    return SSHConnector(
        hostname,
        port=port,
        username=username,
        key_filename=str(key_file) if key_file else None,
        password=password,
        passphrase_callback=(lambda _path: passphrase) if passphrase else None,
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
        ssh_config=None,
        use_agent=False,
        look_for_keys=False,
        connect_timeout=timeout,
        connect_retries=0,
    )


def _remote_path(path: str) -> str:
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def install_public_key(
    public_line: str,
    hostname: str,
    *,
    port: int = 22,
    username: str,
    password: str | None = None,
    key_file: Path | None = None,
    known_hosts: Path = Path("~/.ssh/known_hosts"),
    accept_new_host_key: bool = False,
    authorized_keys: str = "~/.ssh/authorized_keys",
) -> bool:
    """Append ``public_line`` to the server's authorized_keys once (like ssh-copy-id).

    Logs in with ``password`` (asked for by the caller, never stored) or an already authorized
    ``key_file``. Returns True if the key was added, False if it was already there.
    """
    line = public_line.strip()
    if not _PUBLIC_LINE.match(line):
        raise KeyError_("not an OpenSSH public key line")
    target = _remote_path(authorized_keys)
    script = (
        f'umask 077; f={target}; mkdir -p "$(dirname "$f")" && touch "$f" && '
        f'if grep -qxF {shlex.quote(line)} "$f"; then echo present; '
        f"else printf '%s\\n' {shlex.quote(line)} >> \"$f\" && echo added; fi"
    )
    connector = _connector(
        hostname,
        port=port,
        username=username,
        key_file=key_file,
        password=password,
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
    )
    connector.connect()
    try:
        code, output = connector.run_quiet(script, timeout=30)
    finally:
        connector.close()
    text = output.decode(errors="replace").strip()
    if code != 0 or text.splitlines()[-1:] not in (["added"], ["present"]):
        raise AideployError(f"installing the public key failed (exit {code}): {text[-200:]}")
    return bool(text.endswith("added"))


@dataclass(frozen=True)
class ConnectionCheck:
    system: str
    fingerprint: str | None
    seconds: float


def check_connection(
    hostname: str,
    *,
    port: int = 22,
    username: str,
    key_file: Path,
    passphrase: str | None = None,
    known_hosts: Path = Path("~/.ssh/known_hosts"),
    accept_new_host_key: bool = False,
) -> ConnectionCheck:
    """Log in with the key and run one command; raises ConnectError (and kin) on failure."""
    started = time.monotonic()
    connector = _connector(
        hostname,
        port=port,
        username=username,
        key_file=key_file,
        passphrase=passphrase,
        known_hosts=known_hosts,
        accept_new_host_key=accept_new_host_key,
    )
    connector.connect()
    try:
        code, output = connector.run_quiet("uname -srm", timeout=30)
    finally:
        connector.close()
    if code != 0:
        raise AideployError(f"connected, but a test command failed (exit {code})")
    system = output.decode(errors="replace").strip().splitlines()
    return ConnectionCheck(
        system[0] if system else "?",
        getattr(connector, "host_key_fingerprint", None),
        time.monotonic() - started,
    )
