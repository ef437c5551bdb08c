"""Files over an SSH exec channel, for servers without the SFTP subsystem.

A write streams the bytes into ``cat`` writing a temporary file beside the destination (created
0600), checks the byte count and SHA-256 on the server, sets the mode and renames it over the
destination: the destination is whole or untouched, never half-written. A read streams ``cat``'s
output and checks it against the server's SHA-256 of the file.

The shell used is POSIX sh; ``sha256sum`` (GNU coreutils, busybox) or ``shasum -a 256`` checks
the content, and when neither exists the byte count alone does.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable
from typing import IO, BinaryIO

import paramiko

from aideploy.core.errors import CommandError

ChannelOpener = Callable[[str], paramiko.Channel]

BLOCK = 262144
#: seconds a transfer may go without progress before it is given up
STALL_LIMIT = 120.0
_SHA = (
    "if command -v sha256sum >/dev/null 2>&1; then sha256sum; "
    "elif command -v shasum >/dev/null 2>&1; then shasum -a 256; else echo -; fi"
)


class NoSFTP(CommandError):
    """The server has no SFTP subsystem (files then go over the exec channel)."""


def write_command(remote: str, tmp: str, mode: int, size: int, digest: str) -> str:
    """The server side of a write: ``cat`` into ``tmp``, check, chmod, rename over ``remote``."""
    t, r = shlex.quote(tmp), shlex.quote(remote)
    return (
        f't={t}; umask 077; trap \'rm -f "$t"\' EXIT; cat > "$t" || exit 1; '
        f'n=$(wc -c < "$t" | tr -d " "); '
        f'if [ "$n" != "{size}" ]; then echo "received $n of {size} bytes" >&2; exit 3; fi; '
        f's=$( ({_SHA}) < "$t" | cut -d" " -f1); '
        f'if [ "$s" != - ] && [ "$s" != "{digest}" ]; then echo "checksum mismatch" >&2; exit 3; fi; '
        f'chmod {mode:o} "$t" && mv -f "$t" {r} && trap - EXIT'
    )


def _finish(channel: paramiko.Channel, what: str) -> tuple[bytes, bytes]:
    """Read the channel to its end; (stdout, stderr); CommandError unless it exited 0."""
    out, err = bytearray(), bytearray()
    last = time.monotonic()
    while True:
        got = False
        while channel.recv_ready():
            out += channel.recv(BLOCK)
            got = True
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(BLOCK)
            got = True
        drained = not channel.recv_ready() and not channel.recv_stderr_ready()
        if channel.exit_status_ready() and drained:
            break
        if got:
            last = time.monotonic()
        elif channel.closed and not channel.exit_status_ready():
            raise CommandError(f"{what}: the connection closed")
        elif time.monotonic() - last > STALL_LIMIT:
            raise CommandError(f"{what}: no progress for {STALL_LIMIT:.0f}s")
        else:
            channel.status_event.wait(0.05)
    code = channel.recv_exit_status()
    if code != 0:
        reason = bytes(err).decode("utf-8", "replace").strip() or f"exit {code}"
        raise CommandError(f"{what}: {reason}")
    return bytes(out), bytes(err)


def write_atomic(
    opener: ChannelOpener, host: str, remote: str, tmp: str, source: BinaryIO, mode: int
) -> None:
    """Write ``source`` to ``remote`` on ``host`` through the exec channel, atomically."""
    data = source.read()
    digest = hashlib.sha256(data).hexdigest()
    what = f"cannot write {remote} on {host}"
    channel = opener(write_command(remote, tmp, mode, len(data), digest))
    try:
        for start in range(0, len(data), BLOCK):
            channel.sendall(data[start : start + BLOCK])
        channel.shutdown_write()
        _finish(channel, what)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise CommandError(f"{what}: {exc}") from exc
    finally:
        channel.close()


def read(opener: ChannelOpener, host: str, remote: str, sink: IO[bytes]) -> None:
    """Copy ``remote`` from ``host`` into ``sink`` through the exec channel, checked."""
    r = shlex.quote(remote)
    what = f"cannot read {remote} from {host}"
    channel = opener(f'cat -- {r} && s=$( ({_SHA}) < {r} | cut -d" " -f1) && echo "$s" >&2')
    try:
        data, err = _finish(channel, what)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise CommandError(f"{what}: {exc}") from exc
    finally:
        channel.close()
    lines = err.decode("ascii", "replace").split()
    expected = lines[-1] if lines else "-"
    if expected != "-" and expected != hashlib.sha256(data).hexdigest():
        raise CommandError(f"{what}: checksum mismatch")
    sink.write(data)
