"""Validation of one record (a decoded line): the field checks, their messages, and the
validated record (:mod:`.schema`) it adds to the file's :class:`.schema.Parsed`."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aideploy.core.errors import ConfigError
from aideploy.core.redact import redact, redact_obj
from aideploy.knowledge.classes import ERROR_CLASSES, UNKNOWN
from aideploy.knowledge.exchange.schema import (
    CLASS_CHARS,
    KEY_CHARS,
    KEY_RE,
    MAX_DURATION,
    MAX_ENCOUNTER,
    NAME_CHARS,
    NAME_RULE,
    SIGNATURE_CHARS,
    AttemptRecord,
    DeploymentRecord,
    Parsed,
    PatternRecord,
    SignatureRecord,
    StrategyRecord,
    safe_name,
)
from aideploy.knowledge.exchange.scrub import context_key
from aideploy.knowledge.models import utcnow
from aideploy.knowledge.store import (
    DECIDERS,
    OUTCOMES,
    RISKS,
    check_regex,
    normalize_signature,
)

# how many distinct values each cache of an import remembers
TEXT_CACHE_SIZE = 200_000
CONTEXT_CACHE_SIZE = 100_000
SIGNATURE_CACHE_SIZE = 200_000
STRATEGY_CACHE_SIZE = 10_000
#: distinct times remembered by _time (the cache is emptied when it passes this)
TIME_CACHE_SIZE = 50_000


class RecordError(Exception):
    """A record is invalid (message without the line number)."""


def _str(rec: dict[str, Any], key: str, *, required: bool = False, limit: int = NAME_CHARS) -> str:
    value = rec.get(key)
    if value is None:
        if required:
            raise RecordError(f'"{key}" is required')
        return ""
    if not isinstance(value, str):
        raise RecordError(f'"{key}" must be a string')
    if required and not value.strip():
        raise RecordError(f'"{key}" must not be empty')
    if len(value) > limit:
        raise RecordError(f'"{key}" is longer than {limit} characters')
    return value


def _name(rec: dict[str, Any], key: str, *, required: bool = False) -> str:
    """A strategy or pattern name, or a deployment id: :func:`.schema.safe_name` or empty."""
    value = _str(rec, key, required=required)
    if value and not safe_name(value):
        raise RecordError(f'"{key}" must be {NAME_RULE}, got {value[:40]!r}')
    return value


_CLASSES = frozenset(ERROR_CLASSES)


def _class(rec: dict[str, Any], *, required: bool = False) -> str:
    """An error class: one aideploy knows ("unknown" when it is missing or empty)."""
    value = _str(rec, "error_class", required=required, limit=CLASS_CHARS) or UNKNOWN
    if value not in _CLASSES:
        raise RecordError(f'"error_class" {value[:40]!r} is not an error class aideploy knows')
    return value


def _num(rec: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = rec.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f'"{key}" must be a number')
    if not lo <= value <= hi:
        raise RecordError(f'"{key}" must be between {lo:g} and {hi:g}')
    return float(value)


_TIME_CACHE: dict[str, datetime] = {}


def _time(rec: dict[str, Any], key: str) -> datetime | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f'"{key}" must be an ISO 8601 time')
    cached = _TIME_CACHE.get(value)
    if cached is not None:
        return cached
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f'"{key}" is not an ISO 8601 time: {value[:40]!r}') from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if len(_TIME_CACHE) > TIME_CACHE_SIZE:
        _TIME_CACHE.clear()
    _TIME_CACHE[value] = parsed
    return parsed


def content_id(record: dict[str, Any]) -> str:
    """The stable id of a record that has none: sha256 of its canonical JSON."""
    body = {k: v for k, v in record.items() if k != "id"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ValidationCache:
    """What one import has seen: imported values redacted (the same strings recur on many
    lines), and the signatures and strategy names that passed validation."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self._contexts: dict[Any, dict[str, Any]] = {}
        #: raw "signature" values that passed validation -> their stored signature
        self.valid_sigs: dict[str, str] = {}
        #: "strategy" values that passed validation
        self.valid_strategies: set[str] = set()

    def strategy_ok(self, value: str) -> bool:
        """Whether a strategy name of the right length is a :func:`.schema.safe_name`
        (remembered when it is)."""
        if not safe_name(value):
            return False
        if len(self.valid_strategies) < STRATEGY_CACHE_SIZE:
            self.valid_strategies.add(value)
        return True

    def text(self, value: str) -> str:
        found = self.texts.get(value)
        if found is None:
            found = redact(value)
            if len(self.texts) < TEXT_CACHE_SIZE:
                self.texts[value] = found
        return found

    def sig(self, value: str) -> str:
        return self.text(value).strip() or "<empty>"

    def context(self, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return {}
        key = context_key(value)
        found = self._contexts.get(key)
        if found is None:
            cleaned = redact_obj(value)
            assert isinstance(cleaned, dict)
            found = cleaned
            if len(self._contexts) < CONTEXT_CACHE_SIZE:
                self._contexts[key] = found
        return found


def _v_strategy(rec: dict[str, Any], out: Parsed, c: ValidationCache) -> None:
    name = _name(rec, "name", required=True)
    risk = _str(rec, "risk", limit=16) or "medium"
    if risk not in RISKS:
        raise RecordError(f'"risk" must be one of {", ".join(RISKS)}')
    commands = rec.get("commands")
    if commands is not None and (
        not isinstance(commands, list) or not all(isinstance(c, str) for c in commands)
    ):
        raise RecordError('"commands" must be a list of strings')
    out.strategies.append(
        StrategyRecord(
            name=name,
            description=redact(_str(rec, "description", limit=4000)),
            risk=risk,
            commands=[redact(c) for c in commands] if commands is not None else None,
        )
    )


def _v_pattern(rec: dict[str, Any], out: Parsed, c: ValidationCache) -> None:
    name = _name(rec, "name", required=True)
    regex = _str(rec, "regex", required=True, limit=1000)
    try:
        check_regex(regex)
    except ConfigError as exc:
        raise RecordError(f"pattern {name!r} rejected: {exc}") from None
    retry = rec.get("retry_count", 3)
    if isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= 20:
        raise RecordError('"retry_count" must be an integer between 0 and 20')
    out.patterns.append(
        PatternRecord(
            name=name,
            regex=regex,
            error_class=_class(rec, required=True),
            strategy=_name(rec, "strategy"),
            severity=_str(rec, "severity", limit=16) or "medium",
            description=redact(_str(rec, "description", limit=4000)),
            retry_count=retry,
        )
    )


def _v_deployment(rec: dict[str, Any], out: Parsed, c: ValidationCache) -> None:
    started = _time(rec, "started_at")
    # through the cache: profiles and plans repeat, and the attempts name the same ids
    out.deployments.append(
        DeploymentRecord(
            id=c.text(_name(rec, "id", required=True)),
            profile=c.text(_str(rec, "profile")),
            host=c.text(_str(rec, "host", limit=255)),
            plan=c.text(_str(rec, "plan")),
            status=_str(rec, "status", limit=32) or "unknown",
            started_at=started or utcnow(),
            ended_at=_time(rec, "ended_at"),
        )
    )


def _v_signature(rec: dict[str, Any], out: Parsed, c: ValidationCache) -> None:
    text = c.sig(_str(rec, "signature", required=True, limit=SIGNATURE_CHARS))
    count = rec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise RecordError('"count" must be a non-negative integer')
    first = _time(rec, "first_seen")
    last = _time(rec, "last_seen")
    out.signatures.append(
        SignatureRecord(
            text=text,
            error_class=_class(rec),
            count=count,
            first_seen=first or last or utcnow(),
            last_seen=last or first or utcnow(),
        )
    )


_OUTCOME_SET = frozenset(OUTCOMES)


def _v_attempt(rec: dict[str, Any], out: Parsed, c: ValidationCache) -> None:
    # Each field is taken on a fast path when it is plainly valid (a value already validated, or
    # the expected type within its limits); anything else goes through the general checks, in
    # the same order, so a bad record gets the same message.
    get = rec.get
    raw_sig = get("signature")
    text = c.valid_sigs.get(raw_sig) if raw_sig.__class__ is str else None
    if text is None:
        if raw_sig is not None:
            text = c.sig(_str(rec, "signature", required=True, limit=SIGNATURE_CHARS))
            if len(c.valid_sigs) < SIGNATURE_CACHE_SIZE:
                c.valid_sigs[raw_sig] = text
        elif get("error") is not None:
            raw = rec["error"]
            if not isinstance(raw, str) or not raw.strip():
                raise RecordError('"error" must be a non-empty string')
            text = normalize_signature(raw)
        else:
            raise RecordError('an attempt needs "signature" or "error"')
    outcome = get("outcome")
    if outcome.__class__ is not str or outcome not in _OUTCOME_SET:
        outcome = _str(rec, "outcome", required=True, limit=16)
        if outcome not in OUTCOMES:
            raise RecordError(f'"outcome" must be one of {", ".join(OUTCOMES)}')
    key = get("id")
    if key is None:
        key = content_id(rec)
    elif not isinstance(key, str) or not KEY_RE.match(key):
        raise RecordError(f'"id" must be 1-{KEY_CHARS} letters, digits or ._:-')
    context = get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        raise RecordError('"context" must be an object')
    decided = get("decided_by")
    if decided is not None and decided not in DECIDERS:
        raise RecordError(f'"decided_by" must be one of {", ".join(DECIDERS)}')
    dep = get("deployment")
    if dep is not None and not isinstance(dep, str):
        raise RecordError('"deployment" must be a string')
    if dep and not safe_name(dep):
        raise RecordError(f'"deployment" must be {NAME_RULE}, got {dep[:40]!r}')
    error_class = get("error_class")
    if error_class.__class__ is not str or error_class not in _CLASSES:
        error_class = _class(rec)
    strategy = get("strategy")
    if strategy.__class__ is not str or strategy not in c.valid_strategies:
        strategy = _name(rec, "strategy", required=True)
    step = get("step")
    if step.__class__ is not str or len(step) > NAME_CHARS:
        step = _str(rec, "step")
    weight = get("weight", 1.0)
    if weight.__class__ is not float or not 0.0 <= weight <= 1.0:
        weight = _num(rec, "weight", 1.0, 0.0, 1.0)
    duration = get("duration", 0.0)
    if duration.__class__ is not float or not 0.0 <= duration <= MAX_DURATION:
        duration = _num(rec, "duration", 0.0, 0.0, MAX_DURATION)
    encounter = get("encounter")
    if encounter is not None and (
        encounter.__class__ is not int or not 1 <= encounter <= MAX_ENCOUNTER
    ):
        raise RecordError(f'"encounter" must be an integer between 1 and {MAX_ENCOUNTER}')
    out.attempts.append(
        AttemptRecord(
            key=key,
            text=text,
            error_class=error_class or UNKNOWN,
            strategy=strategy,
            outcome=outcome,
            step=c.text(step),
            deployment=c.text(dep) if dep else None,
            context=c.context(context),
            weight=weight,
            duration=float(duration),
            at=_attempt_time(rec),
            encounter=encounter,
        )
    )


def _attempt_time(rec: dict[str, Any]) -> datetime | None:
    """``_time(rec, "at")``; an attempt's time is rarely repeated, so no cache on the way."""
    value = rec.get("at")
    if value.__class__ is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return _time(rec, "at")  # raises the usual message
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    return _time(rec, "at")


Validator = Callable[[dict[str, Any], Parsed, ValidationCache], None]

#: the validator of each record type (see schema.RECORD_TYPES)
VALIDATORS: dict[str, Validator] = {
    "strategy": _v_strategy,
    "pattern": _v_pattern,
    "deployment": _v_deployment,
    "signature": _v_signature,
    "attempt": _v_attempt,
}
