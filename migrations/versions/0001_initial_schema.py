"""Initial knowledge-base schema.

Revision ID: 0001
Revises:
Create Date: 2025-01-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("profile", sa.String(128), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("plan", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_started_at", "deployments", ["started_at"])
    op.create_index("ix_deployments_profile_host", "deployments", ["profile", "host"])

    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("output_tail", sa.Text(), nullable=False),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_step_runs_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_step_runs"),
    )
    op.create_index("ix_step_runs_deployment_id", "step_runs", ["deployment_id"])

    op.create_table(
        "error_signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("error_class", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_error_signatures"),
        sa.UniqueConstraint("hash", name="uq_error_signatures_hash"),
    )
    op.create_index("ix_error_signatures_error_class", "error_signatures", ["error_class"])

    op.create_table(
        "recovery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(128), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["error_signatures.id"],
            name="fk_recovery_attempts_signature_id_error_signatures",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_recovery_attempts_deployment_id_deployments",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recovery_attempts"),
    )
    op.create_index("ix_recovery_attempts_signature_id", "recovery_attempts", ["signature_id"])
    op.create_index("ix_recovery_attempts_strategy", "recovery_attempts", ["strategy"])
    op.create_index("ix_recovery_attempts_at", "recovery_attempts", ["at"])
    op.create_index("ix_recovery_attempts_deployment_id", "recovery_attempts", ["deployment_id"])

    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.Column("commands", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_strategies"),
        sa.UniqueConstraint("name", name="uq_strategies_name"),
    )

    op.create_table(
        "patterns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("regex", sa.Text(), nullable=False),
        sa.Column("error_class", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_patterns"),
        sa.UniqueConstraint("name", name="uq_patterns_name"),
    )


def downgrade() -> None:
    op.drop_table("patterns")
    op.drop_table("strategies")
    op.drop_table("recovery_attempts")
    op.drop_table("error_signatures")
    op.drop_table("step_runs")
    op.drop_table("deployments")
