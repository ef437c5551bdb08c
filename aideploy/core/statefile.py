"""The text of a state file: a dataclass as indented JSON, every string in it redacted.

State files (a deployment's, a fleet run's) are written after every step, so their encoding is
on the hot path of a run: the dataclass is turned into plain values and encoded by msgspec (in C,
several times faster than :func:`dataclasses.asdict` and :mod:`json`), and the redactor
remembers the strings it has already seen. The text is the one :mod:`json` would write with
``indent=2`` (non-ASCII characters are kept as UTF-8 instead of ``\\u`` escapes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from aideploy.core import paths
from aideploy.core.atomic import write_atomic
from aideploy.core.errors import StateError
from aideploy.core.private import FILE_MODE
from aideploy.core.redact import redact_obj

_ENCODER = msgspec.json.Encoder()


def state_json(obj: object) -> bytes:
    """``obj`` (a dataclass, its fields plain values, enums, lists and dicts) as indented JSON
    with a final newline; secrets masked; anything else is written as its ``str()``."""
    data = redact_obj(msgspec.to_builtins(obj, enc_hook=str))
    return msgspec.json.format(_ENCODER.encode(data), indent=2) + b"\n"


def write_state(path: Path, obj: object, folder: str) -> None:
    """Write :func:`state_json` of ``obj`` to ``path`` atomically, 0600, in aideploy's private
    directory ``folder`` (created 0700)."""
    text = state_json(obj)
    paths.private_home(folder)
    write_atomic(path, text, mode=FILE_MODE)


def read_state(path: Path, *, missing: str, hint: str, kind: str) -> dict[str, Any]:
    """The decoded state file at ``path``. A file that is not there raises
    ``StateError(missing, hint=hint)``; one that cannot be read or decoded,
    ``StateError("PATH: unreadable KIND: why")``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(missing, hint=hint) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: unreadable {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: unreadable {kind}: not a JSON object")
    return data
