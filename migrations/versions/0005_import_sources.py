"""The sources imports came from, and whether each is trusted.

An import records its source (the name given with ``--source``, else the file's name) in
``import_sources``; what it brought (patterns, strategies, attempts, each naming the source as
its ``origin``) takes part in ranking only once the source is trusted (``learn trust SOURCE``).
A knowledge base upgraded to this revision gets a row for every source its imported attempts
name, untrusted: imported evidence is inert until someone trusts it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_sources",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.Column("trusted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_import_sources")),
    )
    op.execute(
        "INSERT INTO import_sources (name, trusted, imported_at) "
        "SELECT origin, false, min(at) FROM recovery_attempts WHERE origin <> 'local' "
        "GROUP BY origin"
    )


def downgrade() -> None:
    op.drop_table("import_sources")
