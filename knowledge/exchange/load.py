"""Reading a file: the header check, then every line validated (attempts as exports write them
on a fast msgspec path), into one :class:`.schema.Parsed`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from aideploy.core.errors import ImportRejected
from aideploy.core.inputs import check_regular, nested_deeper_than
from aideploy.knowledge.classes import ERROR_CLASSES, UNKNOWN
from aideploy.knowledge.exchange.schema import (
    FORMAT,
    KEY_RE,
    MAX_LINE_CHARS,
    MAX_NESTING,
    RECORD_TYPES,
    VERSION,
    AttemptRecord,
    Parsed,
    WireAttempt,
    safe_name,
)
from aideploy.knowledge.exchange.validate import (
    CONTEXT_CACHE_SIZE,
    VALIDATORS,
    RecordError,
    ValidationCache,
)

KNOWN_CLASSES = frozenset(ERROR_CLASSES)
_WIRE_ATTEMPT = msgspec.json.Decoder(WireAttempt)
_DECODE_ANY = msgspec.json.Decoder().decode


def too_deep(number: int) -> ImportRejected:
    """The rejection of line ``number`` for nesting deeper than :data:`.schema.MAX_NESTING`."""
    return ImportRejected(
        f"line {number}: lists and objects nested more than {MAX_NESTING} levels deep "
        "(the limit for a line of an import file)"
    )


def check_header(line: str) -> int:
    """The number of records the header line announces (ImportRejected if it is no header)."""
    try:
        header = json.loads(line)
    except ValueError:
        raise ImportRejected("line 1: not a JSON header line") from None
    except RecursionError:  # nested deeper than the parser can follow
        raise too_deep(1) from None
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


def fast_path(out: Parsed, c: ValidationCache) -> Callable[[WireAttempt], bool]:
    """What adds a decoded attempt as :func:`.validate._v_attempt` would; it returns False to
    leave the record to the validator (a signature not validated yet, a blank strategy, a bad
    time, a context that is not an object). Everything it needs is bound once: it runs for
    every line.
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
    key_ok = KEY_RE.match
    fromisoformat = datetime.fromisoformat
    classes = KNOWN_CLASSES
    deployments: set[str] = set()  # deployment ids that passed safe_name

    def take(a: WireAttempt) -> bool:
        text = signatures(a.signature)
        strategy = a.strategy
        if text is None or (strategy not in strategies and not strategy_ok(strategy)):
            return False
        error_class = a.error_class
        if error_class and error_class not in classes:
            return False
        dep = a.deployment
        if dep and dep not in deployments:
            if not safe_name(dep):
                return False
            if len(deployments) < CONTEXT_CACHE_SIZE:
                deployments.add(dep)
        key = a.id
        if not (key.isascii() and key.isalnum()) and key_ok(key) is None:
            return False
        when: datetime | None = None
        if a.at is not None:
            try:
                when = fromisoformat(a.at)
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
            elif value.__class__ is not dict or nested_deeper_than(value, MAX_NESTING - 1):
                return False  # the validator says why
            context = context_of(value)
            if len(contexts) < CONTEXT_CACHE_SIZE:
                contexts[raw] = context
        step = texts(a.step)
        if step is None:
            step = text_of(a.step)
        if dep:
            found = texts(dep)
            dep = text_of(dep) if found is None else found
        add(
            AttemptRecord(
                key=key,
                text=text,
                error_class=error_class or UNKNOWN,
                strategy=strategy,
                outcome=a.outcome,
                step=step,
                deployment=dep or None,
                context=context,
                weight=a.weight,
                duration=a.duration,
                at=when,
                encounter=a.encounter,
            )
        )
        return True

    return take


def parse_lines(lines: Iterable[str]) -> Parsed:
    """Validate every line; the first problem raises ImportRejected("line N: ...").

    An attempt record as exports write them (an id, a known signature, every field of its type and
    within its limits) takes the fast path: decoded straight into :class:`.schema.WireAttempt`,
    which checks the types, limits, id and outcome in C. Any other line, and any line the fast
    path turns down, is decoded into a dict and goes through the record's validator, whose
    verdict (and message) counts: the fast path only ever accepts what the validator would
    accept, with the same result.
    """
    out = Parsed()
    expected: int | None = None
    cache = ValidationCache()

    fast = _WIRE_ATTEMPT.decode
    fast_error = msgspec.DecodeError  # ValidationError is one
    take = fast_path(out, cache)
    decode = _DECODE_ANY
    loads = json.loads
    validators = VALIDATORS
    records = number = 0
    try:
        for number, line in enumerate(lines, 1):
            if number == 1:
                expected = check_header(line)
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
                # msgspec is stricter than the json module (NaN, lone surrogates): json's
                # verdict counts
                try:
                    rec = loads(line)
                except ValueError as exc:
                    raise ImportRejected(f"line {number}: not valid JSON ({exc})") from None
            if not isinstance(rec, dict):
                raise ImportRejected(f"line {number}: a record must be a JSON object")
            if nested_deeper_than(rec, MAX_NESTING):
                raise too_deep(number)
            kind = rec.get("type")
            validate = validators.get(kind) if isinstance(kind, str) else None
            if validate is None:
                raise ImportRejected(
                    f'line {number}: "type" must be one of {", ".join(RECORD_TYPES)}'
                )
            try:
                validate(rec, out, cache)
            except RecordError as exc:
                raise ImportRejected(f"line {number}: {kind}: {exc}") from None
            records += 1
    except RecursionError:  # a line nested deeper than a parser can follow: past the limit
        raise too_deep(number) from None
    out.records = records
    if expected is None:
        raise ImportRejected("line 1: the file is empty")
    if records != expected:
        raise ImportRejected(
            f"line {number}: the header announces {expected} records but the file has "
            f"{records} (truncated or edited?)"
        )
    return out


def read(source: str | os.PathLike[str] | IO[str]) -> Parsed:
    """:func:`parse_lines` of an open text stream, or of the file at a path (which must be a
    regular file: a FIFO, device or directory is refused before it is opened)."""
    if hasattr(source, "read"):
        return parse_lines(source)  # type: ignore[arg-type]
    path = Path(os.fspath(source))
    check_regular(path, error=ImportRejected)
    try:
        with path.open(encoding="utf-8") as handle:
            return parse_lines(handle)
    except OSError as exc:
        raise ImportRejected(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"{path} is not UTF-8 text: {exc.reason}") from None
