"""One remote shell for a whole deployment, over any connector.

Opening a shell costs the login user's start-up files (``.bashrc`` with pyenv/nvm init can take
100 ms); a deployment runs hundreds of commands. :class:`SessionConnector` starts ONE
``bash --noprofile --norc -s`` through the inner connector and writes each command into it:

* the command runs as ``setsid bash --norc -c <quoted>`` in the background, so it has its own
  process group (whose id the shell reports as a marker on stderr) and
  :meth:`SessionProcess.kill` can stop it through a second inner process without touching the
  session. ``--norc``: bash run under sshd would otherwise source ``~/.bashrc`` again for every
  command; the login shell that became the session already did, once, and its exported
  environment (PATH from pyenv/nvm...) is inherited;
* after ``wait`` the shell prints an end marker carrying the exit code on BOTH stdout and stderr,
  so both streams are known to be flushed; markers hold a random per-session token and are
  stripped from the output;
* the command's stdin is a FIFO made for it in a private 0700 directory and opened read-write by
  the shell (nothing blocks); answers to prompts reach it through a separate ``cat > fifo``
  process, so an answer can never be read as a command by the session shell;
* environment variables are ``export``-ed by a subshell of the session shell that then becomes
  the command: the values travel in the shell's input, never in a command line (the target's
  process list), and nothing leaks into the session.

If the shell dies, the next :meth:`SessionConnector.start` opens a new one.

Starting the shell can stall on a real server (sshd's ``MaxStartups`` throttling, a login that
waits on a slow disk or a stuck ``.bashrc``, a loaded machine): a start that fails or does not
answer within ``start_timeout`` is retried on a fresh channel after a backoff, up to
``start_attempts`` times within ``start_budget`` seconds; the final failure is a
:class:`~aideploy.core.errors.SessionStartError` (a connection error) saying what was waited for.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from aideploy.core.backoff import Backoff
from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import CommandError, ConnectError, SessionStartError
from aideploy.engine.connectors.base import Chunk, Connector, Process, Stream

log = logging.getLogger("aideploy.session")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def export_prefix(env: Mapping[str, str] | None) -> str:
    """``export K=V; `` pairs, values quoted, for a shell that reads them from its input (never
    for a command line: the values would show in the target's process list)."""
    if not env:
        return ""
    parts = []
    for key, value in env.items():
        if not _NAME.fullmatch(key):
            raise CommandError(f"invalid environment variable name: {key!r}")
        parts.append(f"export {key}={shlex.quote(value)}; ")
    return "".join(parts)


def stdin_env(env: Mapping[str, str] | None) -> tuple[str, bytes]:
    """How a command started by a plain shell (``sh -c``) gets ``env`` without a command line
    holding the values: a prologue that reads ``export`` lines from standard input up to a random
    end line and evaluates them, and the bytes to send first on that input. The shell's ``read``
    takes one line at a time, so the command's own input is left untouched after it."""
    if not env:
        return "", b""
    end = f"__aideploy_env_end_{secrets.token_hex(8)}"
    lines = "".join(export_prefix({key: value}) + "\n" for key, value in env.items())
    prologue = (
        "__ad_e=; while IFS= read -r __ad_l; do "
        f'[ "$__ad_l" = {end} ] && break; __ad_e="$__ad_e$__ad_l\n"; done; '
        'eval "$__ad_e"; unset __ad_e __ad_l; '
    )
    return prologue, (lines + end + "\n").encode()


def group_kill_command(pgid: int, grace: float = 2.0) -> str:
    """Shell that sends TERM to process group ``pgid``, waits up to ``grace`` s, then KILL.

    A group counts as gone once only zombies are left in it (``kill -0`` would still succeed on
    those until their new parent reaps them); without ``ps`` on the target ``kill -0`` decides.
    """
    steps = max(1, round(grace / 0.1))
    group = int(pgid)
    alive = (
        "if command -v ps >/dev/null 2>&1; then "
        f"ps -eo pgid=,stat= | awk '$1 == {group} && $2 !~ /^Z/ {{ f = 1 }} END {{ exit !f }}'; "
        f"else kill -0 -- -{group} 2>/dev/null; fi"
    )
    return (
        f"kill -TERM -- -{group} 2>/dev/null || exit 0; i=0; "
        f"while {alive}; do i=$((i+1)); "
        f"if [ $i -ge {steps} ]; then kill -KILL -- -{group} 2>/dev/null; exit 0; fi; "
        "sleep 0.1; done"
    )


def run_to_end(connector: Connector, command: str, timeout: float = 15.0) -> int | None:
    """Run a helper command through ``connector``, discard its output, return its exit code."""
    process = connector.start(command)
    deadline = time.monotonic() + timeout
    try:
        while not process.done() and time.monotonic() < deadline:
            process.read(0.1)
        return process.exit_code() if process.done() else None
    finally:
        process.close()


class _Scanner:
    """Strips this session's markers from one stream; reports (kind, command, value) events."""

    def __init__(self, token: str) -> None:
        self._marker = re.compile(rb"\x1fAD" + token.encode() + rb":(\d+):(PID|END):(\d+)\n")
        self._hold = b""

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[str, int, int]]]:
        buf = self._hold + data
        self._hold = b""
        out = bytearray()
        events: list[tuple[str, int, int]] = []
        while buf:
            start = buf.find(b"\x1f")
            if start < 0:
                out += buf
                break
            out += buf[:start]
            buf = buf[start:]
            found = self._marker.match(buf)
            if found:
                events.append((found.group(2).decode(), int(found.group(1)), int(found.group(3))))
                buf = buf[found.end() :]
            elif len(buf) < 64 and b"\n" not in buf:
                self._hold = buf  # maybe the start of a marker: wait for more
                break
            else:
                out += buf[:1]
                buf = buf[1:]
        return bytes(out), events

    def flush(self) -> bytes:
        held, self._hold = self._hold, b""
        return held


class SessionProcess(Process):
    """One command inside the session shell."""

    def __init__(self, session: SessionConnector, shell: Process, number: int, fifo: str) -> None:
        self._session = session
        self._shell = shell
        self.number = number
        self.fifo = fifo
        self._scanners: dict[Stream, _Scanner] = {
            "stdout": _Scanner(session.token),
            "stderr": _Scanner(session.token),
        }
        self._ended: dict[Stream, bool] = {"stdout": False, "stderr": False}
        self._code: int | None = None
        self._pgid: int | None = None
        self._shell_died = False
        self._pending: list[Chunk] = []
        self._writer: Process | None = None
        self._closed = False

    @property
    def pgid(self) -> int | None:
        return self._pgid

    def _scan(self, raw: list[Chunk]) -> list[Chunk]:
        out: list[Chunk] = []
        for chunk in raw:
            if self._ended[chunk.stream]:
                continue
            data, events = self._scanners[chunk.stream].feed(chunk.data)
            if data:
                out.append(Chunk(chunk.stream, data))
            for kind, number, value in events:
                if number != self.number:
                    continue
                if kind == "PID":
                    self._pgid = value
                else:
                    self._ended[chunk.stream] = True
                    self._code = value
        if not all(self._ended.values()) and self._shell.done():
            self._shell_died = True
            for stream, scanner in self._scanners.items():
                held = scanner.flush()
                if held and not self._ended[stream]:
                    out.append(Chunk(stream, held))
            if self._pgid is not None and self.number:
                out.append(self._stop_orphan())
        return out

    def _stop_orphan(self) -> Chunk:
        """The session shell is gone (its connection dropped) while this command ran in a
        process group of its own: stop that group through a new connection, so that a retry
        never runs beside it."""
        try:
            run_to_end(self._session.inner, group_kill_command(int(self._pgid or 0)), 30.0)
            said = f"its process group {self._pgid} was stopped"
        except Exception as exc:  # the host is unreachable: say so, the pid helps a person
            said = f"it may still be running (process group {self._pgid}): {exc}"
        return Chunk("stderr", f"the session shell was lost during the command; {said}\n".encode())

    def read(self, timeout: float) -> list[Chunk]:
        if self._pending:
            chunks, self._pending = self._pending, []
            return chunks
        if self.done():
            return []
        return self._scan(self._shell.read(timeout))

    def write(self, data: bytes) -> None:
        if self.done():
            return
        if self._writer is None:
            self._writer = self._session.inner.start(f"exec cat > {shlex.quote(self.fifo)}")
        self._writer.write(data)

    def done(self) -> bool:
        return not self._pending and (self._shell_died or all(self._ended.values()))

    def exit_code(self) -> int | None:
        if self._shell_died or not all(self._ended.values()):
            return None
        return self._code

    def kill(self) -> None:
        deadline = time.monotonic() + 2.0
        while self._pgid is None and not self.done() and time.monotonic() < deadline:
            self._pending.extend(self._scan(self._shell.read(0.05)))
        if self._pgid is not None and not self.done():
            run_to_end(self._session.inner, group_kill_command(self._pgid))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        # read up to the end markers so the next command starts on a clean stream
        deadline = time.monotonic() + self._session.drain_timeout
        while not self.done() and time.monotonic() < deadline:
            self._pending.clear()
            self._scan(self._shell.read(0.1))
        self._pending.clear()
        if not self.done() or self._shell_died:
            self._session.reset()
        self._session.finished(self)


class SessionConnector(Connector):
    """Runs every command in one long-lived shell started through ``inner``."""

    env_in_command = False  # environment values travel on the input, never a command line

    def __init__(
        self,
        inner: Connector,
        *,
        shell: str = "bash --noprofile --norc -s",
        start_timeout: float = 20.0,
        drain_timeout: float = 10.0,
        start_attempts: int = 3,
        start_budget: float = 90.0,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.inner = inner
        self.host = inner.host
        self.shell_command = shell
        #: seconds one start waits for the shell's answer
        self.start_timeout = start_timeout
        self.start_attempts = max(1, start_attempts)
        #: seconds all the starts of one shell may take, waits between them included
        self.start_budget = start_budget
        self.clock: Clock = clock or SystemClock()
        self.backoff = backoff or Backoff(base=1.0, cap=10.0)
        self.drain_timeout = drain_timeout
        self.token = ""
        self.directory = ""
        #: how many shells were opened (a new one after the previous died)
        self.shells_opened = 0
        #: PID of the current session shell on the target
        self.shell_pid: int | None = None
        #: how many per-command FIFOs one mkfifo call makes
        self.fifo_batch = 32
        self._shell: Process | None = None
        self._counter = 0
        self._current: SessionProcess | None = None

    # -- the shell -------------------------------------------------------------------------

    def _open_shell(self) -> Process:
        """Start the session shell, retrying a failed or silent start with backoff."""
        began = self.clock.now()
        reasons: list[str] = []
        for attempt in range(1, self.start_attempts + 1):
            try:
                return self._start_shell()
            except ConnectError:
                raise  # the connection itself failed: its own error and exit code
            except CommandError as exc:
                reasons.append(str(exc))
            delay = self.backoff.delay(attempt)
            spent = self.clock.now() - began
            if attempt == self.start_attempts or spent + delay >= self.start_budget:
                break
            log.warning(
                "session shell on %s did not start (%s); retrying in %.1fs (attempt %d of %d)",
                self.host,
                reasons[-1],
                delay,
                attempt + 1,
                self.start_attempts,
            )
            self.clock.sleep(delay)
        spent = self.clock.now() - began
        tries = len(reasons)
        raise SessionStartError(
            f"cannot start a session shell ({self.shell_command}) on {self.host}: "
            f"{reasons[-1]} ({tries} attempt{'s' if tries != 1 else ''} in {spent:.1f}s)",
            hint="check the server's sshd (MaxStartups, LoginGraceTime) and the login user's "
            "start-up files, or set ssh.session_mode to false",
        )

    def _start_shell(self) -> Process:
        """One start of the shell; CommandError says what did not come."""
        self.reset()
        if self.directory:
            # a shell that died by a signal did not run its EXIT trap
            with contextlib.suppress(Exception):
                run_to_end(self.inner, f"rm -rf {shlex.quote(self.directory)}")
        self.token = secrets.token_hex(8)
        self.directory = f"/tmp/aideploy-session.{self.token}"
        shell = self.inner.start(f"exec {self.shell_command}")
        # after a dropped connection the shell is not waited for: each command's own group is
        # stopped instead (SessionProcess._stop_orphan)
        shell.limit(0.0)
        self._shell = shell
        self._counter = 0
        directory = shlex.quote(self.directory)
        setup = (
            f"mkdir -m 700 {directory} || exit 1\n"
            f"trap 'rm -rf {directory}' EXIT\n"
            f"printf '\\037AD{self.token}:0:PID:%s\\n' \"$$\" >&2\n"
            f"printf '\\037AD{self.token}:0:END:0\\n'; "
            f"printf '\\037AD{self.token}:0:END:0\\n' >&2\n"
        )
        shell.write(setup.encode())
        probe = SessionProcess(self, shell, 0, "")
        seen = b""
        deadline = time.monotonic() + self.start_timeout
        while not probe.done() and time.monotonic() < deadline:
            seen += b"".join(c.data for c in probe.read(0.1))
        if probe.exit_code() != 0:
            answered = probe.done()
            self.reset()
            detail = seen.decode(errors="replace").strip()[-300:]
            if not answered:
                started = getattr(shell, "pgid", None)
                why = f"waited {self.start_timeout:g}s for the shell's ready line: " + (
                    f"the command started (pid {started}) but the shell did not answer"
                    if started is not None
                    else "the server did not start the command"
                )
            else:
                why = "the shell ended before it was ready"
            raise CommandError(why + (f": {detail}" if detail else ""))
        self.shell_pid = probe.pgid
        self.shells_opened += 1
        return shell

    def _ensure_shell(self) -> Process:
        if self._current is not None:
            self._current.close()
        if self._shell is None or self._shell.done():
            return self._open_shell()
        return self._shell

    def reset(self) -> None:
        """Drop the current shell (the next command opens a new one)."""
        shell, self._shell = self._shell, None
        self._current = None
        self.shell_pid = None
        if shell is not None:
            with contextlib.suppress(Exception):
                if not shell.done():
                    shell.write(b"\nexit 0\n")
                    deadline = time.monotonic() + 1.0
                    while not shell.done() and time.monotonic() < deadline:
                        shell.read(0.05)
            with contextlib.suppress(Exception):
                shell.close()

    def finished(self, process: SessionProcess) -> None:
        if self._current is process:
            self._current = None

    # -- Connector -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect the inner connector and open the session shell (idempotent)."""
        self.inner.connect()
        if self._shell is None or self._shell.done():
            self._open_shell()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        self.reset()
        self.inner.close()

    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> SessionProcess:
        shell = self._ensure_shell()
        self._counter += 1
        number = self._counter
        fifo = f"{self.directory}/in.{number}"
        quoted_fifo = shlex.quote(fifo)
        tag = f"\\037AD{self.token}:{number}"
        script = ""
        if (number - 1) % self.fifo_batch == 0:
            # FIFOs are made (and the finished ones removed) in batches: one mkfifo and one rm
            # per batch instead of two extra processes per command
            directory = shlex.quote(self.directory)
            names = " ".join(f"{directory}/in.{n}" for n in range(number, number + self.fifo_batch))
            script += f"rm -f {directory}/in.*; mkfifo {names}\n"
        script += (
            f"exec 3<>{quoted_fifo}\n"
            # the values are exported by the subshell, read from the session's input: never in
            # the command line of any process
            f"( {export_prefix(env)}exec setsid bash --norc -c {shlex.quote(command)} ) "
            "<&3 3<&- &\n"
            f"__ad_pid=$!; printf '{tag}:PID:%s\\n' \"$__ad_pid\" >&2\n"
            f'wait "$__ad_pid"; __ad_rc=$?; exec 3<&-\n'
            f"printf '{tag}:END:%s\\n' \"$__ad_rc\"; printf '{tag}:END:%s\\n' \"$__ad_rc\" >&2\n"
        )
        shell.write(script.encode())
        process = SessionProcess(self, shell, number, fifo)
        self._current = process
        return process

    def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        self.inner.put_file(local, remote, mode=mode)

    def get_file(self, remote: str, local: Path) -> None:
        self.inner.get_file(remote, local)

    def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
        self.inner.write_file(remote, data, mode=mode)
