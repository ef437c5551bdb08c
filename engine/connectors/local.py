"""Run commands on this machine through a shell subprocess in its own process group."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from aideploy.core.atomic import write_atomic
from aideploy.core.errors import CommandError
from aideploy.engine.connectors.base import Chunk, Connector, Process, Stream

_SHELL = shutil.which("bash") or "/bin/sh"


class LocalProcess(Process):
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._selector = selectors.DefaultSelector()
        self._open: dict[int, Stream] = {}
        assert popen.stdout is not None and popen.stderr is not None
        for pipe, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)
            self._open[fd] = name  # type: ignore[assignment]

    def read(self, timeout: float) -> list[Chunk]:
        if not self._open:
            # both streams closed: wait for the exit status without spinning
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout)
            return []
        chunks: list[Chunk] = []
        for key, _ in self._selector.select(timeout):
            fd = int(key.fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if data:
                chunks.append(Chunk(self._open[fd], data))
            else:
                self._selector.unregister(fd)
                del self._open[fd]
        return chunks

    def write(self, data: bytes) -> None:
        stdin = self._popen.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def done(self) -> bool:
        return not self._open and self._popen.poll() is not None

    def exit_code(self) -> int | None:
        code = self._popen.poll()
        if code is None:
            return None
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        pgid = self._popen.pid
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self._popen.poll() is not None and not _group_alive(pgid):
                    return
                time.sleep(0.02)

    def close(self) -> None:
        self._selector.close()
        for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if pipe is not None:
                pipe.close()
        if self._popen.poll() is None:
            self.kill()
        self._popen.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalConnector(Connector):
    """Commands run as the current user through ``bash -c`` in a new session."""

    env_in_command = False  # subprocess environment, never argv

    def __init__(self) -> None:
        self.host = socket.gethostname() or "localhost"

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> Process:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            popen = subprocess.Popen(
                [_SHELL, "-c", command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"cannot start {_SHELL}: {exc}") from exc
        return LocalProcess(popen)

    def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        data = Path(local).read_bytes()
        self.write_file(remote, data, mode=mode if mode is not None else 0o644)

    def get_file(self, remote: str, local: Path) -> None:
        write_atomic(Path(local), Path(remote).read_bytes(), mode=0o600)

    def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
        write_atomic(Path(remote), data, mode=mode)
