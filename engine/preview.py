"""What a step would do, found without doing it: its verdict, why, and the files it would change.

A step's read-only look at the target (``Step.preview``, or its "already done?" check) gives a
:class:`StepPreview`. ``deploy --check`` shows one per step; nothing on the target changes.
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass

from aideploy.core.redact import MASK, is_secret_key, redact


class Verdict(enum.Enum):
    """What a deploy would do in a step: nothing (``skip``), something (``change``), or it
    could not be told (``unknown``: no read-only check, or the check itself failed)."""

    SKIP = "skip"
    CHANGE = "change"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FileChange:
    """A file a step renders, as a unified diff from what the target has to what it would get
    (secret values masked)."""

    path: str
    diff: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "diff": self.diff}


@dataclass(frozen=True)
class StepPreview:
    verdict: Verdict
    reason: str = ""
    files: tuple[FileChange, ...] = ()


@dataclass(frozen=True)
class StepVerdict:
    """One step of a checked plan."""

    name: str
    description: str
    preview: StepPreview

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "verdict": self.preview.verdict.value,
            "reason": self.preview.reason,
            "files": [f.to_json() for f in self.preview.files],
        }


#: words that make a variable of an env file secret (besides what core.redact knows): Django's
#: ``SECRET_KEY``, a ``SIGNING_KEY``, ``*_CREDENTIALS``
_SECRET_WORDS = frozenset({"SECRET", "PASSWORD", "PASSWD", "PASS", "TOKEN", "KEY", "CREDENTIALS"})


def _secret_variable(name: str) -> bool:
    return is_secret_key(name) or bool(_SECRET_WORDS & set(name.upper().split("_")))


_ENV_LINE = re.compile(r"^(?P<sign>[ +-]?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def mask_env(text: str) -> str:
    """``KEY=VALUE`` lines with the value of every secret-looking key masked whole, then the
    usual redaction (registered secrets, URL credentials, tokens)."""
    lines = []
    for line in text.splitlines(keepends=True):
        match = _ENV_LINE.match(line.rstrip("\n"))
        if match and _secret_variable(match["key"]) and match["value"]:
            end = "\n" if line.endswith("\n") else ""
            line = f"{match['sign']}{match['key']}={MASK}{end}"
        lines.append(line)
    return redact("".join(lines))


def file_change(
    path: str, old: str | None, new: str, *, env_file: bool = False
) -> FileChange | None:
    """The diff from ``old`` (None: the file does not exist) to ``new``; None when they agree.
    ``env_file``: a ``KEY=VALUE`` file whose secret values are masked before diffing, so a
    changed secret shows as a changed line without its value."""
    if old == new:
        return None
    before, after = old or "", new
    if env_file:
        before, after = mask_env(before), mask_env(after)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else f"a{path}",
        tofile=f"b{path}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if not text:  # differs only in what is masked: still say that it changes
        text = f"--- a{path}\n+++ b{path}\n@@ secret values change @@\n"
    return FileChange(path, redact(text))
