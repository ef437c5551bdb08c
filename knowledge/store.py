"""The knowledge base: what failed, what was tried, and what came of it.

:class:`KnowledgeBase` is what the executor records into as things happen (each call is its own
short transaction) and what the ranker reads (:meth:`KnowledgeBase.past_outcomes`, the
:class:`~aideploy.knowledge.history.History` protocol). Every text is passed through
:func:`~aideploy.core.redact.redact` before it is stored.

Over 400 lines because :class:`KnowledgeBase` is the one gateway to the database: every write
and read of a deployment, step run, signature, attempt, strategy and pattern goes through it, so
that transactions, redaction and limits are applied in one place.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import URL, Connection, Engine, Insert, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from aideploy.core.errors import ConfigError, KnowledgeBaseError, NoKnowledgeBase
from aideploy.core.recovery import Outcome
from aideploy.core.redact import redact, redact_obj
from aideploy.knowledge.db import (
    ENV_VAR,
    make_engine,
    resolve_url,
    safe_url,
    sqlite_file,
    upgrade,
)
from aideploy.knowledge.history import PastOutcome
from aideploy.knowledge.models import (
    ATTEMPTS,
    PATTERNS,
    SIGNATURES,
    SOURCES,
    STRATEGIES,
    Deployment,
    ErrorSignature,
    KbMeta,
    PatternRow,
    RecoveryAttempt,
    StepRun,
    StrategyRow,
    utcnow,
)
from aideploy.knowledge.report import StrategyStats, strategy_table
from aideploy.knowledge.signature import signature_of

#: the outcomes an attempt is decided with (and exchanged with other knowledge bases)
OUTCOMES = (Outcome.RECOVERED.value, Outcome.FAILED.value, Outcome.SKIPPED.value)
#: what a row may hold: also "pending" (written before the strategy acts) and "unknown" (it was
#: interrupted while acting)
RECORDED_OUTCOMES = tuple(o.value for o in Outcome)
DECIDERS = ("rule", "ranker", "user", "imported")
RISKS = ("low", "medium", "high")
OUTPUT_TAIL_CHARS = 8000
EMPTY_SIGNATURE = "<empty>"
#: origins of what was not imported: an import may not take one of them as its source name
LOCAL_ORIGINS = frozenset({"local", "custom", "builtin"})


def signature_hash(signature: str) -> str:
    """The key of a signature: sha256 of its text."""
    return hashlib.sha256(signature.encode("utf-8")).hexdigest()


def normalize_signature(text: str) -> str:
    """Raw error output (or an existing signature) -> its redacted signature."""
    sig = redact(signature_of(redact(text)))
    return sig or EMPTY_SIGNATURE


def _short(value: str | None, limit: int) -> str:
    return redact(value or "")[:limit]


def _value(v: str | Enum) -> str:
    return str(v.value) if isinstance(v, Enum) else str(v)


def _clean_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    if not context:
        return {}
    cleaned = redact_obj({str(k): v for k, v in context.items()})
    assert isinstance(cleaned, dict)
    return cleaned


def _with_step(context: Mapping[str, Any] | None, step: str | None) -> dict[str, str]:
    """An attempt's context for the ranker, with the step it was recorded in (a column of its
    own, which the recorded context does not repeat)."""
    out = {str(k): str(v) for k, v in (context or {}).items()}
    if step and "step" not in out:
        out["step"] = step
    return out


def check_regex(pattern: str) -> None:
    """Raise ConfigError (UnsafePatternError) unless ``pattern`` compiles with RE2, which matches
    it in time linear in the text: a pattern stored here is matched by the rules with RE2."""
    from aideploy.knowledge.rules import check_pattern_safe

    check_pattern_safe(pattern)


# --- values returned to callers ---------------------------------------------------------------


@dataclass(frozen=True)
class SignatureInfo:
    text: str
    hash: str
    error_class: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    description: str
    risk: str
    origin: str
    trusted: bool
    commands: tuple[str, ...] | None


@dataclass(frozen=True)
class PatternInfo:
    name: str
    regex: str
    error_class: str
    strategy: str
    severity: str
    description: str
    retry_count: int
    origin: str
    trusted: bool

    @property
    def pattern(self) -> str:
        return self.regex

    @property
    def recovery(self) -> str:
        return self.strategy


@dataclass(frozen=True)
class ClassEvidence:
    """What one source says about one strategy on one error class."""

    error_class: str
    strategy: str
    recovered: int
    failed: int


@dataclass(frozen=True)
class SourceInfo:
    """An import source and what it brought. Until it is trusted, none of it is used."""

    name: str
    trusted: bool
    imported_at: datetime
    trusted_at: datetime | None
    patterns: tuple[str, ...]
    #: the strategies it brought: name -> its shell commands (empty: a name only)
    strategies: Mapping[str, tuple[str, ...]]
    attempts: int
    evidence: tuple[ClassEvidence, ...]


@dataclass(frozen=True)
class InertEvidence:
    """Outcomes an untrusted source brought about a failure, which the ranking does not use."""

    source: str
    on_signature: int
    on_class: int


# --- the store ---------------------------------------------------------------------------------


def _names_a_missing_file(given: object, url: URL) -> bool:
    """Whether ``given`` (or ``$AIDEPLOY_KB`` when nothing is given) names a SQLite file that
    does not exist."""
    if (given is None or str(given) == "") and not os.environ.get(ENV_VAR):
        return False  # the default location
    file = sqlite_file(url)
    return file is not None and not file.exists()


class KnowledgeBase:
    """A knowledge base on SQLite or PostgreSQL, migrated to the current schema on open."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self._url = url
        self._kb_id: str | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url_or_path: str | os.PathLike[str] | URL | None = None,
        *,
        migrate: bool = True,
        existing: bool = False,
    ) -> KnowledgeBase:
        """Open (and create or upgrade, unless ``migrate=False``) the KB at a path or URL.

        With ``existing``, a SQLite file named by the caller (a path, a URL or ``$AIDEPLOY_KB``)
        must already exist: commands that only read refuse a mistyped path instead of creating
        an empty base there. The default location is still created on first use.
        """
        url = resolve_url(url_or_path)
        if existing and _names_a_missing_file(url_or_path, url):
            raise NoKnowledgeBase(
                f"no knowledge base at {url.database} (a deployment with --kb, or learn "
                "import, creates one)"
            )
        engine = make_engine(url)
        try:
            if migrate:
                upgrade(engine)
        except KnowledgeBaseError:
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise KnowledgeBaseError(
                f"cannot open knowledge base {safe_url(url)}: {redact(_reason(exc))}"
            ) from None
        return cls(engine, url)

    @property
    def url(self) -> str:
        """Where the KB is, safe to print (no password)."""
        return safe_url(self._url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.url!r})"

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def writing(self, *, bulk: bool = False) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE); errors become KnowledgeBaseError.

        ``bulk=True`` is for a large write that makes sure of its own references (the importer
        looks up every signature id and keeps only known deployment ids): on SQLite its
        connection does not check foreign keys row by row and gets a larger page cache. Only
        that one connection is changed, and it is closed afterwards (no pool).
        """
        try:
            with self.engine.connect() as conn:
                if bulk and self.dialect == "sqlite":
                    _bulk_sqlite(conn)
                with conn.begin():
                    yield conn
        except KnowledgeBaseError:
            raise
        except SQLAlchemyError as exc:
            raise KnowledgeBaseError(f"knowledge base {self.url}: {redact(_reason(exc))}") from None

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read-only transaction."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(kb_read_only=True)
                with conn.begin():
                    yield conn
        except KnowledgeBaseError:
            raise
        except SQLAlchemyError as exc:
            raise KnowledgeBaseError(f"knowledge base {self.url}: {redact(_reason(exc))}") from None

    def _insert(self, table: Any) -> Insert:
        """A dialect insert that supports ON CONFLICT."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        return insert(table)

    def kb_id(self) -> str:
        """This KB's own random id (names its records in exports)."""
        if self._kb_id is None:
            with self.reading() as conn:
                value = conn.scalar(select(KbMeta.value).where(KbMeta.key == "kb_id"))
            if value is None:
                raise KnowledgeBaseError(f"knowledge base {self.url} has no id; is it migrated?")
            self._kb_id = value
        return self._kb_id

    # -- recording (the executor's Recorder) ------------------------------------------------

    def start_deployment(
        self,
        deployment_id: str,
        profile: str | None,
        host: str,
        plan: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """A deployment starts (or resumes: the row is updated, not duplicated)."""
        values = {
            "id": _short(deployment_id, 128),
            "profile": _short(profile, 128),
            "host": _short(host, 255),
            "plan": _short(plan, 128),
            "status": "running",
            "started_at": at or utcnow(),
            "ended_at": None,
        }
        stmt = self._insert(Deployment)
        with self.writing() as conn:
            if hasattr(stmt, "on_conflict_do_update"):
                conn.execute(
                    stmt.values(values).on_conflict_do_update(
                        index_elements=["id"], set_={"status": "running", "ended_at": None}
                    )
                )
            else:  # pragma: no cover - only SQLite and PostgreSQL are supported
                conn.execute(stmt.values(values))

    def finish_deployment(
        self, deployment_id: str, status: str, *, at: datetime | None = None
    ) -> None:
        """A deployment ended with ``status`` (succeeded, failed, paused, ...)."""
        with self.writing() as conn:
            result = conn.execute(
                update(Deployment)
                .where(Deployment.id == _short(deployment_id, 128))
                .values(status=_short(status, 32), ended_at=at or utcnow())
            )
            if result.rowcount == 0:
                raise KnowledgeBaseError(f"no deployment {redact(deployment_id)!r} in the KB")

    def record_step_run(
        self,
        deployment_id: str,
        step: str,
        attempt: int,
        exit_code: int | None,
        duration: float,
        output_tail: str,
        timed_out: bool,
        *,
        at: datetime | None = None,
    ) -> None:
        """One execution of a step; the output tail is redacted and capped."""
        tail = redact(output_tail or "")
        if len(tail) > OUTPUT_TAIL_CHARS:
            tail = tail[-OUTPUT_TAIL_CHARS:]
        with self.writing() as conn:
            conn.execute(
                insert(StepRun).values(
                    deployment_id=_short(deployment_id, 128),
                    step=_short(step, 128),
                    attempt=int(attempt),
                    exit_code=exit_code,
                    duration=float(duration),
                    output_tail=tail,
                    timed_out=bool(timed_out),
                    at=at or utcnow(),
                )
            )

    def _signature_id(
        self,
        conn: Connection,
        signature: str,
        error_class: str,
        at: datetime,
        *,
        count_it: bool,
    ) -> int:
        digest = signature_hash(signature)
        stmt = self._insert(ErrorSignature).values(
            text=signature,
            hash=digest,
            error_class=_short(error_class, 64) or "unknown",
            first_seen=at,
            last_seen=at,
            count=1 if count_it else 0,
        )
        if count_it:
            table = SIGNATURES
            stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["hash"],
                set_={"count": table.c.count + 1, "last_seen": at},
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["hash"])  # type: ignore[attr-defined]
        conn.execute(stmt)
        sid = conn.scalar(select(ErrorSignature.id).where(ErrorSignature.hash == digest))
        assert sid is not None
        return int(sid)

    def record_error(self, text: str, error_class: str, *, at: datetime | None = None) -> str:
        """An error was seen: its signature is created or its count and last_seen updated.

        ``text`` may be raw output or a signature; returns the signature.
        """
        signature = normalize_signature(text)
        with self.writing() as conn:
            self._signature_id(conn, signature, error_class, at or utcnow(), count_it=True)
        return signature

    def record_attempt(
        self,
        deployment_id: str | None,
        signature_text: str,
        error_class: str,
        strategy: str,
        step: str,
        outcome: str | Outcome,
        duration: float,
        decided_by: str = "rule",
        context: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
        attempt_id: str | None = None,
    ) -> str:
        """A recovery strategy was tried on an error and gave ``outcome``; returns the signature.

        With ``attempt_id`` the row is the attempt of that id: an attempt recorded ``pending``
        before its strategy acted is updated with the decided outcome and duration when it is
        recorded again, never duplicated.

        The first attempt on a signature in a deployment counts as one occurrence of the error.
        The first attempt that is not skipped is the failure's first attempt: it takes the
        signature's next encounter number (1 for the first deployment that met the signature, 2
        for the second, ...), which the UPDATE of the signature's row hands out under that row's
        lock, so concurrent writers never get the same number.
        """
        outcome_value = _value(outcome)
        if outcome_value not in RECORDED_OUTCOMES:
            raise KnowledgeBaseError(
                f"outcome must be one of {', '.join(RECORDED_OUTCOMES)}, not {outcome_value!r}"
            )
        signature = normalize_signature(signature_text)
        when = at or utcnow()
        dep = _short(deployment_id, 128) if deployment_id else None
        key = _short(attempt_id, 64) if attempt_id else uuid.uuid4().hex
        with self.writing() as conn:
            if attempt_id is not None:
                settled = conn.execute(
                    update(RecoveryAttempt)
                    .where(RecoveryAttempt.record_key == key)
                    .values(outcome=outcome_value, duration=float(duration))
                )
                if settled.rowcount:
                    return signature
            sid = self._signature_id(conn, signature, error_class, when, count_it=False)
            seen = tried = False
            if dep is not None:
                a = ATTEMPTS.c
                earlier = select(a.id).where(a.deployment_id == dep, a.signature_id == sid)
                decided = earlier.where(a.outcome != "skipped")
                seen, tried = conn.execute(select(earlier.exists(), decided.exists())).one()
            # a new failure (first attempt on this error in this deployment) is an occurrence;
            # its first attempt that is not skipped takes the next encounter number
            new = not seen
            first = dep is not None and outcome_value != "skipped" and not tried
            encounter = None
            if new or first:
                values: dict[str, Any] = {}
                if new:
                    values.update(count=SIGNATURES.c.count + 1, last_seen=when)
                if first:
                    values["encounters"] = SIGNATURES.c.encounters + 1
                change = update(SIGNATURES).where(SIGNATURES.c.id == sid).values(values)
                if first:
                    encounter = conn.scalar(change.returning(SIGNATURES.c.encounters))
                else:
                    conn.execute(change)
            conn.execute(
                insert(RecoveryAttempt).values(
                    signature_id=sid,
                    strategy=_short(strategy, 128),
                    step=_short(step, 128),
                    deployment_id=dep,
                    context=_clean_context(context),
                    outcome=outcome_value,
                    duration=float(duration),
                    decided_by=_short(decided_by, 16) or "rule",
                    weight=1.0,
                    origin="local",
                    record_key=key,
                    at=when,
                    encounter=encounter,
                )
            )
        return signature

    def pending_attempts(self, deployment_id: str | None = None) -> list[str]:
        """The ids of attempts still ``pending`` (of one deployment, or of all)."""
        a = ATTEMPTS.c
        query = select(a.record_key).where(a.outcome == Outcome.PENDING.value)
        if deployment_id is not None:
            query = query.where(a.deployment_id == _short(deployment_id, 128))
        with self.reading() as conn:
            return [key for (key,) in conn.execute(query.order_by(a.id))]

    def settle_pending(self, deployment_id: str) -> int:
        """Every attempt of ``deployment_id`` still ``pending`` becomes ``unknown`` (what its
        strategy did was never verified); returns how many."""
        a = ATTEMPTS.c
        with self.writing() as conn:
            result = conn.execute(
                update(ATTEMPTS)
                .where(
                    a.deployment_id == _short(deployment_id, 128),
                    a.outcome == Outcome.PENDING.value,
                )
                .values(outcome=Outcome.UNKNOWN.value)
            )
            return int(result.rowcount or 0)

    # -- reading ------------------------------------------------------------------------------

    def past_outcomes(self, *, local_only: bool = False) -> list[PastOutcome]:
        """Every attempt the ranking may use, as a PastOutcome (one query; weights included):
        local ones and those of trusted import sources; with ``local_only``, local ones alone.
        What an untrusted source brought is left out here, where knowledge is loaded."""
        a = ATTEMPTS.c
        s = SIGNATURES.c
        src = SOURCES.c
        inert = select(src.name)
        if not local_only:
            inert = inert.where(src.trusted.is_(False))
        query = (
            select(
                s.text,
                s.error_class,
                a.strategy,
                a.outcome,
                a.weight,
                a.context,
                a.at,
                a.deployment_id,
                a.step,
            )
            .select_from(ATTEMPTS.join(SIGNATURES))
            .where(a.origin.not_in(inert))
            .order_by(a.id)
        )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            PastOutcome(
                signature=r[0],
                error_class=r[1],
                strategy=r[2],
                outcome=r[3],
                weight=float(r[4]),
                context=_with_step(r[5], r[8]),
                at=r[6],
                deployment_id=r[7],
            )
            for r in rows
        ]

    def signatures(self, *, limit: int | None = None) -> list[SignatureInfo]:
        """Known signatures, most frequent first."""
        t = SIGNATURES
        query = select(t).order_by(t.c.count.desc(), t.c.last_seen.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.reading() as conn:
            rows = conn.execute(query).all()
            return [
                SignatureInfo(
                    text=m["text"],
                    hash=m["hash"],
                    error_class=m["error_class"],
                    count=int(m["count"]),
                    first_seen=m["first_seen"],
                    last_seen=m["last_seen"],
                )
                for m in (r._mapping for r in rows)
            ]

    def strategy_stats(self) -> list[StrategyStats]:
        """Per strategy: attempts, weighted success rate, mean time to recovery."""
        with self.reading() as conn:
            return strategy_table(conn)

    def counts(self) -> dict[str, int]:
        """Rows per table (for status lines and tests)."""
        tables = {
            "deployments": Deployment,
            "step_runs": StepRun,
            "signatures": ErrorSignature,
            "attempts": RecoveryAttempt,
            "strategies": StrategyRow,
            "patterns": PatternRow,
        }
        with self.reading() as conn:
            return {
                name: int(conn.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in tables.items()
            }

    # -- strategies and patterns -----------------------------------------------------------

    def add_strategy(
        self,
        name: str,
        description: str = "",
        risk: str = "medium",
        *,
        commands: Sequence[str] | None = None,
        origin: str = "custom",
        trusted: bool = True,
    ) -> None:
        """Add a strategy (or update a non-imported one of the same name)."""
        if risk not in RISKS:
            raise KnowledgeBaseError(f"risk must be one of {', '.join(RISKS)}")
        if not name:
            raise KnowledgeBaseError("a strategy needs a name")
        values = {
            "name": _short(name, 128),
            "description": redact(description),
            "risk": risk,
            "origin": _short(origin, 255),
            "trusted": bool(trusted),
            "commands": [redact(c) for c in commands] if commands is not None else None,
        }
        stmt = self._insert(StrategyRow).values(values)
        update_set = {k: v for k, v in values.items() if k != "name"}
        with self.writing() as conn:
            conn.execute(
                stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["name"], set_=update_set
                )
            )

    def strategies(self) -> list[StrategyInfo]:
        with self.reading() as conn:
            rows = conn.execute(select(STRATEGIES).order_by(StrategyRow.name)).all()
            return [
                StrategyInfo(
                    name=r.name,
                    description=r.description,
                    risk=r.risk,
                    origin=r.origin,
                    trusted=r.trusted,
                    commands=tuple(r.commands) if r.commands is not None else None,
                )
                for r in rows
            ]

    def add_pattern(
        self,
        name: str,
        regex: str,
        error_class: str,
        strategy: str = "",
        *,
        severity: str = "medium",
        description: str = "",
        retry_count: int = 3,
        origin: str = "custom",
        trusted: bool = True,
    ) -> None:
        """Add a detection pattern; a regex that could hang the matcher is refused."""
        if not name:
            raise KnowledgeBaseError("a pattern needs a name")
        try:
            check_regex(regex)
        except ConfigError as exc:
            raise KnowledgeBaseError(f"pattern {name!r}: {exc}") from None
        values = {
            "name": _short(name, 128),
            "regex": regex,
            "error_class": _short(error_class, 64),
            "strategy": _short(strategy, 128),
            "severity": _short(severity, 16),
            "description": redact(description),
            "retry_count": int(retry_count),
            "origin": _short(origin, 255),
            "trusted": bool(trusted),
        }
        stmt = self._insert(PatternRow).values(values)
        update_set = {k: v for k, v in values.items() if k != "name"}
        with self.writing() as conn:
            conn.execute(
                stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["name"], set_=update_set
                )
            )

    def patterns(self, trusted_only: bool = True) -> list[PatternInfo]:
        """Detection patterns (by default only trusted ones: what the matcher may run)."""
        query = select(PATTERNS).order_by(PatternRow.name)
        if trusted_only:
            query = query.where(PatternRow.trusted.is_(True))
        with self.reading() as conn:
            rows = conn.execute(query).all()
            return [
                PatternInfo(
                    name=r.name,
                    regex=r.regex,
                    error_class=r.error_class,
                    strategy=r.strategy,
                    severity=r.severity,
                    description=r.description,
                    retry_count=r.retry_count,
                    origin=r.origin,
                    trusted=r.trusted,
                )
                for r in rows
            ]

    # -- import sources and their trust -------------------------------------------------

    def sources(self) -> list[SourceInfo]:
        """Every import source, with what it brought, by name."""
        with self.reading() as conn:
            names = [r[0] for r in conn.execute(select(SOURCES.c.name).order_by(SOURCES.c.name))]
            found = (self._source(conn, name) for name in names)
            return [info for info in found if info is not None]

    def source(self, name: str) -> SourceInfo | None:
        with self.reading() as conn:
            return self._source(conn, name)

    def _source(self, conn: Connection, name: str) -> SourceInfo | None:
        row = conn.execute(select(SOURCES).where(SOURCES.c.name == name)).first()
        if row is None:
            return None
        patterns = conn.scalars(
            select(PatternRow.name).where(PatternRow.origin == name).order_by(PatternRow.name)
        ).all()
        strategies = {
            r.name: tuple(r.commands or ())
            for r in conn.execute(
                select(StrategyRow.name, StrategyRow.commands)
                .where(StrategyRow.origin == name)
                .order_by(StrategyRow.name)
            )
        }
        a, sg = ATTEMPTS.c, SIGNATURES.c
        recovered = func.sum(case((a.outcome == Outcome.RECOVERED.value, 1), else_=0))
        failed = func.sum(case((a.outcome == Outcome.FAILED.value, 1), else_=0))
        evidence = tuple(
            ClassEvidence(c, st, int(r or 0), int(f or 0))
            for c, st, r, f in conn.execute(
                select(sg.error_class, a.strategy, recovered, failed)
                .select_from(ATTEMPTS.join(SIGNATURES))
                .where(a.origin == name)
                .group_by(sg.error_class, a.strategy)
                .order_by(sg.error_class, a.strategy)
            )
        )
        attempts = conn.scalar(select(func.count()).where(a.origin == name)) or 0
        return SourceInfo(
            name=row.name,
            trusted=bool(row.trusted),
            imported_at=row.imported_at,
            trusted_at=row.trusted_at,
            patterns=tuple(patterns),
            strategies=strategies,
            attempts=int(attempts),
            evidence=evidence,
        )

    def set_trust(self, name: str, trusted: bool) -> SourceInfo:
        """Trust (or stop trusting) the import source ``name``: its patterns, strategies and
        outcomes take part in ranking (or stop taking part) from the next ranking on."""
        with self.writing() as conn:
            changed = conn.execute(
                update(SOURCES)
                .where(SOURCES.c.name == name)
                .values(trusted=trusted, trusted_at=utcnow() if trusted else None)
            ).rowcount
            if not changed:
                raise KnowledgeBaseError(self._no_source(conn, name))
            for model in (StrategyRow, PatternRow):
                conn.execute(update(model).where(model.origin == name).values(trusted=trusted))
            info = self._source(conn, name)
        assert info is not None
        return info

    def _no_source(self, conn: Connection, name: str) -> str:
        """Why ``name`` is not a source, with the source of a strategy or pattern so named."""
        message = f"no import source named {redact(name)!r} in the KB"
        for model in (StrategyRow, PatternRow):
            origin = conn.scalar(select(model.origin).where(model.name == name))
            if origin is not None and origin not in LOCAL_ORIGINS:
                kind = "strategy" if model is StrategyRow else "pattern"
                return f"{message}; {kind} {redact(name)!r} came from source {redact(origin)!r}"
        return message

    def inert_evidence(self, signature_text: str, error_class: str) -> list[InertEvidence]:
        """Per untrusted source: its outcomes on this signature and on this error class, which
        the ranking leaves out."""
        digest = signature_hash(normalize_signature(signature_text))
        a, sg, src = ATTEMPTS.c, SIGNATURES.c, SOURCES.c
        on_sig = func.sum(case((sg.hash == digest, 1), else_=0))
        on_class = func.sum(case((sg.error_class == error_class, 1), else_=0))
        query = (
            select(a.origin, on_sig, on_class)
            .select_from(ATTEMPTS.join(SIGNATURES))
            .where(a.origin.in_(select(src.name).where(src.trusted.is_(False))))
            .group_by(a.origin)
            .order_by(a.origin)
        )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [InertEvidence(str(o), int(s or 0), int(c or 0)) for o, s, c in rows if (s or c)]

    def has_imported_evidence(self) -> bool:
        """Whether the ranking uses any imported outcome (one from a trusted source)."""
        src = SOURCES.c
        trusted = select(src.name).where(src.trusted.is_(True))
        query = select(ATTEMPTS.c.id).where(ATTEMPTS.c.origin.in_(trusted)).limit(1)
        with self.reading() as conn:
            return conn.scalar(query) is not None


#: SQLite page cache (KiB) of a bulk writer's connection: a large import touches every index
BULK_CACHE_KIB = 256 * 1024


def _bulk_sqlite(conn: Connection) -> None:
    """Set up a SQLite connection for a bulk write, before its transaction starts.

    ``foreign_keys`` can only change outside a transaction, and any statement through SQLAlchemy
    would begin one, so the pragmas go straight to the driver's connection.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")
    driver.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")


def _reason(exc: BaseException) -> str:
    """The first line of a database error, without SQL or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "LOCAL_ORIGINS",
    "ClassEvidence",
    "InertEvidence",
    "KnowledgeBase",
    "PatternInfo",
    "SignatureInfo",
    "SourceInfo",
    "StrategyInfo",
    "StrategyStats",
    "check_regex",
    "normalize_signature",
    "signature_hash",
]
