"""The text of a state file: a dataclass as indented JSON, every string in it redacted.

State files (a deployment's, a fleet run's) are written after every step, so their encoding is
on the hot path of a run: the dataclass is turned into plain values and encoded by msgspec (in C,
several times faster than :func:`dataclasses.asdict` and :mod:`json`), and the redactor
remembers the strings it has already seen. The text is the one :mod:`json` would write with
``indent=2`` (non-ASCII characters are kept as UTF-8 instead of ``\\u`` escapes).
"""

from __future__ import annotations

import msgspec

from aideploy.core.redact import redact_obj

_ENCODER = msgspec.json.Encoder()


def state_json(obj: object) -> bytes:
    """``obj`` (a dataclass, its fields plain values, enums, lists and dicts) as indented JSON
    with a final newline; secrets masked; anything else is written as its ``str()``."""
    data = redact_obj(msgspec.to_builtins(obj, enc_hook=str))
    return msgspec.json.format(_ENCODER.encode(data), indent=2) + b"\n"
