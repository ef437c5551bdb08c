"""`aideploy init`'s key install with a real password login (like ssh-copy-id), on a throwaway
host whose sshd accepts passwords for one test account; the password is never stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from aideploy.cli import wizard
from tests.support.throwaway import PASSWORD_USER, ThrowawayHost, throwaway  # noqa: F401

PASSWORD = "Corr3ct-Horse-Battery"


@pytest.mark.slow
def test_password_login_installs_the_key_once(throwaway: ThrowawayHost, tmp_path: Path) -> None:  # noqa: F811
    made = throwaway.run(
        f"id {PASSWORD_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {PASSWORD_USER}; "
        f"echo '{PASSWORD_USER}:{PASSWORD}' | chpasswd"
    )
    assert made.returncode == 0, made.stderr
    pair = wizard.generate_key(tmp_path / "fresh")
    server = {
        "port": throwaway.port,
        "username": PASSWORD_USER,
        "known_hosts": throwaway.known_hosts,
    }
    with pytest.raises(Exception):  # noqa: B017 - wrong password
        wizard.install_public_key(pair.public_line, "127.0.0.1", password="wrong", **server)
    assert wizard.install_public_key(pair.public_line, "127.0.0.1", password=PASSWORD, **server)
    assert not wizard.install_public_key(pair.public_line, "127.0.0.1", password=PASSWORD, **server)
    check = wizard.check_connection("127.0.0.1", key_file=pair.private, **server)
    assert check.system
    keys = throwaway.run(f"cat /home/{PASSWORD_USER}/.ssh/authorized_keys").stdout.splitlines()
    assert keys.count(pair.public_line) == 1
    mode = throwaway.run(f"stat -c %a /home/{PASSWORD_USER}/.ssh/authorized_keys").stdout.strip()
    assert mode == "600"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace")
