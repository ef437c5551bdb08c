"""known_hosts is parsed once per version of the file: a change is always seen."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from aideploy.core.errors import ChangedHostKeyError, UnknownHostKeyError
from aideploy.engine.hostkeys import KnownHosts


@pytest.fixture
def keys(tmp_path: Path) -> tuple[paramiko.PKey, paramiko.PKey]:
    found = []
    for name in ("a", "b"):
        path = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        found.append(paramiko.Ed25519Key.from_private_key_file(str(path)))
    return found[0], found[1]


def test_an_entry_added_or_changed_after_a_read_is_seen(
    tmp_path: Path, keys: tuple[paramiko.PKey, paramiko.PKey]
) -> None:
    first, second = keys
    path = tmp_path / "known_hosts"
    known = KnownHosts(path)
    with pytest.raises(UnknownHostKeyError):
        known.verify("web01", 2222, first)
    KnownHosts(path).add("web01", 2222, first)  # another reader of the same file adds it
    known.verify("web01", 2222, first)
    assert known.known("web01", 2222) == {"ssh-ed25519": first}
    # the file replaced by one with another key for the host (same length, same times
    # are not enough to hide it: the inode and change time differ)
    other = tmp_path / "known_hosts.new"
    other.write_text(f"[web01]:2222 ssh-ed25519 {second.get_base64()}\n")
    other.replace(path)
    with pytest.raises(ChangedHostKeyError):
        known.verify("web01", 2222, first)
    path.unlink()
    assert known.known("web01", 2222) == {}
