"""Redaction on the way out: secrets always; unless hosts are kept, host names and private
addresses in every text and context value, and stable pseudonyms for hosts and deployment ids."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from aideploy.core.redact import redact

HOST = "<host>"
IP = "<ip>"
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_PRIVATE_NAME = re.compile(
    r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:internal|local|localdomain|lan|corp|home|intranet|private|priv|intra)\b"
)
#: context keys whose string values are host names or addresses as a whole
_HOST_KEYS = {"host", "hostname", "ip", "address", "addr", "fqdn", "server", "node", "target"}
#: host names shorter than this are too likely to occur inside ordinary words to be replaced
_MIN_HOST_CHARS = 3
#: how many distinct texts a Scrubber remembers
TEXT_CACHE_SIZE = 200_000
#: hex digits of the sha256 in a pseudonym
_PSEUDONYM_DIGITS = 16


def _private_ip(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if addr.is_unspecified:
        return text  # 0.0.0.0 says "all interfaces", not where
    if addr.is_private or addr.is_loopback or addr.is_link_local:
        return IP
    return text


def context_key(context: dict[str, Any]) -> Any:
    """A cheap hashable key for a context (flat ones are most of them), for the caches of
    redacted contexts on both ways."""
    try:
        key = tuple(context.items())
        hash(key)
        return key
    except TypeError:
        return json.dumps(context, sort_keys=True)


class Scrubber:
    """Redaction for exports, with a cache (the same strings recur thousands of times)."""

    def __init__(self, known_hosts: Iterable[str], *, keep_hosts: bool, salt: str) -> None:
        self.keep_hosts = keep_hosts
        self.salt = salt
        hosts = {h for h in known_hosts if h and len(h) >= _MIN_HOST_CHARS}
        self._hosts = sorted(hosts, key=len, reverse=True)
        self._cache: dict[str, str] = {}

    def text(self, value: str) -> str:
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        out = redact(value)
        if not self.keep_hosts and out:
            for host in self._hosts:
                if host in out:
                    out = out.replace(host, HOST)
            if "." in out:
                out = _IPV4.sub(_private_ip, out)
                out = _PRIVATE_NAME.sub(HOST, out)
        if len(self._cache) < TEXT_CACHE_SIZE:
            self._cache[value] = out
        return out

    def value(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            if not self.keep_hosts and key.lower() in _HOST_KEYS and value:
                return HOST
            return self.text(value)
        if isinstance(value, dict):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, v) for v in value]
        return value

    def context(self, context: dict[str, Any] | None) -> dict[str, Any]:
        if not context:
            return {}
        return {str(k): self.value(str(k), v) for k, v in context.items()}

    def pseudonym(self, prefix: str, value: str | None) -> str | None:
        """A stable stand-in for a host name or deployment id (unless hosts are kept)."""
        if value is None or value == "":
            return value
        if self.keep_hosts:
            return redact(value)
        if value.startswith(f"{prefix}-") and len(value) == len(prefix) + 1 + _PSEUDONYM_DIGITS:
            return value  # already a pseudonym (a re-export of an import)
        digest = hashlib.sha256(f"{self.salt}\0{value}".encode()).hexdigest()
        return f"{prefix}-{digest[:_PSEUDONYM_DIGITS]}"
