"""Host key verification against an OpenSSH known_hosts file.

Policy (like OpenSSH ``StrictHostKeyChecking``): a known key that matches is accepted; a host that
is not in the file is refused unless the caller asked to trust new hosts (``accept-new``), in which
case its key is appended; a key that differs from the recorded one is always refused and the file
is never rewritten.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import paramiko

from aideploy.core.errors import ChangedHostKeyError, UnknownHostKeyError
from aideploy.core.private import private_dir

#: algorithm names paramiko negotiates for each key type found in known_hosts
_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


#: known_hosts files already parsed: path -> (the file's version, its keys); read-only once stored
_parsed: dict[str, tuple[tuple[int, ...], paramiko.HostKeys]] = {}
_parsed_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_entry(hostname: str, port: int) -> str:
    """The name under which OpenSSH records ``hostname:port`` (``[host]:port`` off port 22)."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


class KnownHosts:
    """One known_hosts file (``~`` expanded). Missing files count as empty."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(os.path.expanduser(str(path)))

    def _load(self) -> paramiko.HostKeys:
        try:
            st = os.stat(self.path)
        except OSError:
            return paramiko.HostKeys()
        if not stat.S_ISREG(st.st_mode):
            return paramiko.HostKeys()
        # parsed once per version of the file: the hosts of a fleet share one known_hosts, and
        # each connection reads it twice; any change (an entry added, the file edited or
        # replaced) changes its inode, size or change time, and it is read again
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        key = str(self.path)
        with _parsed_lock:
            cached = _parsed.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        keys = paramiko.HostKeys()
        keys.load(key)
        with _parsed_lock:
            _parsed[key] = (version, keys)
        return keys

    def known(self, hostname: str, port: int) -> dict[str, paramiko.PKey]:
        """Recorded keys for the host, by key type (``ssh-ed25519``, ``ssh-rsa``...)."""
        found = self._load().lookup(host_entry(hostname, port))
        return dict(found) if found is not None else {}

    def preferred_algorithms(self, hostname: str, port: int) -> list[str]:
        """Host key algorithms to ask for first, so the server shows a key we already know."""
        names: list[str] = []
        for key_type in self.known(hostname, port):
            names.extend(_ALGORITHMS.get(key_type, (key_type,)))
        return names

    def verify(
        self, hostname: str, port: int, key: paramiko.PKey, *, accept_new: bool = False
    ) -> None:
        """Accept ``key`` for the host or raise; with ``accept_new`` record an unknown host."""
        entry = host_entry(hostname, port)
        recorded = self.known(hostname, port)
        key_type = key.get_name()
        shown = f"{key_type} {fingerprint(key)}"
        if key_type in recorded:
            if recorded[key_type] == key:
                return
            old = fingerprint(recorded[key_type])
            raise ChangedHostKeyError(
                f"host key for {entry} CHANGED: known_hosts {self.path} has {key_type} {old}, "
                f"the server now shows {shown}; refusing to connect (possible man-in-the-middle)",
                hint=f"if the change is expected, remove the old entry: ssh-keygen -R '{entry}'"
                f" -f {self.path}",
            )
        if recorded:
            # the host is known under another key type: a different key is a changed key
            other = ", ".join(f"{t} {fingerprint(k)}" for t, k in recorded.items())
            raise ChangedHostKeyError(
                f"host key for {entry} does not match known_hosts {self.path} ({other}); "
                f"the server shows {shown}; refusing to connect",
                hint=f"if the change is expected, remove the old entry: ssh-keygen -R '{entry}'"
                f" -f {self.path}",
            )
        if not accept_new:
            raise UnknownHostKeyError(
                f"unknown host key for {entry}: {shown} is not in {self.path}; "
                "re-run with --accept-new-host-key to trust it"
            )
        self.add(hostname, port, key)

    def add(self, hostname: str, port: int, key: paramiko.PKey, *, hashed: bool = False) -> None:
        """Append one entry (never rewrites existing lines)."""
        entry = host_entry(hostname, port)
        if hashed:
            entry = paramiko.HostKeys.hash_host(entry)
        private_dir(self.path.parent)
        line = f"{entry} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            if handle.tell() > 0 and not self.path.read_bytes().endswith(b"\n"):
                handle.write("\n")
            handle.write(line)
