"""Covering indexes for the report's scans of recovery attempts.

``(signature_id, strategy, outcome, weight, duration)`` serves the grouped pass behind the
per-strategy and best-strategy-per-class tables; ``(deployment_id, signature_id, id, outcome,
weight, at)`` serves the first-try curve (the first attempt on a signature in a deployment). They
replace the single-column ``signature_id`` and ``deployment_id`` indexes, which are their
prefixes. Only indexes change: no row is touched. Statistics are refreshed afterwards so the
query planner knows the new indexes' shape.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-20
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "recovery_attempts"


def upgrade() -> None:
    op.create_index(
        "ix_recovery_attempts_signature_strategy",
        _TABLE,
        ["signature_id", "strategy", "outcome", "weight", "duration"],
    )
    op.create_index(
        "ix_recovery_attempts_deployment_signature",
        _TABLE,
        ["deployment_id", "signature_id", "id", "outcome", "weight", "at"],
    )
    op.drop_index("ix_recovery_attempts_signature_id", table_name=_TABLE)
    op.drop_index("ix_recovery_attempts_deployment_id", table_name=_TABLE)
    op.execute(f"ANALYZE {_TABLE}")


def downgrade() -> None:
    op.create_index("ix_recovery_attempts_deployment_id", _TABLE, ["deployment_id"])
    op.create_index("ix_recovery_attempts_signature_id", _TABLE, ["signature_id"])
    op.drop_index("ix_recovery_attempts_deployment_signature", table_name=_TABLE)
    op.drop_index("ix_recovery_attempts_signature_strategy", table_name=_TABLE)
