"""Sharing knowledge: export a KB to versioned JSON Lines, import one back (see docs/kb-format.md).

Export redacts everything on its way out: secrets always, and unless ``keep_hosts`` the
deployments' host names, private IP addresses and private host names (``*.internal``, ``*.local``,
...) in every text and context value; host names and deployment ids become stable pseudonyms.

Import is all-or-nothing and idempotent: every line is validated before anything is written (the
first bad line rejects the file with its line number), the rows go in one transaction, and every
record has a stable id (given in the file or the hash of its content) so importing a file twice
adds nothing the second time. Imported strategies that carry shell commands are stored untrusted
and never run until ``aideploy learn trust NAME``; imported patterns must pass the regex safety
check; imported outcomes count with a reduced weight and ``decided_by="imported"``.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import itertools
import json
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import msgspec
from sqlalchemy import (
    Connection,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    type_coerce,
    update,
)

from aideploy.core.atomic import atomic_file
from aideploy.core.errors import ConfigError, ImportRejected, KnowledgeBaseError
from aideploy.core.redact import redact, redact_obj
from aideploy.knowledge.models import (
    ATTEMPTS,
    DEPLOYMENTS,
    PATTERNS,
    SIGNATURES,
    STRATEGIES,
    Deployment,
    utcnow,
)
from aideploy.knowledge.store import (
    DECIDERS,
    OUTCOMES,
    RISKS,
    KnowledgeBase,
    check_regex,
    normalize_signature,
    signature_hash,
)

FORMAT = "aideploy-kb"
VERSION = 1
RECORD_TYPES = ("strategy", "pattern", "deployment", "signature", "attempt")
DEFAULT_IMPORT_WEIGHT = 0.5
MAX_LINE_CHARS = 1_000_000
#: the largest encounter number a file may carry (the column is a 32-bit integer)
MAX_ENCOUNTER = 2**31 - 1
_CHUNK = 5000
_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}\Z")

HOST = "<host>"
IP = "<ip>"
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_PRIVATE_NAME = re.compile(
    r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:internal|local|localdomain|lan|corp|home|intranet|private|priv|intra)\b"
)
_HOST_KEYS = {"host", "hostname", "ip", "address", "addr", "fqdn", "server", "node", "target"}


# --- redaction on the way out ---------------------------------------------------------------


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


class Scrubber:
    """Redaction for exports, with a cache (the same strings recur thousands of times)."""

    def __init__(self, known_hosts: Iterable[str], *, keep_hosts: bool, salt: str) -> None:
        self.keep_hosts = keep_hosts
        self.salt = salt
        hosts = {h for h in known_hosts if h and len(h) >= 3}
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
        if len(self._cache) < 200_000:
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
        if value.startswith(f"{prefix}-") and len(value) == len(prefix) + 17:
            return value  # already a pseudonym (a re-export of an import)
        digest = hashlib.sha256(f"{self.salt}\0{value}".encode()).hexdigest()[:16]
        return f"{prefix}-{digest}"


# --- export ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


def _context_key(context: dict[str, Any]) -> Any:
    """A cheap hashable key for a context (flat ones are most of them)."""
    try:
        key = tuple(context.items())
        hash(key)
        return key
    except TypeError:
        return json.dumps(context, sort_keys=True)


def iter_export(kb: KnowledgeBase, *, keep_hosts: bool = False) -> Iterator[dict[str, Any]]:
    """Every record of the KB, redacted, in export order (no header)."""
    salt = kb.kb_id()
    with kb.reading() as conn:
        hosts = [h for (h,) in conn.execute(select(Deployment.host).distinct())]
        scrub = Scrubber(hosts, keep_hosts=keep_hosts, salt=salt)

        st = STRATEGIES
        for r in conn.execute(select(st).order_by(st.c.name)):
            yield {
                "type": "strategy",
                "name": r.name,
                "description": scrub.text(r.description),
                "risk": r.risk,
                "commands": [scrub.text(c) for c in r.commands] if r.commands is not None else None,
            }

        pt = PATTERNS
        for r in conn.execute(select(pt).order_by(pt.c.name)):
            yield {
                "type": "pattern",
                "name": r.name,
                "regex": r.regex,
                "error_class": r.error_class,
                "strategy": r.strategy,
                "severity": r.severity,
                "description": scrub.text(r.description),
                "retry_count": r.retry_count,
            }

        dt = DEPLOYMENTS
        for r in conn.execute(select(dt).order_by(dt.c.started_at, dt.c.id)):
            yield {
                "type": "deployment",
                "id": scrub.pseudonym("d", r.id),
                "profile": scrub.text(r.profile),
                "host": scrub.pseudonym("host", r.host),
                "plan": scrub.text(r.plan),
                "status": r.status,
                "started_at": _iso(r.started_at),
                "ended_at": _iso(r.ended_at),
            }

        sg = SIGNATURES
        texts: dict[int, tuple[str, str]] = {}
        for r in conn.execute(select(sg).order_by(sg.c.id)):
            text = scrub.text(r.text)
            texts[r.id] = (text, r.error_class)
            yield {
                "type": "signature",
                "signature": text,
                "error_class": r.error_class,
                "count": r.count,
                "first_seen": _iso(r.first_seen),
                "last_seen": _iso(r.last_seen),
            }

        at = ATTEMPTS
        contexts: dict[Any, dict[str, Any]] = {}
        deployments: dict[str, str | None] = {}
        # SQLite keeps a context as JSON text: read the text and parse each distinct one once
        context_column: Any = (
            type_coerce(at.c.context, Text) if conn.dialect.name == "sqlite" else at.c.context
        )
        query = select(
            at.c.record_key,
            at.c.signature_id,
            at.c.strategy,
            at.c.outcome,
            at.c.step,
            at.c.deployment_id,
            context_column,
            at.c.weight,
            at.c.duration,
            at.c.decided_by,
            at.c.at,
            at.c.encounter,
        ).order_by(at.c.id)
        result = conn.execution_options(yield_per=10_000).execute(query)
        for row in result:
            key, sid, strategy, outcome, step, dep, context, weight, duration, by, when, nth = row
            text, error_class = texts[sid]
            if context.__class__ is str:
                ctx_key = context
            else:
                ctx_key = _context_key(context) if context else ""
            ctx = contexts.get(ctx_key)
            if ctx is None:
                if context.__class__ is str:
                    context = json.loads(context)
                ctx = scrub.context(context)
                if len(contexts) < 100_000:
                    contexts[ctx_key] = ctx
            if dep is not None and dep not in deployments:
                deployments[dep] = scrub.pseudonym("d", dep)
            record = {
                "type": "attempt",
                "id": key,
                "signature": text,
                "error_class": error_class,
                "strategy": strategy,
                "outcome": outcome,
                "step": scrub.text(step),
                "deployment": deployments[dep] if dep is not None else None,
                "context": ctx,
                "weight": weight,
                "duration": duration,
                "decided_by": by,
                "at": _iso(when),
            }
            if nth is not None:
                record["encounter"] = nth
            yield record


def export_kb(
    kb: KnowledgeBase, destination: str | os.PathLike[str] | IO[str], *, keep_hosts: bool = False
) -> int:
    """Write the KB as JSON Lines to a path or an open text stream; returns the record count.

    A path is written atomically (a temp file renamed into place), so a failed export never
    leaves half a file behind.
    """
    if hasattr(destination, "write"):
        return _write_export(kb, destination, keep_hosts=keep_hosts)  # type: ignore[arg-type]
    path = Path(os.fspath(destination))
    try:
        with atomic_file(path, mode=None, text=True) as handle:
            count = _write_export(kb, handle, keep_hosts=keep_hosts)
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot write {path}: {exc.strerror or exc}") from None
    return count


def _write_export(kb: KnowledgeBase, handle: IO[str], *, keep_hosts: bool) -> int:
    # the header carries the record count, so records are rendered before it is written
    with _no_cyclic_gc():
        lines = [_dumps(r) for r in iter_export(kb, keep_hosts=keep_hosts)]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": len(lines),
        "source": kb.kb_id(),
    }
    handle.write(_dumps(header) + "\n")
    for start in range(0, len(lines), _CHUNK):
        handle.write("\n".join(lines[start : start + _CHUNK]) + "\n")
    return len(lines)


# --- validation ------------------------------------------------------------------------------


class _Bad(Exception):
    """A record is invalid (message without the line number)."""


def _str(rec: dict[str, Any], key: str, *, required: bool = False, limit: int = 128) -> str:
    value = rec.get(key)
    if value is None:
        if required:
            raise _Bad(f'"{key}" is required')
        return ""
    if not isinstance(value, str):
        raise _Bad(f'"{key}" must be a string')
    if required and not value.strip():
        raise _Bad(f'"{key}" must not be empty')
    if len(value) > limit:
        raise _Bad(f'"{key}" is longer than {limit} characters')
    return value


def _num(rec: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = rec.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f'"{key}" must be a number')
    if not lo <= value <= hi:
        raise _Bad(f'"{key}" must be between {lo:g} and {hi:g}')
    return float(value)


_TIME_CACHE: dict[str, datetime] = {}


def _time(rec: dict[str, Any], key: str) -> datetime | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f'"{key}" must be an ISO 8601 time')
    cached = _TIME_CACHE.get(value)
    if cached is not None:
        return cached
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f'"{key}" is not an ISO 8601 time: {value[:40]!r}') from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if len(_TIME_CACHE) > 50_000:
        _TIME_CACHE.clear()
    _TIME_CACHE[value] = parsed
    return parsed


def content_id(record: dict[str, Any]) -> str:
    """The stable id of a record that has none: sha256 of its canonical JSON."""
    body = {k: v for k, v in record.items() if k != "id"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Cache:
    """Redaction of imported values, cached: the same strings recur on many lines."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self._contexts: dict[Any, dict[str, Any]] = {}
        #: raw "signature" values that passed validation -> their stored signature
        self.valid_sigs: dict[str, str] = {}
        #: "strategy" values that passed validation
        self.valid_strategies: set[str] = set()

    def strategy_ok(self, value: str) -> bool:
        """Whether a strategy name of the right length is not blank (remembered when it is not)."""
        if not value.strip():
            return False
        if len(self.valid_strategies) < 10_000:
            self.valid_strategies.add(value)
        return True

    def text(self, value: str) -> str:
        found = self.texts.get(value)
        if found is None:
            found = redact(value)
            if len(self.texts) < 200_000:
                self.texts[value] = found
        return found

    def sig(self, value: str) -> str:
        return self.text(value).strip() or "<empty>"

    def context(self, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return {}
        key = _context_key(value)
        found = self._contexts.get(key)
        if found is None:
            cleaned = redact_obj(value)
            assert isinstance(cleaned, dict)
            found = cleaned
            if len(self._contexts) < 100_000:
                self._contexts[key] = found
        return found


@dataclass
class _Parsed:
    strategies: list[dict[str, Any]] = field(default_factory=list)
    patterns: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    signatures: list[dict[str, Any]] = field(default_factory=list)
    #: one tuple per attempt, fields in the order of _ATTEMPT_FIELDS
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    records: int = 0


def _v_strategy(rec: dict[str, Any], out: _Parsed, c: _Cache) -> None:
    name = _str(rec, "name", required=True)
    risk = _str(rec, "risk", limit=16) or "medium"
    if risk not in RISKS:
        raise _Bad(f'"risk" must be one of {", ".join(RISKS)}')
    commands = rec.get("commands")
    if commands is not None and (
        not isinstance(commands, list) or not all(isinstance(c, str) for c in commands)
    ):
        raise _Bad('"commands" must be a list of strings')
    out.strategies.append(
        {
            "name": name,
            "description": redact(_str(rec, "description", limit=4000)),
            "risk": risk,
            "commands": [redact(c) for c in commands] if commands is not None else None,
        }
    )


def _v_pattern(rec: dict[str, Any], out: _Parsed, c: _Cache) -> None:
    name = _str(rec, "name", required=True)
    pattern = _str(rec, "regex", required=True, limit=1000)
    try:
        check_regex(pattern)
    except ConfigError as exc:
        raise _Bad(f"pattern {name!r} rejected: {exc}") from None
    retry = rec.get("retry_count", 3)
    if isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= 20:
        raise _Bad('"retry_count" must be an integer between 0 and 20')
    out.patterns.append(
        {
            "name": name,
            "regex": pattern,
            "error_class": _str(rec, "error_class", required=True, limit=64),
            "strategy": _str(rec, "strategy"),
            "severity": _str(rec, "severity", limit=16) or "medium",
            "description": redact(_str(rec, "description", limit=4000)),
            "retry_count": retry,
        }
    )


def _v_deployment(rec: dict[str, Any], out: _Parsed, c: _Cache) -> None:
    started = _time(rec, "started_at")
    # through the cache: profiles and plans repeat, and the attempts name the same ids
    out.deployments.append(
        {
            "id": c.text(_str(rec, "id", required=True)),
            "profile": c.text(_str(rec, "profile")),
            "host": c.text(_str(rec, "host", limit=255)),
            "plan": c.text(_str(rec, "plan")),
            "status": _str(rec, "status", limit=32) or "unknown",
            "started_at": started or utcnow(),
            "ended_at": _time(rec, "ended_at"),
        }
    )


def _v_signature(rec: dict[str, Any], out: _Parsed, c: _Cache) -> None:
    text = c.sig(_str(rec, "signature", required=True, limit=4000))
    count = rec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _Bad('"count" must be a non-negative integer')
    first = _time(rec, "first_seen")
    last = _time(rec, "last_seen")
    out.signatures.append(
        {
            "text": text,
            "error_class": _str(rec, "error_class", limit=64) or "unknown",
            "count": count,
            "first_seen": first or last or utcnow(),
            "last_seen": last or first or utcnow(),
        }
    )


_OUTCOME_SET = frozenset(OUTCOMES)


def _v_attempt(rec: dict[str, Any], out: _Parsed, c: _Cache) -> None:
    # Each field is taken on a fast path when it is plainly valid (a value already validated, or
    # the expected type within its limits); anything else goes through the general checks, in
    # the same order, so a bad record gets the same message.
    get = rec.get
    raw_sig = get("signature")
    text = c.valid_sigs.get(raw_sig) if raw_sig.__class__ is str else None
    if text is None:
        if raw_sig is not None:
            text = c.sig(_str(rec, "signature", required=True, limit=4000))
            if len(c.valid_sigs) < 200_000:
                c.valid_sigs[raw_sig] = text
        elif get("error") is not None:
            raw = rec["error"]
            if not isinstance(raw, str) or not raw.strip():
                raise _Bad('"error" must be a non-empty string')
            text = normalize_signature(raw)
        else:
            raise _Bad('an attempt needs "signature" or "error"')
    outcome = get("outcome")
    if outcome.__class__ is not str or outcome not in _OUTCOME_SET:
        outcome = _str(rec, "outcome", required=True, limit=16)
        if outcome not in OUTCOMES:
            raise _Bad(f'"outcome" must be one of {", ".join(OUTCOMES)}')
    key = get("id")
    if key is None:
        key = content_id(rec)
    elif not isinstance(key, str) or not _KEY_RE.match(key):
        raise _Bad('"id" must be 1-64 letters, digits or ._:-')
    context = get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        raise _Bad('"context" must be an object')
    decided = get("decided_by")
    if decided is not None and decided not in DECIDERS:
        raise _Bad(f'"decided_by" must be one of {", ".join(DECIDERS)}')
    dep = get("deployment")
    if dep is not None and not isinstance(dep, str):
        raise _Bad('"deployment" must be a string')
    error_class = get("error_class")
    if error_class.__class__ is not str or len(error_class) > 64:
        error_class = _str(rec, "error_class", limit=64)
    strategy = get("strategy")
    if strategy.__class__ is not str or len(strategy) > 128 or not strategy.strip():
        strategy = _str(rec, "strategy", required=True)
    step = get("step")
    if step.__class__ is not str or len(step) > 128:
        step = _str(rec, "step")
    weight = get("weight", 1.0)
    if weight.__class__ is not float or not 0.0 <= weight <= 1.0:
        weight = _num(rec, "weight", 1.0, 0.0, 1.0)
    duration = get("duration", 0.0)
    if duration.__class__ is not float or not 0.0 <= duration <= 1e9:
        duration = _num(rec, "duration", 0.0, 0.0, 1e9)
    encounter = get("encounter")
    if encounter is not None and (
        encounter.__class__ is not int or not 1 <= encounter <= MAX_ENCOUNTER
    ):
        raise _Bad(f'"encounter" must be an integer between 1 and {MAX_ENCOUNTER}')
    out.attempts.append(
        (
            key,
            text,
            error_class or "unknown",
            strategy,
            outcome,
            c.text(step),
            c.text(dep) if dep else None,
            c.context(context),
            weight,
            float(duration),
            _attempt_time(rec),
            encounter,
        )
    )


def _attempt_time(rec: dict[str, Any]) -> datetime | None:
    """``_time(rec, "at")``; an attempt's time is rarely repeated, so no cache on the way."""
    value = rec.get("at")
    if value.__class__ is str:
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            return _time(rec, "at")  # raises the usual message
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    return _time(rec, "at")


_fromisoformat = datetime.fromisoformat

_OutcomeName = Literal["recovered", "failed", "skipped"]  # == OUTCOMES (a test holds them equal)
_DeciderName = Literal["rule", "ranker", "user", "imported"]  # == DECIDERS


class _FastAttempt(msgspec.Struct, tag_field="type", tag="attempt"):
    """An attempt record as exports write it, for the fast path of :func:`parse_lines`.

    Decoding a line into this checks, in C, what :func:`_v_attempt` checks of the same fields
    (types, lengths, ranges, the outcome and decider names) and is at least as strict: a missing
    id, a null or a value of another type fails here and the line goes to the validator. What is
    left (a signature not seen yet, a blank strategy, the id's characters, the time, the context
    being an object) is checked by :func:`_fast_path`.
    """

    id: Annotated[str, msgspec.Meta(max_length=64)]  # its form: _fast_path (faster there)
    signature: Annotated[str, msgspec.Meta(max_length=4000)]
    strategy: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    outcome: _OutcomeName
    error_class: Annotated[str, msgspec.Meta(max_length=64)] = ""
    step: Annotated[str, msgspec.Meta(max_length=128)] = ""
    deployment: str | None = None
    context: msgspec.Raw = msgspec.Raw(b"{}")  # decoded once per distinct text
    weight: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    duration: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)] = 0.0
    decided_by: _DeciderName | None = None
    at: str | None = None
    encounter: Annotated[int, msgspec.Meta(ge=1, le=MAX_ENCOUNTER)] | None = None


_FAST_ATTEMPT = msgspec.json.Decoder(_FastAttempt)
_DECODE_ANY = msgspec.json.Decoder().decode


def _fast_path(out: _Parsed, c: _Cache) -> Callable[[_FastAttempt], bool]:
    """What adds a decoded attempt as :func:`_v_attempt` would; it returns False to leave the
    record to the validator (a signature not validated yet, a blank strategy, a bad time, a
    context that is not an object). Everything it needs is bound once: it runs for every line.
    """
    signatures = c.valid_sigs.get
    strategies = c.valid_strategies
    strategy_ok = c.strategy_ok
    texts = c.texts.get
    text_of = c.text
    context_of = c.context
    contexts: dict[bytes, dict[str, Any]] = {}
    known_context = contexts.get
    decode = _DECODE_ANY
    add = out.attempts.append
    key_ok = _KEY_RE.match

    def take(a: _FastAttempt) -> bool:
        text = signatures(a.signature)
        strategy = a.strategy
        if text is None or (strategy not in strategies and not strategy_ok(strategy)):
            return False
        key = a.id
        if not (key.isascii() and key.isalnum()) and key_ok(key) is None:
            return False
        when: datetime | None = None
        if a.at is not None:
            try:
                when = _fromisoformat(a.at)
            except ValueError:
                return False
            if when.tzinfo is not None:
                when = when.astimezone(UTC).replace(tzinfo=None)
        # a context is kept as its JSON text until a new one comes: most lines repeat a few
        raw = bytes(a.context)
        context = known_context(raw)
        if context is None:
            value = decode(raw)
            if value is None:
                value = {}
            elif value.__class__ is not dict:
                return False
            context = context_of(value)
            if len(contexts) < 100_000:
                contexts[raw] = context
        step = texts(a.step)
        if step is None:
            step = text_of(a.step)
        dep = a.deployment
        if dep:
            found = texts(dep)
            dep = text_of(dep) if found is None else found
        add(
            (
                key,
                text,
                a.error_class or "unknown",
                strategy,
                a.outcome,
                step,
                dep or None,
                context,
                a.weight,
                a.duration,
                when,
                a.encounter,
            )
        )
        return True

    return take


#: the fields of a validated attempt (a tuple: there are millions of them)
_ATTEMPT_FIELDS = (
    "key",
    "text",
    "error_class",
    "strategy",
    "outcome",
    "step",
    "deployment",
    "context",
    "weight",
    "duration",
    "at",
    "encounter",
)


_VALIDATORS: dict[str, Callable[[dict[str, Any], _Parsed, _Cache], None]] = {
    "strategy": _v_strategy,
    "pattern": _v_pattern,
    "deployment": _v_deployment,
    "signature": _v_signature,
    "attempt": _v_attempt,
}


def _check_header(line: str) -> int:
    try:
        header = json.loads(line)
    except ValueError:
        raise ImportRejected("line 1: not a JSON header line") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ImportRejected(f'line 1: not an {FORMAT} file (no "format": "{FORMAT}" header)')
    version = header.get("version")
    if version != VERSION:
        raise ImportRejected(
            f"line 1: format version {version!r} is not supported (this aideploy reads {VERSION})"
        )
    records = header.get("records")
    if isinstance(records, bool) or not isinstance(records, int) or records < 0:
        raise ImportRejected('line 1: "records" must be a non-negative integer')
    return records


def parse_lines(lines: Iterable[str]) -> _Parsed:
    """Validate every line; the first problem raises ImportRejected("line N: ...").

    An attempt record as exports write them (an id, a known signature, every field of its type and
    within its limits) takes the fast path: decoded straight into :class:`_FastAttempt`, which
    checks the types, limits, id and outcome in C. Any other line, and any line the fast path
    turns down, is decoded into a dict and goes through the record's validator, whose verdict
    (and message) counts: the fast path only ever accepts what the validator would accept, with
    the same result.
    """
    out = _Parsed()
    expected: int | None = None
    cache = _Cache()

    fast = _FAST_ATTEMPT.decode
    fast_error = msgspec.DecodeError  # ValidationError is one
    take = _fast_path(out, cache)
    decode = _DECODE_ANY
    loads = json.loads
    validators = _VALIDATORS
    records = number = 0
    for number, line in enumerate(lines, 1):
        if number == 1:
            expected = _check_header(line)
            continue
        if len(line) > MAX_LINE_CHARS and line.strip():
            raise ImportRejected(f"line {number}: longer than {MAX_LINE_CHARS} characters")
        try:
            if take(fast(line)):
                records += 1
                continue
        except fast_error:  # from the struct, or from a context msgspec cannot read
            if not line.strip():
                continue
        try:
            rec = decode(line)
        except fast_error:
            # msgspec is stricter than the json module (NaN, lone surrogates): json's verdict counts
            try:
                rec = loads(line)
            except ValueError as exc:
                raise ImportRejected(f"line {number}: not valid JSON ({exc})") from None
        if not isinstance(rec, dict):
            raise ImportRejected(f"line {number}: a record must be a JSON object")
        kind = rec.get("type")
        validate = validators.get(kind) if isinstance(kind, str) else None
        if validate is None:
            raise ImportRejected(f'line {number}: "type" must be one of {", ".join(RECORD_TYPES)}')
        try:
            validate(rec, out, cache)
        except _Bad as exc:
            raise ImportRejected(f"line {number}: {kind}: {exc}") from None
        records += 1
    out.records = records
    if expected is None:
        raise ImportRejected("line 1: the file is empty")
    if out.records != expected:
        raise ImportRejected(
            f"line {number}: the header announces {expected} records but the file has "
            f"{out.records} (truncated or edited?)"
        )
    return out


# --- import ----------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    source: str
    records: int = 0
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    untrusted: list[str] = field(default_factory=list)

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def _chunks(items: list[Any], size: int = 900) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing(conn: Connection, column: Any, values: Iterable[Any]) -> set[Any]:
    """Which of ``values`` are already in ``column``.

    When the table holds no more than a few times as many rows as there are values, reading the
    whole column once is cheaper than looking the values up chunk by chunk.
    """
    wanted = values if isinstance(values, set) else set(values)
    if not wanted:
        return set()
    rows = int(conn.scalar(select(func.count()).select_from(column.table)) or 0)
    if rows <= _PRELOAD_FACTOR * len(wanted):
        return {v for (v,) in conn.execute(select(column))} & wanted
    found: set[Any] = set()
    for chunk in _chunks(sorted(wanted)):
        found.update(v for (v,) in conn.execute(select(column).where(column.in_(chunk))))
    return found


_PRELOAD_FACTOR = 4


def import_kb(
    kb: KnowledgeBase,
    source: str | os.PathLike[str] | IO[str],
    *,
    source_name: str | None = None,
    weight: float = DEFAULT_IMPORT_WEIGHT,
) -> ImportSummary:
    """Import an export file into ``kb``: validated in full, then written in one transaction."""
    if not 0.0 < weight <= 1.0:
        raise KnowledgeBaseError("the import weight must be in (0, 1]")
    with _no_cyclic_gc():
        return _import(kb, source, source_name, weight)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting goes on).

    An import holds every validated record (millions of small dicts) until it commits, an export
    every rendered line until the count is known; each allocation burst would otherwise make the
    collector walk all of them again and again, which costs more than the work itself. Any cycle
    made meanwhile is collected once it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _import(
    kb: KnowledgeBase,
    source: str | os.PathLike[str] | IO[str],
    source_name: str | None,
    weight: float,
) -> ImportSummary:
    if hasattr(source, "read"):
        parsed = parse_lines(source)  # type: ignore[arg-type]
        name = source_name or "import"
    else:
        path = Path(os.fspath(source))
        try:
            with path.open(encoding="utf-8") as handle:
                parsed = parse_lines(handle)
        except OSError as exc:
            raise ImportRejected(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ImportRejected(f"{path} is not UTF-8 text: {exc.reason}") from None
        name = source_name or path.stem
    name = redact(name)[:255] or "import"
    summary = ImportSummary(source=name, records=parsed.records)
    with kb.writing(bulk=True) as conn:
        _write(conn, parsed, summary, weight)
    return summary


def _write(conn: Connection, p: _Parsed, summary: ImportSummary, weight: float) -> None:
    origin = summary.source
    now = utcnow()

    # strategies and patterns: a local one of the same name always wins
    st = STRATEGIES
    have = _existing(conn, st.c.name, (s["name"] for s in p.strategies))
    new_strategies: dict[str, dict[str, Any]] = {}
    for s in p.strategies:
        if s["name"] in have or s["name"] in new_strategies:
            continue
        trusted = not s["commands"]
        new_strategies[s["name"]] = {**s, "origin": origin, "trusted": trusted}
        if not trusted:
            summary.untrusted.append(s["name"])
    if new_strategies:
        conn.execute(insert(st), list(new_strategies.values()))
    summary.added["strategy"] = len(new_strategies)
    summary.skipped["strategy"] = len(p.strategies) - len(new_strategies)

    pt = PATTERNS
    have = _existing(conn, pt.c.name, (x["name"] for x in p.patterns))
    new_patterns: dict[str, dict[str, Any]] = {}
    for x in p.patterns:
        if x["name"] not in have and x["name"] not in new_patterns:
            new_patterns[x["name"]] = {**x, "origin": origin, "trusted": True}
    if new_patterns:
        conn.execute(insert(pt), list(new_patterns.values()))
    summary.added["pattern"] = len(new_patterns)
    summary.skipped["pattern"] = len(p.patterns) - len(new_patterns)

    # deployments: by id
    dt = DEPLOYMENTS
    have = _existing(conn, dt.c.id, (d["id"] for d in p.deployments))
    new_deps: dict[str, dict[str, Any]] = {}
    for d in p.deployments:
        if d["id"] not in have and d["id"] not in new_deps:
            new_deps[d["id"]] = d
    _insert_records(conn, dt, list(new_deps.values()))
    summary.added["deployment"] = len(new_deps)
    summary.skipped["deployment"] = len(p.deployments) - len(new_deps)
    known_deps = set(have) | set(new_deps)
    # the attempts as columns (fields in _ATTEMPT_FIELDS order): C-level passes from here on
    columns = _transpose(p.attempts, len(_ATTEMPT_FIELDS))
    keys, texts, classes, _s, _o, _st, deps, _c, _w, _d, times, _e = columns
    wanted = set(deps) - known_deps
    wanted.discard(None)
    wanted.discard("")
    # the deployments that were in the KB before: only they can have attempts there already
    old_deps = set(have) | _existing(conn, dt.c.id, wanted)
    known_deps |= old_deps

    # signatures: by hash; counts merge with max() so a second import changes nothing
    sg = SIGNATURES
    by_hash: dict[str, dict[str, Any]] = {}
    for s in p.signatures:
        h = signature_hash(s["text"])
        prev = by_hash.get(h)
        if prev is None:
            by_hash[h] = {**s, "hash": h}
        else:
            prev["count"] = max(prev["count"], s["count"])
            prev["first_seen"] = min(prev["first_seen"], s["first_seen"])
            prev["last_seen"] = max(prev["last_seen"], s["last_seen"])
    attempt_hashes: dict[str, str] = {}
    # each signature's first attempt in the file (the reversed pairs leave the first index last)
    first_at = dict(zip(reversed(texts), range(len(texts) - 1, -1, -1), strict=True))
    for text in dict.fromkeys(texts):
        h = attempt_hashes[text] = signature_hash(text)
        if h not in by_hash:
            i = first_at[text]
            when = times[i] or now
            by_hash[h] = {
                "text": text,
                "error_class": classes[i],
                "count": 0,
                "first_seen": when,
                "last_seen": when,
                "hash": h,
            }
    explicit = {signature_hash(s["text"]) for s in p.signatures}
    existing: dict[str, tuple[int, int, datetime, datetime]] = {}
    #: signature id -> its encounters (the highest number given so far)
    stored_encounters: dict[int, int] = {}
    for chunk in _chunks(list(by_hash)):
        for sid, h, count, first, last, encounters in conn.execute(
            select(
                sg.c.id, sg.c.hash, sg.c.count, sg.c.first_seen, sg.c.last_seen, sg.c.encounters
            ).where(sg.c.hash.in_(chunk))
        ):
            existing[h] = (sid, count, first, last)
            stored_encounters[sid] = encounters
    fresh = [v for h, v in by_hash.items() if h not in existing]
    _insert_records(conn, sg, fresh)
    changes = []
    for h, (sid, count, first, last) in existing.items():
        if h not in explicit:
            continue
        rec = by_hash[h]
        merged = (
            max(count, rec["count"]),
            min(first, rec["first_seen"]),
            max(last, rec["last_seen"]),
        )
        if merged != (count, first, last):
            changes.append({"b_id": sid, "b_c": merged[0], "b_f": merged[1], "b_l": merged[2]})
    if changes:
        conn.execute(
            update(sg)
            .where(sg.c.id == bindparam("b_id"))
            .values(
                count=bindparam("b_c"), first_seen=bindparam("b_f"), last_seen=bindparam("b_l")
            ),
            changes,
        )
    summary.added["signature"] = len(fresh)
    summary.skipped["signature"] = len(p.signatures) - len(
        [h for h in explicit if h not in existing]
    )
    ids: dict[str, int] = {h: v[0] for h, v in existing.items()}
    if fresh:
        for chunk in _chunks([f["hash"] for f in fresh]):
            ids.update(
                (h, sid)
                for sid, h in conn.execute(select(sg.c.id, sg.c.hash).where(sg.c.hash.in_(chunk)))
            )

    # attempts: by record key. There can be millions, so the rows are put together column by
    # column with C-level maps and zips over the validated tuples, never a Python call per row.
    at = ATTEMPTS
    distinct_keys = set(keys)
    have = _existing(conn, at.c.record_key, distinct_keys)
    if have or len(distinct_keys) != len(keys):
        seen = set(have)
        # the first record of each new key, in file order (set.add returns None)
        keep = [not (k in seen or seen.add(k)) for k in columns[0]]  # type: ignore[func-returns-value]
        columns = [list(itertools.compress(column, keep)) for column in columns]
    (
        keys,
        texts,
        _cls,
        strategies,
        outcomes,
        steps,
        deps,
        contexts,
        weights,
        durations,
        times,
        encounters,
    ) = columns
    sig_ids = {text: ids[h] for text, h in attempt_hashes.items()}
    sids = list(map(sig_ids.__getitem__, texts))
    if not {d for d in set(deps) if d is not None} <= known_deps:
        deps = [d if d in known_deps else None for d in deps]
    encounters, highest = _number_failures(
        conn, sids, outcomes, deps, encounters, old_deps, stored_encounters
    )
    raised = [
        {"b_id": sid, "b_n": n} for sid, n in highest.items() if n > stored_encounters.get(sid, 0)
    ]
    if raised:
        conn.execute(
            update(sg).where(sg.c.id == bindparam("b_id")).values(encounters=bindparam("b_n")),
            raised,
        )
    # equal contexts are one object (the validator's cache): encode each object once
    to_json = _encoder(conn, at.c.context)
    encoded = {
        i: to_json(c) for i, c in dict(zip(map(id, contexts), contexts, strict=True)).items()
    }
    stored_weight = {w: round(w * weight, 6) for w in set(weights)}
    if None in times:
        times = [now if t is None else t for t in times]
    rows = zip(
        sids,
        strategies,
        steps,
        deps,
        map(encoded.__getitem__, map(id, contexts)),
        outcomes,
        durations,
        itertools.repeat("imported"),
        map(stored_weight.__getitem__, weights),
        itertools.repeat(origin),
        keys,
        map(_encoder(conn, at.c.at), times),
        encounters,
    )
    with _bulk_load(conn, at, len(keys)):
        added = _insert_many(conn, at, _ATTEMPT_COLUMNS, rows)
    summary.added["attempt"] = added
    summary.skipped["attempt"] = len(p.attempts) - added


def _number_failures(
    conn: Connection,
    sids: Sequence[int],
    outcomes: Sequence[str],
    deps: Sequence[str | None],
    encounters: Sequence[int | None],
    old_deps: set[str],
    stored: dict[int, int],
) -> tuple[Sequence[int | None], dict[int, int]]:
    """The encounter of each attempt to insert, and each signature's highest encounter.

    An attempt keeps the encounter it came with when its deployment is kept, unless the KB has
    a decided attempt on its signature in that deployment (the failure is counted already). One
    that came without (a file from another tool) and is a failure's first attempt (it has a kept
    deployment, is not skipped, and no attempt on the same signature in the same deployment that
    is not skipped comes before it, in the KB or earlier in the file) gets the signature's next
    number, in file order, after the highest one in the KB and in the file. Returns the
    encounters in file order and, per signature id, the highest number it was given here.
    The rows are many: numpy finds the highest numbers and the attempts without one.
    """
    import numpy as np

    if not sids:
        return encounters, {}
    if None in deps:
        encounters = [None if d is None else e for e, d in zip(encounters, deps, strict=True)]
    decided: set[tuple[str, int]] = set()
    asked: set[str | None] = set()
    if old_deps:
        # a number that came for a failure the KB counts already (it has a decided attempt on
        # that signature in that deployment) would count it twice: it is dropped
        old = [
            i
            for i, (e, d) in enumerate(zip(encounters, deps, strict=True))
            if e is not None and d in old_deps
        ]
        asked = {deps[i] for i in old}
        decided = _decided_pairs(conn, asked)
        if old and decided:
            encounters = list(encounters)
            for i in old:
                if (deps[i], sids[i]) in decided:
                    encounters[i] = None
    given = np.array(encounters, dtype=np.float64)  # None -> NaN
    missing = np.isnan(given)
    ids = np.fromiter(sids, dtype=np.int64, count=len(sids))
    top = np.zeros(int(ids.max()) + 1)
    np.maximum.at(top, ids[~missing], given[~missing])
    found = np.flatnonzero(top)
    highest = dict(zip(found.tolist(), top[found].astype(np.int64).tolist(), strict=True))
    candidates = [
        i
        for i in np.flatnonzero(missing).tolist()
        if deps[i] is not None and outcomes[i] != "skipped"
    ]
    if not candidates:
        return encounters, highest
    # the first decided attempt of each (deployment, signature) in the file, for the deployments
    # of the candidates; and those the KB has already
    where = {deps[i] for i in candidates}
    first: dict[tuple[str | None, int], int] = {}
    for i in itertools.compress(range(len(deps)), map(where.__contains__, deps)):
        if outcomes[i] != "skipped":
            first.setdefault((deps[i], sids[i]), i)
    decided |= _decided_pairs(conn, (where & old_deps) - asked)
    numbered = list(encounters)
    for i in candidates:
        dep, sid = deps[i], sids[i]
        if first[(dep, sid)] != i or (dep, sid) in decided:
            continue
        n = highest[sid] = max(highest.get(sid, 0), stored.get(sid, 0)) + 1
        numbered[i] = n
    return numbered, highest


def _decided_pairs(conn: Connection, deployments: set[Any]) -> set[tuple[str, int]]:
    """(deployment, signature id) of the KB's attempts that are not skipped, in ``deployments``."""
    at = ATTEMPTS.c
    pairs: set[tuple[str, int]] = set()
    for chunk in _chunks(sorted(deployments)):
        pairs.update(
            (dep, sid)
            for dep, sid in conn.execute(
                select(at.deployment_id, at.signature_id)
                .where(at.deployment_id.in_(chunk), at.outcome != "skipped")
                .distinct()
            )
        )
    return pairs


def _insert_records(conn: Connection, table: Table, records: list[dict[str, Any]]) -> None:
    """Insert dicts that all have the same keys (tens of thousands of deployments or
    signatures): through :func:`_insert_many` on SQLite, the Core executemany elsewhere."""
    if not records:
        return
    if not _fast_sqlite(conn):
        conn.execute(insert(table), records)
        return
    names = [c.name for c in table.columns if c.name in records[0]]
    encoders = [_nullable(_encoder(conn, table.c[name])) for name in names]
    rows = (
        tuple([encode(r[name]) for name, encode in zip(names, encoders, strict=True)])
        for r in records
    )
    _insert_many(conn, table, names, rows)


def _nullable(encode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    if encode is _same:
        return encode
    return lambda value: None if value is None else encode(value)


def _transpose(records: Sequence[tuple[Any, ...]], width: int) -> list[Sequence[Any]]:
    """Tuples of ``width`` fields -> ``width`` columns."""
    if not records:
        return [() for _ in range(width)]
    return list(zip(*records, strict=True))


_ATTEMPT_COLUMNS = (
    "signature_id",
    "strategy",
    "step",
    "deployment_id",
    "context",
    "outcome",
    "duration",
    "decided_by",
    "weight",
    "origin",
    "record_key",
    "at",
    "encounter",
)
_INSERT_CHUNK = 20_000


#: an import adding at least this many attempts, and at least as many as the table holds,
#: rebuilds the table's indexes after the insert (SQLite) instead of updating them row by row
_REBUILD_MIN_ROWS = 50_000


@contextmanager
def _bulk_load(conn: Connection, table: Table, incoming: int) -> Iterator[None]:
    """Around a large insert on SQLite: drop the table's indexes, then create them again.

    Building an index from the finished table (one sort) is several times faster than updating
    it for each of many rows. It all happens in the import's one transaction, so a failure
    (including a duplicate in a unique index) rolls back to the KB as it was. The indexes are
    the models' own, which the no-drift test holds equal to the migrated schema.
    """
    if not _fast_sqlite(conn) or incoming < _REBUILD_MIN_ROWS:
        yield
        return
    rows = int(conn.scalar(select(func.count()).select_from(table)) or 0)
    if rows > incoming:
        yield
        return
    indexes = sorted(table.indexes, key=lambda ix: str(ix.name))
    for index in indexes:
        index.drop(conn)
    yield
    for index in indexes:
        index.create(conn)


def _fast_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _encoder(conn: Connection, column: Any) -> Callable[[Any], Any]:
    """What ``column``'s type does to a value on its way to the driver, for _insert_many.

    On SQLite that is the type's own bind processor (JSON text, the DATETIME storage format),
    remembered per value object (the importer shares equal contexts and times); elsewhere the
    value is left for SQLAlchemy to process.
    """
    if not _fast_sqlite(conn):
        return _same
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if process is None:
        return _same
    if _SAMPLE_TIME.__class__ in column.type.python_type.__mro__ and process(
        _SAMPLE_TIME
    ) == _SAMPLE_TIME.isoformat(" ", "microseconds"):
        # the dialect stores times as ISO text with microseconds: one C call per time
        return _ISO_MICROSECONDS
    done: dict[int, tuple[Any, Any]] = {}

    def run(value: Any) -> Any:
        found = done.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        result = None if value is None else process(value)
        if len(done) < 100_000:
            done[id(value)] = (value, result)  # the value is kept, so its id stays its own
        return result

    return run


def _same(value: Any) -> Any:
    return value


_SAMPLE_TIME = datetime(2025, 1, 6, 7, 8, 9, 10)


#: a time as SQLite's DATETIME stores it (the values are never None here)
_ISO_MICROSECONDS = operator.methodcaller("isoformat", " ", "microseconds")


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _insert_many(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """Insert rows (tuples in ``columns`` order) with executemany; returns the count.

    On SQLite the statement is the table's Core ``insert()`` compiled for the dialect and the
    rows, whose values went through :func:`_encoder` (the rest are ints, floats, strings and
    None, which need no processing), go as one iterator to the DB-API cursor's executemany:
    SQLAlchemy's per-row parameter handling would cost more than the insert itself. Other
    databases take the Core executemany, in chunks.
    """
    count = 0
    if not _fast_sqlite(conn):
        for chunk in _batches(rows, _INSERT_CHUNK):
            conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in chunk])
            count += len(chunk)
        return count
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
    if list(compiled.positiontup or ()) != list(columns):  # pragma: no cover - a coding error
        raise KnowledgeBaseError(f"insert into {table.name}: columns not in table order")
    # the driver's connection (inside this transaction) takes the rows as they come
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.executemany(str(compiled), rows)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()
