"""The encounter number of each failure, stored when the failure is recorded.

A failure is a signature in a deployment (an attempt with a deployment); its first attempt is its
first (lowest id) attempt whose outcome is not ``skipped``. Its encounter is its number among the
failures of the same signature, ordered by first attempt: 1 for the first deployment that met the
signature, 2 for the second, ...

``recovery_attempts.encounter`` holds that number on a failure's first attempt and NULL on every
other attempt; ``error_signatures.encounters`` is the highest number given to the signature so
far, so the next failure gets the one after it. Both are filled here from the existing rows.

The report no longer looks for each failure's first attempt (revision 3's anti-join), so the
indexes change with it: ``(signature_id, strategy, outcome, weight, duration)`` gets ``encounter``
as a last column, so the report's grouped pass over it also sums the failures by encounter without
reading the table; ``(deployment_id, signature_id, id, outcome, weight, at)`` becomes
``(deployment_id, signature_id, outcome)``, all that recording (is there an earlier decided attempt
on this signature in this deployment?) and the deployment filters need, and cheaper to rebuild
after a large import. Then the statistics are refreshed as in revision 3.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "recovery_attempts"
#: each index's columns before and after this revision
_INDEXES = {
    "ix_recovery_attempts_signature_strategy": (
        ["signature_id", "strategy", "outcome", "weight", "duration"],
        ["signature_id", "strategy", "outcome", "weight", "duration", "encounter"],
    ),
    "ix_recovery_attempts_deployment_signature": (
        ["deployment_id", "signature_id", "id", "outcome", "weight", "at"],
        ["deployment_id", "signature_id", "outcome"],
    ),
}

# each failure's first attempt, numbered per signature by its id (UPDATE ... FROM: SQLite 3.33+)
_NUMBER_FAILURES = """
UPDATE recovery_attempts SET encounter = numbered.n
FROM (
    SELECT id, row_number() OVER (PARTITION BY signature_id ORDER BY id) AS n
    FROM (
        SELECT min(id) AS id, signature_id FROM recovery_attempts
        WHERE deployment_id IS NOT NULL AND outcome <> 'skipped'
        GROUP BY deployment_id, signature_id
    ) AS firsts
) AS numbered
WHERE recovery_attempts.id = numbered.id
"""

_SIGNATURE_ENCOUNTERS = """
UPDATE error_signatures SET encounters = highest.n
FROM (
    SELECT signature_id, max(encounter) AS n FROM recovery_attempts
    WHERE encounter IS NOT NULL GROUP BY signature_id
) AS highest
WHERE error_signatures.id = highest.signature_id
"""


def upgrade() -> None:
    op.add_column(_TABLE, sa.Column("encounter", sa.Integer(), nullable=True))
    op.add_column(
        "error_signatures",
        sa.Column("encounters", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(_NUMBER_FAILURES)
    op.execute(_SIGNATURE_ENCOUNTERS)
    for name, (_, columns) in _INDEXES.items():
        op.drop_index(name, table_name=_TABLE)
        op.create_index(name, _TABLE, columns)
    op.execute(f"ANALYZE {_TABLE}")


def downgrade() -> None:
    for name, (columns, _) in _INDEXES.items():
        op.drop_index(name, table_name=_TABLE)
        op.create_index(name, _TABLE, columns)
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of error_signatures would drop the
    # old table, and with it (ON DELETE CASCADE) every attempt
    op.execute("ALTER TABLE error_signatures DROP COLUMN encounters")
    op.execute(f"ALTER TABLE {_TABLE} DROP COLUMN encounter")
