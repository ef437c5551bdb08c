"""Remote commands that can be found again after the connection drops.

Every command started over SSH runs in its own process group (sshd makes each exec a session
leader) and leaves a marker on the host: ``$HOME/.aideploy/run/<id>`` (in a 0700 directory) holds the
group's id while it runs, and its exit status on a second line once it ends. After a dropped
connection, aideploy reconnects and reads the marker (:func:`status_command`): the command is
still running (wait for it, or stop its group), ended (its exit status), or gone without one.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

RUN_DIR = '"$HOME/.aideploy/run"'
_STATUS = re.compile(r"^(running|exited|gone)(?: (-?\d+))?$")


class RemoteState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    GONE = "gone"  # neither running nor an exit status left (killed by a signal, or never ran)


@dataclass(frozen=True)
class RemoteStatus:
    state: RemoteState
    #: the process group id while running, the exit status once exited
    value: int | None = None


def new_command_id() -> str:
    return secrets.token_hex(8)


def owned_prefix(command_id: str) -> str:
    """Shell text run before a command: its marker file gets the group id, and the exit status
    appended when the shell exits (builtins only: no process is started for it)."""
    f = f"{RUN_DIR}/{command_id}"
    return (
        f'[ -d {RUN_DIR} ] || (umask 077; mkdir -p {RUN_DIR}); echo "$$" > {f}; '
        f"trap 'echo \"$?\" >> {f}' EXIT; "
    )


def status_command(command_id: str) -> str:
    """Prints ``running PGID``, ``exited RC`` or ``gone`` for the command of ``command_id``
    (running: some process of its group is alive, its shell or what it started); reading an
    exit status removes the marker."""
    f = f"{RUN_DIR}/{command_id}"
    return (
        f"set -- $(cat {f} 2>/dev/null); "
        f'if [ $# -ge 2 ]; then echo "exited $2"; rm -f {f}; '
        f'elif [ $# -eq 1 ] && kill -0 -"$1" 2>/dev/null; then echo "running $1"; '
        f"else echo gone; rm -f {f}; fi"
    )


def parse_status(output: str) -> RemoteStatus:
    lines = output.strip().splitlines()
    found = _STATUS.match(lines[-1].strip()) if lines else None
    if found is None:
        return RemoteStatus(RemoteState.GONE)
    value = int(found.group(2)) if found.group(2) is not None else None
    state = RemoteState(found.group(1))
    if state is RemoteState.RUNNING and (value is None or value <= 1):
        return RemoteStatus(RemoteState.GONE)  # never a group id to signal
    return RemoteStatus(state, value)
