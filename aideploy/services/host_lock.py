"""A lock on this machine per target host and app: two fleet runs (or two hosts of one inventory
that are the same machine under two names) never deploy the same app to the same host at once.

The lock is an ``flock`` on a 0600 file under ``<home>/locks/``; the kernel releases it when the
process ends, so a crashed run leaves nothing to clean up. The stack plan's own deploy lock on
the target still guards against other machines.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from aideploy.core import paths
from aideploy.core.errors import LockError
from aideploy.core.private import create_private

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def lock_name(hostname: str, port: int, app: str) -> str:
    return _UNSAFE.sub("_", f"{hostname}_{port}_{app}")[:200]


@contextmanager
def host_lock(hostname: str, port: int, app: str, *, holder: str) -> Iterator[None]:
    """Hold the lock of ``app`` on ``hostname:port`` for the block; :class:`LockError` at once
    when another deployment on this machine holds it."""
    path = paths.private_home("locks") / f"{lock_name(hostname, port, app)}.lock"
    create_private(path)
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(os.dup(fd), encoding="utf-8") as handle:
                other = handle.read().strip() or "another deployment"
            raise LockError(
                f"{app} on {hostname}:{port} is being deployed by {other} on this machine"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)
