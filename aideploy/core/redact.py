"""Secret redaction: applied to everything that leaves a command (logs, state, KB, exports).

Two layers: patterns that look like secrets whatever their value (``PGPASSWORD=...``, URLs with
credentials, tokens, private keys), and exact values the deployment knows are secret (a generated
database password, a git token) registered with :func:`register_secret`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"

_KEYWORDS = (
    r"(?:[A-Za-z0-9_]*(?:PASSWORD|PASSWD|PASS|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"password|passwd|secret|token|api_?key|access_?key|private_?key))"
)

# (pattern, replacement, cheap lower-case substrings: the regex only runs if one is present)
_PATTERNS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    # -----BEGIN ... PRIVATE KEY----- blocks (whole block, even multi-line)
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        "-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----",
        ("private key-----",),
    ),
    # scheme://user:password@host  -> scheme://user:***@host
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@'\"]+):([^\s@/'\"]+)@"),
        r"\1:" + MASK + "@",
        ("@",),
    ),
    # https://token@github.com (token as user part of a URL)
    (
        re.compile(r"(?i)\b(https?://)(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})@"),
        r"\1" + MASK + "@",
        ("@",),
    ),
    # KEY=value / KEY: value / "key": "value" for secret-looking keys
    (
        re.compile(r"(?P<k>\b" + _KEYWORDS + r"\b[\"']?\s*[:=]\s*[\"']?)(?P<v>[^\s\"',;&]+)"),
        r"\g<k>" + MASK,
        ("pass", "secret", "token", "key"),
    ),
    # --password value / --password=value
    (
        re.compile(r"(?i)(--(?:password|passwd|token|secret|api-key)[= ])(\S+)"),
        r"\1" + MASK,
        ("--",),
    ),
    # Authorization headers
    (
        re.compile(r"(?i)(authorization:\s*(?:bearer|basic|token)\s+)\S+"),
        r"\1" + MASK,
        ("authorization",),
    ),
    # well-known token shapes
    (
        re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
        MASK,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK, ("github_pat_",)),
    (re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}\b"), MASK, ("glpat-",)),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), MASK, ("xox",)),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK, ("akia",)),
    (
        re.compile(r"(?i)(hooks\.slack\.com/services/)[A-Za-z0-9/]+"),
        r"\1" + MASK,
        ("hooks.slack.com",),
    ),
    (
        re.compile(r"(?i)(discord(?:app)?\.com/api/webhooks/)[0-9]+/[A-Za-z0-9_\-]+"),
        r"\1" + MASK,
        ("/api/webhooks/",),
    ),
)

_lock = threading.Lock()
_secrets: set[str] = set()
#: the registered values, longest first (a value inside a longer one is masked with it); rebuilt
#: on each registration, which is rare, so redacting reads it without sorting or locking
_longest_first: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember an exact secret value so it is masked wherever it appears."""
    global _longest_first
    if value and len(value) >= 4:
        with _lock:
            if value not in _secrets:
                _secrets.add(value)
                _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def is_registered_secret(value: str) -> bool:
    """True if ``value`` contains a value registered with :func:`register_secret`."""
    with _lock:
        return any(secret in value for secret in _secrets)


def forget_secrets() -> None:
    """Drop registered values (tests)."""
    global _longest_first
    with _lock:
        _secrets.clear()
        _longest_first = ()


def redact(text: str) -> str:
    """Return ``text`` with every known secret and secret-looking value masked."""
    if not text:
        return text
    for value in _longest_first:
        if value in text:
            text = text.replace(value, MASK)
    lower = text.lower()
    for pattern, replacement, triggers in _PATTERNS:
        if any(t in lower for t in triggers):
            text = pattern.sub(replacement, text)
    return text


_SECRET_KEY = re.compile(r"(?i)" + _KEYWORDS + r"$|^(?:dsn|database_url|db_url)$")


def is_secret_key(name: str) -> bool:
    """True for names like ``DB_PASSWORD``, ``api_token``, ``DATABASE_URL``."""
    return bool(_SECRET_KEY.search(name))


def redact_obj(obj: object) -> object:
    """Redact every string inside a JSON-like structure; values under secret-looking keys
    (``password``, ``DB_PASSWORD``, ``api_token``...) are masked whole."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {
            k: MASK
            if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str) and v
            else redact_obj(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
