"""Run commands over ONE persistent SSH connection per host (paramiko).

Every command is a new channel on the same transport, every file transfer goes through one lazily
opened SFTP client. The socket is ours (``TCP_NODELAY`` set: without it each short command pays
Nagle + delayed-ACK latency). Host keys are checked against known_hosts before any credential is
offered; unknown hosts are refused unless ``accept_new_host_key`` is set, changed keys always.

A command's process group is known before it runs: the remote shell prints its own PID (sshd gives
every exec its own session, so that PID is the group id) as a marker line on stderr, which the
process strips from the output. :meth:`SSHProcess.kill` stops the whole group through a second
channel.

Over 400 lines because one class owns one transport: connecting (host keys, keys, agent,
ProxyJump, retries), channels per command and file transfer all act on the same connection.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import logging
import os
import re
import secrets
import select
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko

from aideploy.core.atomic import atomic_file
from aideploy.core.backoff import Backoff
from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import (
    AuthenticationError,
    CommandError,
    ConfigError,
    ConnectError,
    ConnectionLost,
    ConnectionRefusedError_,
    ConnectTimeoutError,
    DNSError,
)
from aideploy.core.inputs import check_regular
from aideploy.core.settings import SSH_DEFAULTS
from aideploy.engine.connectors import ownership, stream
from aideploy.engine.connectors.base import Chunk, Connector, Process
from aideploy.engine.connectors.session import group_kill_command, stdin_env
from aideploy.engine.connectors.ssh_config import read_ssh_config
from aideploy.engine.connectors.stream import NoSFTP
from aideploy.engine.hostkeys import KnownHosts, fingerprint
from aideploy.engine.logs import current_step

log = logging.getLogger("aideploy.ssh")

PassphraseCallback = Callable[[str], str | None]

_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_PID_MARKER = b"\x1faideploy-pgid:"
_PID_LINE = re.compile(rb"\x1faideploy-pgid:(\d+)\n")
#: ended commands whose exit files are removed together (by the next command)
FINISHED_BATCH = 32
#: seconds between looks at a command found running after a dropped connection
ORPHAN_POLL = 0.5


class SSHProcess(Process):
    """One command on one channel of the shared transport."""

    def __init__(
        self, connector: SSHConnector, channel: paramiko.Channel, command_id: str = ""
    ) -> None:
        self._connector = connector
        self._channel = channel
        self._transport = channel.get_transport()
        self._fd = channel.fileno()  # readable whenever stdout or stderr has data or EOF
        self._pgid: int | None = None
        self._stderr_hold = b""  # stderr until the PID marker line has been seen
        self._pending: list[Chunk] = []
        self.command_id = command_id
        self._started = connector.clock.now()
        #: once the connection dropped under the command: what became of it
        self.lost: LostCommand | None = None
        self._limit: float | None = None

    def limit(self, seconds: float | None) -> None:
        self._limit = seconds

    def time_left(self) -> float | None:
        """Seconds left of the command's time limit (None: no limit)."""
        if self._limit is None:
            return None
        return max(0.0, self._limit - (self._connector.clock.now() - self._started))

    def _is_lost(self) -> bool:
        """The connection died before the command's exit status arrived.

        A channel the server closed (the command ended, maybe by a signal) got its end of
        output first; one closed with its transport has not, or its transport is down. (The
        transport's thread closes the channels before it marks itself inactive, so the second
        test alone would race.)
        """
        chan = self._channel
        return (
            self.lost is None
            and bool(self.command_id)
            and chan.closed
            and chan.exit_status == -1
            and (not chan.eof_received or not self._transport.is_active())
        )

    def _settle_lost(self) -> list[Chunk]:
        """Reconnect, find the command by its marker, wait for it or stop its group."""
        held, self._stderr_hold = self._stderr_hold, b""
        self.lost = self._connector.reattach(self, self._connector.clock.now() - self._started)
        note = Chunk("stderr", (self.lost.message + "\n").encode())
        return ([Chunk("stderr", held)] if held else []) + [note]

    @property
    def pgid(self) -> int | None:
        """Process group of the command on the target, once its marker arrived."""
        return self._pgid

    def _drain(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        chan = self._channel
        while chan.recv_ready():
            data = chan.recv(65536)
            if not data:
                break
            chunks.append(Chunk("stdout", data))
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            if not data:
                break
            if self._pgid is None:
                data = self._strip_marker(data)
            if data:
                chunks.append(Chunk("stderr", data))
        if self._pgid is None and self._stderr_hold and self._finished_streams():
            # the command ended without a marker (shell failed early): give back what we held
            chunks.append(Chunk("stderr", self._stderr_hold))
            self._stderr_hold = b""
        return chunks

    def _strip_marker(self, data: bytes) -> bytes:
        buf = self._stderr_hold + data
        found = _PID_LINE.search(buf)
        if found:
            self._pgid = int(found.group(1))
            self._stderr_hold = b""
            return buf[: found.start()] + buf[found.end() :]
        # hold back from a possible (partial) marker; pass through what cannot be one
        start = buf.find(_PID_MARKER[:1])
        if start < 0:
            self._stderr_hold = b""
            return buf
        self._stderr_hold = buf[start:]
        return buf[:start]

    def _finished_streams(self) -> bool:
        chan = self._channel
        ended = bool(chan.eof_received) or chan.closed  # closed: the connection may have died
        return ended and not chan.recv_ready() and not chan.recv_stderr_ready()

    def read(self, timeout: float) -> list[Chunk]:
        if self._pending:
            chunks, self._pending = self._pending, []
            return chunks + self._drain()
        chunks = self._drain()
        if not chunks and self._is_lost():
            return self._settle_lost()
        if chunks or self.done():
            return chunks
        if self._finished_streams() or self._channel.closed:
            # output done, exit status on its way: wait for it, not on the (set) pipe
            self._channel.status_event.wait(timeout)
            return self._drain()
        with contextlib.suppress(OSError, ValueError):
            select.select([self._fd], [], [], timeout)
        return self._drain()

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._channel.sendall(data)

    def done(self) -> bool:
        if self.lost is not None:
            return not self._pending
        if self._is_lost():
            return False  # the next read reattaches
        return (
            self._channel.exit_status_ready()
            and self._finished_streams()
            and not self._stderr_hold
            and not self._pending
        )

    def exit_code(self) -> int | None:
        if self.lost is not None:
            return self.lost.exit_code
        if not self._channel.exit_status_ready():
            return None
        code = self._channel.recv_exit_status()
        return None if code < 0 else code

    def _wait_for_pgid(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while self._pgid is None and not self._channel.exit_status_ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._pending.extend(self.read(min(left, 0.05)))

    def kill(self) -> None:
        self._wait_for_pgid(2.0)
        running = not self._channel.exit_status_ready()
        # the connection died under the command: sshd does not stop it, so reconnect and do it
        orphaned = self._pgid is not None and not self._transport.is_active()
        if self._pgid is not None and (running or orphaned):
            self._connector.run_quiet(group_kill_command(self._pgid), timeout=10.0)
        self._channel.close()

    def close(self) -> None:
        if self.command_id and self.lost is None and self._channel.exit_status_ready():
            self._connector.finished(self.command_id)
        self._channel.close()


@dataclass(frozen=True)
class LostCommand:
    """What became of a command whose connection dropped: its exit status if it ended on the
    host (waited for), None if it was stopped or left none; the message says which."""

    exit_code: int | None
    message: str


class SSHConnector(Connector):
    """Commands and files on one host over one persistent SSH connection.

    Explicit arguments win over ``~/.ssh/config`` (HostName, Port, User, IdentityFile,
    ProxyJump are honoured). Keys are tried in this order: ``key_filename``, ssh-agent,
    IdentityFile entries, the default ``~/.ssh/id_*`` files; then ``password``.
    """

    env_in_command = False  # environment values travel on the input, never a command line

    def __init__(
        self,
        hostname: str,
        *,
        port: int | None = None,
        username: str | None = None,
        key_filename: str | Path | Sequence[str | Path] | None = None,
        password: str | None = None,
        passphrase_callback: PassphraseCallback | None = None,
        known_hosts: Path | str = SSH_DEFAULTS.known_hosts,
        accept_new_host_key: bool = SSH_DEFAULTS.accept_new_host_key,
        ssh_config: Path | str | None = SSH_DEFAULTS.ssh_config,
        connect_timeout: float = SSH_DEFAULTS.connect_timeout,
        keepalive: int = SSH_DEFAULTS.keepalive,
        connect_retries: int = SSH_DEFAULTS.connect_retries,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        use_agent: bool = True,
        look_for_keys: bool = True,
        proxy_jump: str | None = None,
        orphan_wait: float = 300.0,
    ) -> None:
        config = read_ssh_config(ssh_config, hostname)
        self.alias = hostname
        self.hostname = config.hostname or hostname
        self.host = self.alias
        self.port = port if port is not None else (config.port or SSH_DEFAULTS.port)
        self.username = username or config.user or getpass.getuser()
        if key_filename is None:
            keys: list[str] = []
        elif isinstance(key_filename, str | Path):
            keys = [str(key_filename)]
        else:
            keys = [str(k) for k in key_filename]
        self.key_filenames = [os.path.expanduser(k) for k in keys]
        for key in self.key_filenames:
            check_regular(key, error=ConfigError)  # a FIFO would block the key reader
            if not os.path.exists(key):  # a key named but not there: nothing to connect with
                raise ConfigError(f"key file {key} does not exist (for {self.alias})")
        self.config_identity_files = list(config.identity_files)
        self.password = password
        self.passphrase_callback = passphrase_callback
        self.known_hosts = KnownHosts(known_hosts)
        self.accept_new_host_key = accept_new_host_key
        self.ssh_config = ssh_config
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.connect_retries = connect_retries
        self.backoff = backoff or Backoff(base=1.0, factor=2.0, cap=10.0)
        self.clock = clock or SystemClock()
        self.use_agent = use_agent
        self.look_for_keys = look_for_keys
        jump = proxy_jump if proxy_jump is not None else config.proxy_jump
        self.proxy_jump = None if not jump or jump.lower() == "none" else jump
        self.host_key_fingerprint: str | None = None
        self.host_key_type: str | None = None
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        #: None until a transfer tried SFTP; False on a server without it
        self.sftp_available: bool | None = None
        self._jump: SSHConnector | None = None
        #: seconds a command found still running after a dropped connection is waited for
        #: before its process group is stopped
        self.orphan_wait = orphan_wait
        self._finished: list[str] = []  # ids of ended commands whose exit files can go

    # -- connection ------------------------------------------------------------------------

    @property
    def transport(self) -> paramiko.Transport:
        """The live transport (connecting first if needed)."""
        if self._transport is None or not self._transport.is_active():
            self.connect()
        assert self._transport is not None
        return self._transport

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def connect(self) -> None:
        if self.connected:
            return
        self.close()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._connect_once()
                return
            except (ConnectionRefusedError_, ConnectTimeoutError):
                if attempt > self.connect_retries:
                    raise
                self.clock.sleep(self.backoff.delay(attempt))

    def _connect_once(self) -> None:
        sock = self._open_socket()
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = self.connect_timeout
            transport.handshake_timeout = self.connect_timeout
            preferred = self.known_hosts.preferred_algorithms(self.hostname, self.port)
            if preferred:
                options = transport.get_security_options()
                current = list(options.key_types)
                first = [a for a in preferred if a in current]
                options.key_types = first + [a for a in current if a not in first]
            try:
                transport.start_client(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                text = str(exc) or type(exc).__name__
                where = f"{self.hostname}:{self.port}"
                if "banner" in text.lower() or isinstance(exc, TimeoutError | socket.timeout):
                    raise ConnectTimeoutError(
                        f"no SSH greeting from {where} within {self.connect_timeout:g}s"
                    ) from exc
                raise ConnectError(f"SSH handshake with {where} failed: {text}") from exc
            try:
                key = transport.get_remote_server_key()
            except paramiko.SSHException as exc:
                # start_client returned at its deadline with the key exchange unfinished
                raise ConnectTimeoutError(
                    f"no SSH handshake from {self.hostname}:{self.port} "
                    f"within {self.connect_timeout:g}s"
                ) from exc
            self.host_key_type = key.get_name()
            self.host_key_fingerprint = fingerprint(key)
            self.known_hosts.verify(
                self.hostname, self.port, key, accept_new=self.accept_new_host_key
            )
            self._authenticate(transport)
            if self.keepalive:
                transport.set_keepalive(self.keepalive)
        except BaseException:
            transport.close()
            self._close_jump()
            raise
        self._transport = transport

    def _open_socket(self) -> socket.socket | paramiko.Channel:
        where = f"{self.hostname}:{self.port}"
        if self.proxy_jump:
            return self._open_via_jump()
        try:
            sock = socket.create_connection((self.hostname, self.port), self.connect_timeout)
        except socket.gaierror as exc:
            raise DNSError(f"cannot resolve host {self.hostname}: {exc.strerror}") from exc
        except ConnectionRefusedError as exc:
            raise ConnectionRefusedError_(
                f"connection refused by {where} (is sshd running on that port?)"
            ) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                f"connection to {where} timed out after {self.connect_timeout:g}s"
            ) from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _open_via_jump(self) -> paramiko.Channel:
        assert self.proxy_jump is not None
        *earlier, last = [hop.strip() for hop in self.proxy_jump.split(",") if hop.strip()]
        user, host, port = _parse_jump(last)
        jump = SSHConnector(
            host,
            port=port,
            username=user,
            password=None,
            passphrase_callback=self.passphrase_callback,
            key_filename=self.key_filenames or None,
            known_hosts=self.known_hosts.path,
            accept_new_host_key=self.accept_new_host_key,
            ssh_config=self.ssh_config,
            connect_timeout=self.connect_timeout,
            keepalive=self.keepalive,
            connect_retries=0,
            clock=self.clock,
            use_agent=self.use_agent,
            look_for_keys=self.look_for_keys,
            proxy_jump=",".join(earlier) if earlier else "none",
        )
        jump.connect()
        self._jump = jump
        try:
            return jump.transport.open_channel(
                "direct-tcpip",
                (self.hostname, self.port),
                ("127.0.0.1", 0),
                timeout=self.connect_timeout,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError(
                f"jump host {jump.alias} cannot reach {self.hostname}:{self.port}: {exc}"
            ) from exc

    def _candidate_keys(self) -> list[tuple[str, Callable[[], paramiko.PKey | None]]]:
        """(label, loader) pairs in the order keys are offered."""
        seen: set[str] = set()
        out: list[tuple[str, Callable[[], paramiko.PKey | None]]] = []

        def add_file(path: str, required: bool) -> None:
            if path in seen or (not required and not os.path.exists(path)):
                return
            seen.add(path)
            out.append((path, lambda: self._load_key(path)))

        for path in self.key_filenames:
            add_file(path, True)
        if self.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            with contextlib.suppress(paramiko.SSHException, OSError):
                for agent_key in paramiko.Agent().get_keys():
                    label = f"agent {agent_key.get_name()} {fingerprint(agent_key)}"
                    out.append((label, _constant(agent_key)))
        for path in self.config_identity_files:
            add_file(path, False)
        if self.look_for_keys and not self.key_filenames:
            for name in _DEFAULT_KEYS:
                add_file(os.path.expanduser(f"~/.ssh/{name}"), False)
        return out

    def _load_key(self, path: str) -> paramiko.PKey | None:
        try:
            return paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            pass
        except TypeError as exc:  # cryptography: "Key is password-protected, but ..."
            if "password" not in str(exc).lower():
                raise _KeySkipped(f"{path} (unreadable: {exc})") from exc
        except FileNotFoundError as exc:
            raise AuthenticationError(f"key file {path} does not exist") from exc
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise _KeySkipped(f"{path} (unreadable: {exc})") from exc
        if self.passphrase_callback is None:
            raise _KeySkipped(f"{path} (encrypted, no passphrase given)")
        passphrase = self.passphrase_callback(path)
        if not passphrase:
            raise _KeySkipped(f"{path} (encrypted, no passphrase given)")
        try:
            return paramiko.PKey.from_path(path, password=passphrase.encode())  # type: ignore[arg-type]
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            raise _KeySkipped(f"{path} (wrong passphrase)") from exc

    def _authenticate(self, transport: paramiko.Transport) -> None:
        tried: list[str] = []
        allowed: list[str] | None = None
        for label, loader in self._candidate_keys():
            try:
                key = loader()
            except _KeySkipped as skipped:
                tried.append(str(skipped))
                continue
            if key is None:
                continue
            shown = label if label.startswith("agent ") else f"{label} ({key.get_name()})"
            tried.append(shown)
            try:
                transport.auth_publickey(self.username, key)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                break
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ConnectError(f"connection lost during authentication: {exc}") from exc
            if transport.is_authenticated():
                return
        if self.password is not None and (allowed is None or "password" in allowed):
            tried.append("password")
            try:
                transport.auth_password(self.username, self.password)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
            except paramiko.AuthenticationException:
                pass
            if transport.is_authenticated():
                return
        methods = "; ".join(tried) if tried else "no key or password available"
        extra = f"; server accepts: {', '.join(allowed)}" if allowed else ""
        raise AuthenticationError(
            f"authentication failed for {self.username}@{self.hostname}:{self.port}: "
            f"no publickey or password accepted; offered {methods}{extra}"
        )

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._close_jump()

    def _close_jump(self) -> None:
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    # -- commands --------------------------------------------------------------------------

    def _open_channel(self) -> paramiko.Channel:
        try:
            return self.transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError):
            # the connection died under us: reconnect once
            self.close()
            try:
                return self.transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise CommandError(f"cannot open a channel to {self.host}: {exc}") from exc

    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> SSHProcess:
        prologue, values = stdin_env(env)  # values on stdin: never in the process list
        command_id = ownership.new_command_id()
        sweep = ""
        if len(self._finished) >= FINISHED_BATCH:  # exit files of ended commands, in one rm
            names = " ".join(f"{ownership.RUN_DIR}/{i}" for i in self._finished)
            sweep, self._finished = f"rm -f {names}; ", []
        wrapped = (
            f"{sweep}{ownership.owned_prefix(command_id)}"
            f"printf '\\037aideploy-pgid:%s\\n' \"$$\" >&2; {prologue}{command}"
        )
        channel = self._open_channel()
        try:
            channel.exec_command(wrapped)
            if values:
                channel.sendall(values)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise CommandError(f"cannot start command on {self.host}: {exc}") from exc
        return SSHProcess(self, channel, command_id)

    def finished(self, command_id: str) -> None:
        """A command ended normally: its marker is removed with a later command."""
        self._finished.append(command_id)

    def reattach(self, process: SSHProcess, after: float) -> LostCommand:
        """The connection dropped ``after`` seconds into ``process``: reconnect, find the
        command by its marker, wait for it (up to :attr:`orphan_wait`) or stop its group.

        Never returns while the command may still run: a step retried afterwards cannot run
        beside it. Raises ConnectionLost when the host cannot be reached again.
        """
        step = current_step.get()
        intro = f"SSH connection to {self.host} lost after {after:.1f} s" + (
            f" during step {step}" if step else ""
        )
        try:
            self.connect()
            status = self._remote_status(process.command_id)
        except (ConnectError, CommandError) as exc:
            known = f", pid {process.pgid}" if process.pgid else ""
            raise ConnectionLost(
                f"{intro}; cannot reconnect ({exc}): the remote command may still be running{known}"
            ) from exc
        log.warning("%s; reconnected, the command is %s", intro, status.state.value)
        if status.state is ownership.RemoteState.RUNNING:
            pid = int(status.value or 0)
            waited_from = self.clock.now()
            left = process.time_left()
            wait = self.orphan_wait if left is None else min(left, self.orphan_wait)
            while status.state is ownership.RemoteState.RUNNING:
                if self.clock.now() - waited_from >= wait:
                    self.run_quiet(group_kill_command(pid), timeout=30.0)
                    return LostCommand(
                        None,
                        f"{intro}; remote command still running, pid {pid}: still running after "
                        f"{wait:.1f} s more, its process group was stopped",
                    )
                self.clock.sleep(ORPHAN_POLL)
                status = self._remote_status(process.command_id)
            waited = self.clock.now() - waited_from
            lead = f"{intro}; remote command still running, pid {pid}: waited {waited:.1f} s, it"
        else:
            lead = f"{intro}; the remote command"
        if status.state is ownership.RemoteState.EXITED:
            return LostCommand(
                status.value,
                f"{lead} ended with exit {status.value} (its output after the drop is lost)",
            )
        return LostCommand(None, f"{lead} ended without an exit status (killed by a signal?)")

    def _remote_status(self, command_id: str) -> ownership.RemoteStatus:
        code, output = self.run_quiet(ownership.status_command(command_id), timeout=30.0)
        if code != 0:
            raise CommandError(f"cannot read the command's marker on {self.host} (exit {code})")
        return ownership.parse_status(output.decode(errors="replace"))

    def run_quiet(self, command: str, *, timeout: float = 30.0) -> tuple[int | None, bytes]:
        """Run a helper command to completion; return (exit code, stdout+stderr)."""
        process = self.start(command)
        output = b""
        deadline = time.monotonic() + timeout
        try:
            while not process.done() and time.monotonic() < deadline:
                output += b"".join(c.data for c in process.read(0.1))
            return process.exit_code(), output
        finally:
            process.close()

    # -- files -----------------------------------------------------------------------------

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or self._sftp.get_channel() is None or not self.connected:
            try:
                client = paramiko.SFTPClient.from_transport(self.transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise NoSFTP(f"{self.host} offers no SFTP subsystem ({exc or 'refused'})") from exc
            if client is None:
                raise NoSFTP(f"cannot open SFTP to {self.host}")
            self._sftp = client
        return self._sftp

    def _sftp_or_none(self) -> paramiko.SFTPClient | None:
        """The SFTP client, or None on a server without the SFTP subsystem (remembered: files
        then stream over the exec channel, see :mod:`aideploy.engine.connectors.stream`)."""
        if self.sftp_available is False:
            return None
        try:
            client = self.sftp
        except NoSFTP as exc:
            log.info("%s; files go over the exec channel", exc)
            self.sftp_available = False
            return None
        self.sftp_available = True
        return client

    def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        with open(local, "rb") as handle:
            self._write_atomic(remote, handle, mode if mode is not None else 0o644)

    def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
        self._write_atomic(remote, io.BytesIO(data), mode)

    def _write_atomic(self, remote: str, source: BinaryIO, mode: int) -> None:
        directory, slash, name = remote.rpartition("/")
        tmp = f"{directory}{slash}.{name}.aideploy-{secrets.token_hex(6)}"
        sftp = self._sftp_or_none()
        if sftp is None:
            stream.write_atomic(self._exec_channel, self.host, remote, tmp, source, mode)
            return
        try:
            with sftp.open(tmp, "wb") as handle:
                handle.set_pipelined(True)
                while block := source.read(262144):
                    handle.write(block)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, remote)
        except OSError as exc:
            with contextlib.suppress(OSError):
                sftp.remove(tmp)
            raise CommandError(f"cannot write {remote} on {self.host}: {exc}") from exc

    def get_file(self, remote: str, local: Path) -> None:
        sftp = self._sftp_or_none()
        try:
            with atomic_file(Path(local), mode=0o600) as handle:
                if sftp is None:
                    stream.read(self._exec_channel, self.host, remote, handle)
                else:
                    sftp.getfo(remote, handle)
        except OSError as exc:
            raise CommandError(f"cannot read {remote} from {self.host}: {exc}") from exc

    def _exec_channel(self, command: str) -> paramiko.Channel:
        """A channel running ``command`` (no marker line: its streams carry file data)."""
        channel = self._open_channel()
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise CommandError(f"cannot start command on {self.host}: {exc}") from exc
        return channel


def _constant(key: paramiko.PKey) -> Callable[[], paramiko.PKey | None]:
    return lambda: key


class _KeySkipped(Exception):
    """A key file that could not be offered (the message says why)."""


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    port: int | None = None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = int(port_text)
    else:
        host = spec
    return user, host, port
