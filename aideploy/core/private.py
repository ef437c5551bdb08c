"""The one policy for files aideploy keeps on the operator's machine: private to the user.

Everything aideploy writes that may hold operational data (deployment state, logs, the audit
log, the knowledge base and its SQLite companions, exports, HTML reports, the metrics textfile,
known_hosts entries, classifier caches) is a 0600 file in a 0700 directory. ``docs/security.md``
lists each file.

- :func:`private_dir` creates a directory and every missing parent 0700 (whatever the umask).
  With ``tighten=True`` (aideploy's own directories: ``$AIDEPLOY_HOME`` and what is under it,
  the cache) an existing directory this user owns loses its group/other bits too; a directory
  the operator chose (where ``--kb`` or ``-o`` points) is only created, never changed.
- :func:`create_private` creates a file 0600 (or opens an existing one) before a library such
  as :mod:`logging` or SQLite opens it by name, so the file is never visible with wider bits;
  :func:`open_private` opens one for appending.
- :func:`private_umask` is the guard around code that creates files we do not name (a library's
  temporary or companion files): umask 077 while it runs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700

_umask_lock = threading.Lock()


def _owned(st: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """``path`` as a directory; the ones created here (``path`` and its missing parents) are 0700.

    ``tighten``: an existing ``path`` owned by this user is made 0700 as well (a symlink is
    followed to its directory, and that directory is the one checked and changed).
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask
    if tighten and not missing:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode) and _owned(st) and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077 | 0o700)
    return path


def create_private(path: Path, *, tighten: bool = True) -> Path:
    """``path`` exists afterwards: created 0600 when missing (contents never touched).

    ``tighten``: an existing regular file this user owns loses its group/other bits.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        st = os.fstat(fd)
        if tighten and stat.S_ISREG(st.st_mode) and _owned(st) and st.st_mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077)
    finally:
        os.close(fd)
    return path


def open_private(path: Path, *, encoding: str = "utf-8") -> IO[str]:
    """``path`` opened for appending text, created 0600 (an existing file is made private)."""
    fd = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE
    )
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and _owned(st) and st.st_mode & 0o077:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077)
    return os.fdopen(fd, "a", encoding=encoding)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """umask 077 for the block: files and directories a library creates get no group/other bits.

    The umask is per process; a lock keeps two blocks in threads from restoring each other's.
    """
    with _umask_lock:
        old = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(old)


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "create_private",
    "open_private",
    "private_dir",
    "private_umask",
]
