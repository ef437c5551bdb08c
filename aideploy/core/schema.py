"""Schema building blocks: declared fields (description, default, check) and value checks.

Sections of the configuration are frozen dataclasses whose fields are declared with
:func:`spec`; :mod:`aideploy.services.config` validates a file against them and generates the docs.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
import typing
from collections.abc import Callable
from dataclasses import MISSING, field
from typing import Any

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f`$;|&<>\"'\\*?\[\]{}()!]")


# -- value checks (each returns an error message or None) ------------------------------------


def check_hostname(value: str) -> str | None:
    """An RFC 1123 host name or an IP address literal."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if len(value) > 253 or not value or value.endswith("."):
        return f"malformed host name {value!r}"
    if not all(_LABEL.match(label) for label in value.split(".")):
        return f"malformed host name {value!r}"
    return None


def check_domain(value: str) -> str | None:
    """A DNS name of at least two labels (``example.com``), or ``localhost``."""
    if value == "localhost":
        return None
    if check_hostname(value) is not None or "." not in value or value.replace(".", "").isdigit():
        return f"malformed domain {value!r} (expected a name like example.com)"
    if value.rsplit(".", 1)[1].isdigit():
        return f"malformed domain {value!r} (top-level label cannot be numeric)"
    return None


def check_username(value: str) -> str | None:
    if not _USER.match(value):
        return f"malformed user name {value!r} (lower-case letters, digits, '_', '-', '.')"
    return None


def check_path(value: str) -> str | None:
    if not value:
        return "empty path"
    if _UNSAFE_PATH.search(value):
        return f"path {value!r} contains characters that are not allowed (quotes, $, ;, |, ...)"
    return None


def check_name(value: str) -> str | None:
    if not _NAME.match(value):
        return f"malformed name {value!r} (letters, digits, '_', '-', '.')"
    return None


def _range(low: float, high: float) -> typing.Callable[[float], str | None]:
    def check(value: float) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def spec(description: str, default: Any = MISSING, check: Any = None, **kw: Any) -> Any:
    """Declare a schema field: its description (used in docs), default and value check."""
    meta = {"description": description, "check": check}
    if default is MISSING:
        return field(metadata=meta, **kw)
    if isinstance(default, list | dict):
        factory: Callable[[], Any] = functools.partial(copy.deepcopy, default)
        return field(default_factory=factory, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)
