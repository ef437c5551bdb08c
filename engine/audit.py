"""The audit log: an append-only, hash-chained record of every action with consequences.

One JSON object per line in ``$AIDEPLOY_HOME/audit.jsonl``: who (local user), what (action),
when, where (target), the result and a few details, plus ``prev`` (the hash of the entry before)
and ``hash`` (sha256 of the entry's canonical JSON without ``hash``). Editing, deleting or
reordering a line breaks the chain and :func:`verify` names the first broken line.

Appends are serialized across processes with an exclusive ``flock`` on the file itself, so
concurrent deployments never fork the chain. Every entry is redacted before it is hashed.

The chain proves the file is internally consistent; it cannot tell that the newest lines were cut
off. Keep the head hash printed by ``aideploy audit verify`` somewhere else and pass it back with
``--head`` to detect that too.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import socket
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from aideploy.core import paths
from aideploy.core.errors import AideployError
from aideploy.core.private import create_private, private_dir
from aideploy.core.redact import redact_obj

log = logging.getLogger("aideploy.audit")

GENESIS = "0" * 64

#: actions the engine records; others are allowed (a plain lower-case name)
ACTIONS = (
    "deploy",
    "resume",
    "rollback",
    "import",
    "trust",
    "lock_break",
    "unlock",
    "abandon",
    "init",
)


class AuditError(AideployError):
    """The audit log cannot be written or read."""


def audit_path() -> Path:
    return paths.home() / "audit.jsonl"


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, ``hash`` left out."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid())


def _last_line(handle: BinaryIO) -> bytes:
    """The last non-empty line of an open binary file, read from the end."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    block = 4096
    data = b""
    pos = end
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
        block *= 2
    return data.rstrip(b"\n")


def record(
    action: str,
    *,
    result: str,
    target: str | None = None,
    deployment_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    path: Path | None = None,
) -> dict[str, Any]:
    """Append one entry and return it (as written). Raises AuditError if it cannot be written."""
    if not action or not action.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise AuditError(f"malformed audit action {action!r}")
    path = path or audit_path()
    entry: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "user": local_user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "action": action,
        "target": target,
        "result": result,
        "deployment_id": deployment_id,
        "details": dict(details or {}),
    }
    entry = typing.cast(dict[str, Any], redact_obj(entry))
    try:
        if path.parent == paths.home():
            paths.private_home()
        else:
            private_dir(path.parent)
        create_private(path)  # an existing file made 0600 too
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                last = _last_line(handle)
                if last:
                    try:
                        previous = json.loads(last)
                        entry["seq"] = int(previous["seq"]) + 1
                        entry["prev"] = str(previous["hash"])
                    except (ValueError, KeyError, TypeError) as exc:
                        raise AuditError(
                            f"{path}: last line is not an audit entry ({exc}); "
                            "run aideploy audit verify"
                        ) from None
                else:
                    entry["seq"] = 1
                    entry["prev"] = GENESIS
                entry["hash"] = entry_hash(entry)
                line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
                handle.seek(0, os.SEEK_END)
                handle.write(line.encode())
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError as exc:
        raise AuditError(f"{path}: cannot append to the audit log: {exc}") from None
    return entry


def try_record(action: str, **kwargs: Any) -> dict[str, Any] | None:
    """:func:`record`, but a failure is logged loudly instead of raised (end of a deploy)."""
    try:
        return record(action, **kwargs)
    except AuditError as exc:
        log.error("audit: %s", exc)
        return None


def entries(path: Path | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) for every line; an unparsable line raises AuditError."""
    path = path or audit_path()
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditError(f"{path}: cannot read: {exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AuditError(f"line {number}: not JSON: {exc.msg}") from None
            except RecursionError:  # no audit entry nests: this line is not one
                raise AuditError(f"line {number}: not an audit entry (nested too deeply)") from None
            if not isinstance(data, dict):
                raise AuditError(f"line {number}: not an audit entry")
            yield number, data


@dataclass(frozen=True)
class Verification:
    count: int
    head: str
    broken_line: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_line is None


def verify(path: Path | None = None, *, head: str | None = None) -> Verification:
    """Walk the chain; the first line whose hash, link or sequence does not hold is reported."""
    previous = GENESIS
    count = 0
    number = 0
    try:
        for number, entry in entries(path):
            count += 1
            if entry.get("hash") != entry_hash(entry):
                return Verification(count - 1, previous, number, "content does not match its hash")
            if entry.get("prev") != previous:
                return Verification(
                    count - 1, previous, number, "does not follow the previous entry"
                )
            if entry.get("seq") != count:
                return Verification(count - 1, previous, number, "sequence number out of order")
            previous = str(entry["hash"])
    except AuditError as exc:
        return Verification(count, previous, number + 1, str(exc))
    if head is not None and head != previous and not _contains(path, head):
        return Verification(count, previous, number + 1, f"expected head {head} is missing")
    return Verification(count, previous)


def _contains(path: Path | None, digest: str) -> bool:
    with contextlib.suppress(AuditError):
        return any(e.get("hash") == digest for _, e in entries(path))
    return False
