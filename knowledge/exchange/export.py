"""Export: every record of a KB, redacted (:mod:`.scrub`), as JSON Lines behind a header."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Text, select, type_coerce

from aideploy.core.atomic import atomic_file
from aideploy.core.errors import KnowledgeBaseError, UsageError
from aideploy.core.inputs import check_regular
from aideploy.core.private import FILE_MODE, private_dir
from aideploy.knowledge.exchange.memory import no_cyclic_gc
from aideploy.knowledge.exchange.schema import FORMAT, MAX_LINE_CHARS, VERSION
from aideploy.knowledge.exchange.scrub import Scrubber, context_key
from aideploy.knowledge.models import ATTEMPTS, DEPLOYMENTS, PATTERNS, SIGNATURES, STRATEGIES
from aideploy.knowledge.store import OUTCOMES, KnowledgeBase

#: attempt rows fetched from the database at a time
FETCH_ROWS = 10_000
#: how many distinct redacted contexts the export remembers
CONTEXT_CACHE_SIZE = 100_000
#: lines joined into one write
WRITE_LINES = 5000

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class _Signature:
    """A signature as its attempts are exported."""

    text: str  # redacted
    error_class: str


def iter_export(kb: KnowledgeBase, *, keep_hosts: bool = False) -> Iterator[dict[str, Any]]:
    """Every record of the KB, redacted, in export order (no header)."""
    salt = kb.kb_id()
    with kb.reading() as conn:
        hosts = [h for (h,) in conn.execute(select(DEPLOYMENTS.c.host).distinct())]
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
        signatures: dict[int, _Signature] = {}
        for r in conn.execute(select(sg).order_by(sg.c.id)):
            text = scrub.text(r.text)
            signatures[r.id] = _Signature(text, r.error_class)
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
        )
        # an attempt still pending or never decided (interrupted) teaches nothing: not shared
        query = query.where(at.c.outcome.in_(OUTCOMES)).order_by(at.c.id)
        result = conn.execution_options(yield_per=FETCH_ROWS).execute(query)
        for row in result:
            key, sid, strategy, outcome, step, dep, context, weight, duration, by, when, nth = row
            signature = signatures[sid]
            if context.__class__ is str:
                ctx_key = context
            else:
                ctx_key = context_key(context) if context else ""
            ctx = contexts.get(ctx_key)
            if ctx is None:
                if context.__class__ is str:
                    context = json.loads(context)
                ctx = scrub.context(context)
                if len(contexts) < CONTEXT_CACHE_SIZE:
                    contexts[ctx_key] = ctx
            if dep is not None and dep not in deployments:
                deployments[dep] = scrub.pseudonym("d", dep)
            record = {
                "type": "attempt",
                "id": key,
                "signature": signature.text,
                "error_class": signature.error_class,
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


def is_export(path: Path) -> bool:
    """Whether the regular file at ``path`` starts with an export's header line."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(MAX_LINE_CHARS)
        header = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT


def export_kb(
    kb: KnowledgeBase,
    destination: str | os.PathLike[str] | IO[str],
    *,
    keep_hosts: bool = False,
    replace: bool = False,
) -> int:
    """Write the KB as JSON Lines to a path or an open text stream; returns the record count.

    A path is written atomically (a temp file renamed into place), so a failed export never
    leaves half a file behind. An existing file is only replaced when it is an earlier export
    (or ``replace``): a mistyped path never overwrites someone's file with a knowledge base.
    """
    if hasattr(destination, "write"):
        return _write_export(kb, destination, keep_hosts=keep_hosts)  # type: ignore[arg-type]
    path = Path(os.fspath(destination))
    if path.name in ("", ".", ".."):
        raise UsageError(f"{os.fspath(destination)!r} does not name a file to export to")
    check_regular(path)
    if not replace and path.exists() and not is_export(path):
        raise UsageError(
            f"{path}: exists and is not an aideploy export; not replacing it "
            "(give another file, or --force to replace it)"
        )
    try:
        private_dir(path.parent)
        with atomic_file(path, mode=FILE_MODE, text=True) as handle:
            count = _write_export(kb, handle, keep_hosts=keep_hosts)
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot write {path}: {exc.strerror or exc}") from None
    return count


def _write_export(kb: KnowledgeBase, handle: IO[str], *, keep_hosts: bool) -> int:
    # the header carries the record count, so records are rendered before it is written
    with no_cyclic_gc():
        lines = [_dumps(r) for r in iter_export(kb, keep_hosts=keep_hosts)]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": len(lines),
        "source": kb.kb_id(),
    }
    handle.write(_dumps(header) + "\n")
    for start in range(0, len(lines), WRITE_LINES):
        handle.write("\n".join(lines[start : start + WRITE_LINES]) + "\n")
    return len(lines)
