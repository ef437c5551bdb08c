"""Files a user names for aideploy to read: only regular files are opened.

A FIFO would block the reader until something writes to it, a device may never end and a
directory cannot be read as text; each is refused with one line before it is opened. ``-``
(standard input) is the caller's business: it never reaches here as a path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from aideploy.core.errors import AideployError, UsageError

#: what a name means when a command reads standard input instead of a file
STDIN = "-"

#: how deeply lists and objects (tables and arrays) may nest in a file a user gives: the
#: configuration, a plan, a line of a knowledge-base import (each needs a handful of levels)
MAX_NESTING = 32

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a FIFO"...), else None.

    A symbolic link counts as what it points to. A path that cannot be looked at (missing, no
    permission) gives None: opening it reports that in the reader's own words.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a file"


def check_regular(path: str | os.PathLike[str], *, error: type[AideployError] = UsageError) -> None:
    """Raise ``error("PATH: not a regular file (a FIFO)")`` (exit code 2 for the default) when
    ``path`` exists and is not a regular file. Call it before opening a file a user named."""
    kind = not_regular(path)
    if kind is not None:
        raise error(f"{os.fspath(path)}: not a regular file ({kind})")


def nested_deeper_than(data: object, limit: int) -> bool:
    """Whether lists and objects (dicts) in decoded ``data`` nest more than ``limit`` levels
    (walked with a stack, so no depth can exhaust the interpreter's)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            if level > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, level + 1) for item in items)
    return False


def decode_within_nesting(
    decode: Callable[[str], Any], text: str, too_deep: AideployError, limit: int = MAX_NESTING
) -> Any:
    """``decode(text)`` (a JSON or TOML parser), raising ``too_deep`` when what it holds nests
    more than ``limit`` levels, or deeper than the parser itself can follow. The parser's own
    errors pass through."""
    try:
        data = decode(text)
    except RecursionError:  # nested deeper than the parser can follow, so far past the limit
        raise too_deep from None
    if nested_deeper_than(data, limit):
        raise too_deep
    return data
