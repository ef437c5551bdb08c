"""The knowledge-base schema: typed SQLAlchemy models.

The schema is created and changed only by the Alembic revisions in ``aideploy.migrations``; a test
compares these models with a freshly migrated database so the two never drift apart.

Times are naive UTC datetimes. Every text column is written through
:func:`aideploy.core.redact.redact` by :mod:`aideploy.knowledge.store` and the importer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the KB stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Deployment(Base):
    """One run of ``aideploy deploy`` against one host."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    profile: Mapped[str] = mapped_column(String(128), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    plan: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(32), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)

    __table_args__ = (
        Index("ix_deployments_started_at", "started_at"),
        Index("ix_deployments_profile_host", "profile", "host"),
    )


class StepRun(Base):
    """One execution of one step (a retry after a recovery is a new attempt number)."""

    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="CASCADE")
    )
    step: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    output_tail: Mapped[str] = mapped_column(Text, default="")
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)

    __table_args__ = (Index("ix_step_runs_deployment_id", "deployment_id"),)


class ErrorSignature(Base):
    """A masked, normalized error; the same error on two machines is one row."""

    __tablename__ = "error_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    error_class: Mapped[str] = mapped_column(String(64), default="unknown")
    first_seen: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1)
    #: the highest encounter number given to one of its failures so far (revision 4)
    encounters: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (Index("ix_error_signatures_error_class", "error_class"),)


class RecoveryAttempt(Base):
    """One recovery strategy tried on one signature, and what came of it."""

    __tablename__ = "recovery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signature_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("error_signatures.id", ondelete="CASCADE")
    )
    strategy: Mapped[str] = mapped_column(String(128))
    step: Mapped[str] = mapped_column(String(128), default="")
    deployment_id: Mapped[str | None] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True
    )
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str] = mapped_column(String(16))
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    decided_by: Mapped[str] = mapped_column(String(16), default="rule")
    #: 1.0 for local outcomes, less for imported ones (added in revision 2)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    #: "local", or the source name of the import that brought it (revision 2)
    origin: Mapped[str] = mapped_column(String(255), default="local", server_default="local")
    #: stable id of the record across exports and imports (revision 2)
    record_key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    #: on a failure's first attempt only: the failure's number among the failures of its
    #: signature, in the KB where it was recorded (1 for the first deployment that met it, ...);
    #: NULL on every other attempt (revision 4)
    encounter: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        # revision 3: the two composite indexes cover the report's scans (no table lookups) and
        # replace the single-column signature_id / deployment_id indexes, which are their
        # prefixes. Revision 4: the first one ends with the encounter (the report's grouped pass
        # sums failures by encounter); the second one only answers "is there an earlier
        # (decided) attempt on this signature in this deployment" and the deployment filters
        Index(
            "ix_recovery_attempts_signature_strategy",
            "signature_id",
            "strategy",
            "outcome",
            "weight",
            "duration",
            "encounter",  # revision 4
        ),
        Index(
            "ix_recovery_attempts_deployment_signature", "deployment_id", "signature_id", "outcome"
        ),
        Index("ix_recovery_attempts_strategy", "strategy"),
        Index("ix_recovery_attempts_at", "at"),
        Index("ix_recovery_attempts_record_key", "record_key", unique=True),
    )


class StrategyRow(Base):
    """A recovery strategy the KB knows: built in, written locally, or imported."""

    __tablename__ = "strategies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    risk: Mapped[str] = mapped_column(String(16), default="medium")
    origin: Mapped[str] = mapped_column(String(255), default="custom")
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    commands: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class PatternRow(Base):
    """A detection rule: regex -> error class -> strategy."""

    __tablename__ = "patterns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    regex: Mapped[str] = mapped_column(Text)
    error_class: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(128), default="")
    severity: Mapped[str] = mapped_column(String(16), default="error")
    description: Mapped[str] = mapped_column(Text, default="")
    retry_count: Mapped[int] = mapped_column(Integer, default=1)
    origin: Mapped[str] = mapped_column(String(255), default="custom")
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)


class ImportSource(Base):
    """Where imported knowledge came from, and whether it is trusted (revision 5). What an
    untrusted source brought (patterns, strategies, outcomes naming it as their origin) is
    shown but takes no part in ranking."""

    __tablename__ = "import_sources"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    trusted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    imported_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    trusted_at: Mapped[datetime | None] = mapped_column(DateTime(), nullable=True)


class KbMeta(Base):
    """Key/value facts about the KB itself (its id, when it was created). Revision 2."""

    __tablename__ = "kb_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# Core table handles, typed as tables (``Model.__table__`` is typed as a generic FromClause).
DEPLOYMENTS = cast(Table, Deployment.__table__)
STEP_RUNS = cast(Table, StepRun.__table__)
SIGNATURES = cast(Table, ErrorSignature.__table__)
ATTEMPTS = cast(Table, RecoveryAttempt.__table__)
STRATEGIES = cast(Table, StrategyRow.__table__)
PATTERNS = cast(Table, PatternRow.__table__)
KB_META = cast(Table, KbMeta.__table__)
SOURCES = cast(Table, ImportSource.__table__)
