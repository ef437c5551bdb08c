"""Secret redaction: applied to everything that leaves a command (logs, state, KB, exports).

Two layers: patterns that look like secrets whatever their value (``PGPASSWORD=...``, URLs with
credentials, tokens, private keys), and exact values the deployment knows are secret (a generated
database password, a git token) registered with :func:`register_secret`.
"""

from __future__ import annotations

import functools
import re
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

MASK = "***"

_PATTERNS_FILE = "secrets.toml"


@dataclass(frozen=True)
class SecretPattern:
    """Text that is secret whatever its value (a token format, a key block, URL credentials)."""

    name: str
    regex: re.Pattern[str]
    replace: str
    #: lower-case substrings, one of which every match contains (the regex runs only then)
    triggers: tuple[str, ...]
    #: True only for the private key block: the one pattern that spans lines
    multiline: bool = False


@dataclass(frozen=True)
class SecretNames:
    """Which names hold secrets: ``DB_PASSWORD``, ``SECRET_KEY``, ``DATABASE_URL``..."""

    secret: re.Pattern[str]
    public: re.Pattern[str]
    placeholders: frozenset[str]

    def match(self, name: str) -> bool:
        normal = name.upper().replace("-", "_").replace(".", "_")
        return bool(self.secret.search(normal)) and not self.public.search(normal)


def _load() -> tuple[tuple[SecretPattern, ...], SecretNames]:
    data = tomllib.loads(resources.files(__package__).joinpath(_PATTERNS_FILE).read_text("utf-8"))
    patterns = tuple(
        SecretPattern(
            name=str(p["name"]),
            regex=re.compile(str(p["regex"]), re.S if p.get("multiline") else 0),
            replace=str(p["replace"]),
            triggers=tuple(str(t) for t in p["triggers"]),
            multiline=bool(p.get("multiline", False)),
        )
        for p in data["pattern"]
    )
    names = data["names"]
    return patterns, SecretNames(
        secret=re.compile(str(names["secret"])),
        public=re.compile(str(names["public"])),
        placeholders=frozenset(str(v).lower() for v in names["placeholders"]),
    )


PATTERNS, NAMES = _load()

#: ``NAME=value``, ``name: value``, ``NAME = 'value'``, ``"name": "value"``, ``name => value``
#: on one line; the value is masked when the name looks secret (:data:`NAMES`)
_ASSIGNMENT = re.compile(
    r"(?P<name>\b[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>[\"']?[ \t]*(?::|=>?|:=)[ \t]*)"
    r"(?:(?P<pre>[bBrRuUfF]{0,2})(?P<q>[\"'])(?P<quoted>(?:(?!(?P=q))[^\n])*)(?P<close>(?P=q)|(?=\n)|\Z)"
    r"|(?P<bare>[^\s\"']+))"
)
_ASSIGNMENT_TRIGGERS = (
    "pass", "secret", "token", "key", "cred", "auth", "dsn", "_url", "pwd", "cookie",
)  # fmt: skip


def _mask_assignment(match: re.Match[str]) -> str:
    value = match.group("quoted") if match.group("q") else match.group("bare")
    if not NAMES.match(match.group("name")) or value.lower() in NAMES.placeholders or not value:
        return match.group(0)
    if not match.group("q"):
        return f"{match.group('name')}{match.group('sep')}{MASK}"
    opened = match.group("pre") + match.group("q")
    return f"{match.group('name')}{match.group('sep')}{opened}{MASK}{match.group('close')}"


_lock = threading.Lock()
_secrets: set[str] = set()
#: the registered values, longest first (a value inside a longer one is masked with it); rebuilt
#: on each registration, which is rare, so redacting reads it without sorting or locking
_longest_first: tuple[str, ...] = ()
#: redacted text of short strings already seen (state files redact the same values again and
#: again); replaced by a new dict whenever the registered values change, so a result computed
#: before a registration can only land in the dict that registration dropped
_memo: dict[str, str] = {}
#: strings up to this length are remembered, up to this many of them
_MEMO_TEXT = 512
_MEMO_SIZE = 8192


def register_secret(value: str | None) -> None:
    """Remember an exact secret value so it is masked wherever it appears. Each line of a
    value that spans lines is remembered too (8 characters or more): output redacted as it
    streams is cut at line ends."""
    global _longest_first
    if not value or len(value) < 4:
        return
    values = {value}
    if "\n" in value:
        values |= {line.strip() for line in value.splitlines() if len(line.strip()) >= 8}
    with _lock:
        if not values <= _secrets:
            _secrets.update(values)
            _longest_first = tuple(sorted(_secrets, key=len, reverse=True))
            _forget_memo()


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


_URL_CREDENTIALS = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://([^\s/@'\"<>]+)@")


def register_found(obj: object, *, secret: bool = False) -> None:
    """Register the secrets inside a JSON-like value (``--set`` variables, a configuration, a
    plan's variables): strings under a secret-looking key whole, and the credentials of any URL
    (``https://TOKEN@host``, ``scheme://user:PASSWORD@host``) wherever they are."""
    if isinstance(obj, str):
        if secret:
            register_secret(obj)
        for userinfo in _URL_CREDENTIALS.findall(obj):
            user, colon, password = userinfo.partition(":")
            register_secret(password if colon else user)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            register_found(value, secret=secret or (isinstance(key, str) and is_secret_key(key)))
    elif isinstance(obj, list | tuple):
        for value in obj:
            register_found(value, secret=secret)


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
        _forget_memo()


def _forget_memo() -> None:
    global _memo
    _memo = {}


def redact(text: str) -> str:
    """Return ``text`` with every known secret and secret-looking value masked."""
    if not text:
        return text
    if len(text) > _MEMO_TEXT:
        return _redact(text)
    memo = _memo  # the dict of the registered values this call redacts with
    done = memo.get(text)
    if done is None:
        done = _redact(text)
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[text] = done
    return done


def _redact(text: str) -> str:
    for value in _longest_first:
        if value in text:
            text = text.replace(value, MASK)
    lower = text.lower()
    for pattern in PATTERNS:
        if any(t in lower for t in pattern.triggers):
            text = pattern.regex.sub(pattern.replace, text)
    if any(t in lower for t in _ASSIGNMENT_TRIGGERS):
        text = _ASSIGNMENT.sub(_mask_assignment, text)
    return text


_BLOCK_START = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_BLOCK_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


class StreamRedactor:
    """Redacts a stream fed in chunks, as :func:`redact` would the whole text.

    Output is released only up to a line end (every pattern but the private key block stays
    within a line, and so do registered values), and not past the line where a private key block
    begins until its END line arrived: a token or key split across reads is still caught. What is
    held back is bounded: a line longer than ``line_limit`` is redacted as it stands, and a key
    block longer than ``block_limit`` is masked whole, along with everything up to its END line.
    :meth:`flush` releases the rest at the end of the stream.
    """

    def __init__(self, *, line_limit: int = 64 * 1024, block_limit: int = 64 * 1024) -> None:
        self.line_limit = line_limit
        self.block_limit = block_limit
        self._held = ""
        self._in_block = False  # a block too long to hold: drop text until its END line

    @property
    def held(self) -> int:
        """How many characters are held back now."""
        return len(self._held)

    def feed(self, text: str) -> str:
        """Take the next chunk; return the redacted text that is now safe to release."""
        if self._in_block:
            text = self._skip_block(text)
            if self._in_block:
                return ""
        self._held += text
        cut = self._safe_end()
        released, self._held = self._held[:cut], self._held[cut:]
        out = redact(released)
        if len(self._held) > max(self.line_limit, self.block_limit):
            out += self._overflow()
        return out

    def flush(self) -> str:
        """The end of the stream: release (redacted) whatever is held back."""
        held, self._held = self._held, ""
        if self._in_block:  # the rest of a key block that never ended
            self._in_block = False
            return ""
        return redact(held)

    def _safe_end(self) -> int:
        held = self._held
        end = held.rfind("\n") + 1
        if end == 0 or "PRIVATE KEY" not in held:
            return end
        spans = _blocks(held, end)
        while True:  # never cut inside a key block: back to the start of its first line
            inside = [
                start for start, stop in spans if start < end and (stop is None or stop > end)
            ]
            if not inside:
                return end
            end = held.rfind("\n", 0, min(inside)) + 1

    def _overflow(self) -> str:
        held = self._held
        start = _open_block(held, len(held))
        if start is None:  # one long line: redact it as it stands
            self._held = ""
            return redact(held)
        line = held.rfind("\n", 0, start) + 1
        self._held = ""
        self._in_block = True
        return redact(held[:line]) + redact(held[line:start]) + MASK

    def _skip_block(self, text: str) -> str:
        found = _BLOCK_END.search(self._held + text)
        if found is None:
            self._held = (self._held + text)[-200:]  # an END marker may be split across chunks
            return ""
        rest = (self._held + text)[found.end() :]
        self._held = ""
        self._in_block = False
        return rest


def _blocks(text: str, end: int) -> list[tuple[int, int | None]]:
    """The private key blocks in ``text[:end]`` as the block pattern finds them: (start, end of
    the END marker, or None if it has not arrived)."""
    spans: list[tuple[int, int | None]] = []
    position = 0
    while True:
        begin = _BLOCK_START.search(text, position, end)
        if begin is None:
            return spans
        close = _BLOCK_END.search(text, begin.end(), end)
        if close is None:
            spans.append((begin.start(), None))
            return spans
        spans.append((begin.start(), close.end()))
        position = close.end()


def _open_block(text: str, end: int) -> int | None:
    """Where the last private key block begun before ``end`` starts, if it has no END yet."""
    if "PRIVATE KEY" not in text:
        return None
    spans = _blocks(text, end)
    return spans[-1][0] if spans and spans[-1][1] is None else None


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """True for names like ``DB_PASSWORD``, ``api_token``, ``SECRET_KEY``, ``DATABASE_URL``
    (not for public ones such as ``STRIPE_PUBLISHABLE_KEY``)."""
    return NAMES.match(name)


def redact_obj(obj: object) -> object:
    """Redact every string inside a JSON-like structure; values under secret-looking keys
    (``password``, ``DB_PASSWORD``, ``api_token``...) are masked whole."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {
            k: MASK
            if isinstance(k, str) and is_secret_key(k) and isinstance(v, str) and v
            else redact_obj(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
