"""Weight, origin and a stable record key on attempts; the kb_meta table.

Existing attempts are local ones: they get weight 1.0, origin "local" and a fresh random record
key each; the KB gets its own id in kb_meta (exports use it to name records).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-13
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column(
        "recovery_attempts",
        sa.Column("weight", sa.Float(), nullable=False, server_default="1.0"),
    )
    op.add_column(
        "recovery_attempts",
        sa.Column("origin", sa.String(255), nullable=False, server_default="local"),
    )
    op.add_column("recovery_attempts", sa.Column("record_key", sa.String(64), nullable=True))

    bind = op.get_bind()
    attempts = sa.table(
        "recovery_attempts", sa.column("id", sa.Integer), sa.column("record_key", sa.String)
    )
    ids = [row[0] for row in bind.execute(sa.select(attempts.c.id).order_by(attempts.c.id))]
    update = (
        sa.update(attempts)
        .where(attempts.c.id == sa.bindparam("b_id"))
        .values(record_key=sa.bindparam("b_key"))
    )
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        bind.execute(update, [{"b_id": i, "b_key": uuid.uuid4().hex} for i in chunk])

    with op.batch_alter_table("recovery_attempts") as batch:
        batch.alter_column("record_key", existing_type=sa.String(64), nullable=False)
    op.create_index(
        "ix_recovery_attempts_record_key", "recovery_attempts", ["record_key"], unique=True
    )

    meta = op.create_table(
        "kb_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_kb_meta"),
    )
    op.bulk_insert(meta, [{"key": "kb_id", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("kb_meta")
    op.drop_index("ix_recovery_attempts_record_key", table_name="recovery_attempts")
    with op.batch_alter_table("recovery_attempts") as batch:
        batch.drop_column("record_key")
        batch.drop_column("origin")
        batch.drop_column("weight")
