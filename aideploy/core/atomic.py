"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _create_temp(path: Path, mode: int | None) -> tuple[int, Path]:
    """A new file beside ``path``: ``mode``, or with ``None`` what ``open()`` would give (0666
    less the umask, applied by the kernel)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                0o600 if mode is not None else 0o666,
            )
        except FileExistsError:
            continue
        if mode is not None:
            os.fchmod(fd, mode)
        return fd, tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int | None = 0o600, text: bool = False) -> Iterator[IO[Any]]:
    """A handle on a temp file beside ``path`` that replaces ``path`` when the block ends cleanly
    (after an fsync; the directory is fsynced after the rename). On an error the temp file is
    removed and ``path`` is left as it was. The file is 0600 unless ``mode`` says otherwise
    (:mod:`aideploy.core.private`); ``mode=None`` keeps what ``open()`` would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes, *, mode: int | None = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    with atomic_file(path, mode=mode) as handle:
        handle.write(data)
