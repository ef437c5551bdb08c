"""The one connector interface. Implementations give primitives; the I/O loop lives in the runner.

A connector starts processes and moves files. A started :class:`Process` yields output chunks as
they arrive, accepts input, reports its exit code and can be stopped for real (the whole process
group on the target, not just the reader).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class Chunk:
    stream: Stream
    data: bytes


class Process(abc.ABC):
    """A running command on a target."""

    @abc.abstractmethod
    def read(self, timeout: float) -> list[Chunk]:
        """Wait up to ``timeout`` seconds for output; return what arrived (maybe nothing)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the command's standard input."""

    @abc.abstractmethod
    def done(self) -> bool:
        """True once the command exited and both output streams are drained."""

    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """Exit status once done (None if unknown, e.g. killed by a signal over SSH)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the command and everything it started, on the target."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release local resources."""

    def limit(self, seconds: float | None) -> None:  # noqa: B027 - optional hook
        """The command's time limit (None: none), told by the runner right after the start:
        a process that waits on its own (after a dropped connection) waits no longer."""


class Connector(abc.ABC):
    """A way to run commands on one host."""

    #: name used in logs and results
    host: str = "localhost"
    #: True when ``start(env=...)`` puts the values into the command line (visible in the
    #: target's process list); the runner then passes secret values through a 0600 file instead
    env_in_command: bool = True

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    @abc.abstractmethod
    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> Process:
        """Start ``command`` (a shell string, already quoted) and return the running process."""

    @abc.abstractmethod
    def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        """Copy a local file to the target."""

    @abc.abstractmethod
    def get_file(self, remote: str, local: Path) -> None:
        """Copy a file from the target."""

    @abc.abstractmethod
    def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote`` atomically (temp file + rename), with ``mode``."""

    def __enter__(self) -> Connector:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
