"""The ``aideploy-kb`` format: its header, its limits, and its records as an import reads them.

:class:`WireAttempt` is an attempt line as exports write it, declared for msgspec, which checks
its types, lengths and ranges in C (the importer's fast path). The ``*Record`` types are records
after validation, as the bulk write takes them. The validator's own checks (and messages) are in
:mod:`.validate`; docs/kb-format.md describes the format for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from aideploy.core.inputs import MAX_NESTING as INPUT_MAX_NESTING

FORMAT = "aideploy-kb"
VERSION = 1
RECORD_TYPES = ("strategy", "pattern", "deployment", "signature", "attempt")

#: a longer line is rejected before it is parsed
MAX_LINE_CHARS = 1_000_000
#: how deeply lists and objects may nest in one line (a record and its context); a deeper line
#: is rejected before anything walks it
MAX_NESTING = INPUT_MAX_NESTING
#: the largest encounter number a file may carry (the column is a 32-bit integer)
MAX_ENCOUNTER = 2**31 - 1
# limits of the attempt fields that the fast path (WireAttempt) and the validator both check
KEY_CHARS = 64
SIGNATURE_CHARS = 4000
NAME_CHARS = 128  # a strategy or step name (and the validator's default for a text field)
CLASS_CHARS = 64
MAX_DURATION = 1e9  # seconds
#: what a record id may look like
KEY_RE = re.compile(rf"^[A-Za-z0-9_.:\-]{{1,{KEY_CHARS}}}\Z")
#: what a strategy or pattern name and a deployment id may look like (no shell metacharacters,
#: no path: a first character that is no "-", "." or "/"); ".." anywhere is refused as well
NAME_RE = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{{0,{NAME_CHARS - 1}}}\Z")
#: the rule NAME_RE and safe_name enforce, for messages
NAME_RULE = f"1-{NAME_CHARS} letters, digits or _.:- (not starting with - or ., no ..)"


def safe_name(value: str) -> bool:
    """Whether ``value`` may be imported as a strategy or pattern name or a deployment id."""
    return NAME_RE.match(value) is not None and ".." not in value


OutcomeName = Literal[
    "recovered", "failed", "skipped"
]  # == store.OUTCOMES (a test holds them equal)
DeciderName = Literal["rule", "ranker", "user", "imported"]  # == store.DECIDERS


class WireAttempt(msgspec.Struct, tag_field="type", tag="attempt"):
    """An attempt record as exports write it, for the fast path of :func:`.load.parse_lines`.

    Decoding a line into this checks, in C, what :func:`.validate._v_attempt` checks of the same
    fields (types, lengths, ranges, the outcome and decider names) and is at least as strict: a
    missing id, a null or a value of another type fails here and the line goes to the validator.
    What is left (a signature not seen yet, a blank strategy, the id's characters, the time, the
    context being an object) is checked by :func:`.load.fast_path`.
    """

    id: Annotated[str, msgspec.Meta(max_length=KEY_CHARS)]  # its form: fast_path (faster there)
    signature: Annotated[str, msgspec.Meta(max_length=SIGNATURE_CHARS)]
    strategy: Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_CHARS)]
    outcome: OutcomeName
    error_class: Annotated[str, msgspec.Meta(max_length=CLASS_CHARS)] = ""
    step: Annotated[str, msgspec.Meta(max_length=NAME_CHARS)] = ""
    deployment: str | None = None
    context: msgspec.Raw = msgspec.Raw(b"{}")  # decoded once per distinct text
    weight: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    duration: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DURATION)] = 0.0
    decided_by: DeciderName | None = None
    at: str | None = None
    encounter: Annotated[int, msgspec.Meta(ge=1, le=MAX_ENCOUNTER)] | None = None


# --- records after validation (values redacted, defaults filled in) -------------------------


class StrategyRecord(msgspec.Struct, frozen=True):
    name: str
    description: str
    risk: str
    commands: list[str] | None


class PatternRecord(msgspec.Struct, frozen=True):
    name: str
    regex: str
    error_class: str
    strategy: str
    severity: str
    description: str
    retry_count: int


class DeploymentRecord(msgspec.Struct, frozen=True):
    id: str
    profile: str
    host: str
    plan: str
    status: str
    started_at: datetime
    ended_at: datetime | None


class SignatureRecord(msgspec.Struct, frozen=True):
    text: str
    error_class: str
    count: int
    first_seen: datetime
    last_seen: datetime

    def merged(self, other: SignatureRecord) -> SignatureRecord:
        """Both records of one signature as one: the larger count, the wider time span."""
        return msgspec.structs.replace(
            self,
            count=max(self.count, other.count),
            first_seen=min(self.first_seen, other.first_seen),
            last_seen=max(self.last_seen, other.last_seen),
        )


class AttemptRecord(msgspec.Struct, frozen=True, gc=False):
    """A validated attempt. There can be millions: a C struct (as cheap to build as a tuple),
    left out of the cyclic collector (it holds strings, numbers, times and a context dict)."""

    key: str
    text: str  # the stored signature
    error_class: str
    strategy: str
    outcome: str
    step: str
    deployment: str | None
    context: dict[str, Any]  # equal contexts are one object (the validator's cache)
    weight: float
    duration: float
    at: datetime | None
    encounter: int | None


@dataclass
class Parsed:
    """A whole file, validated: what the bulk write takes."""

    strategies: list[StrategyRecord] = field(default_factory=list)
    patterns: list[PatternRecord] = field(default_factory=list)
    deployments: list[DeploymentRecord] = field(default_factory=list)
    signatures: list[SignatureRecord] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    #: record lines read (blank lines are not records)
    records: int = 0
