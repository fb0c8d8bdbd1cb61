"""API tokens get a scope (``read`` or ``write``), an optional expiry and the time of last use.

Tokens made before this revision keep the full power they had: scope ``write``, no expiry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Self-contained copies of schema.py's column types (see 0001).
UTC_DATETIME = sa.DateTime(timezone=True)
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN with a constant default fills the existing rows on both engines (no table
    # rewrite on SQLite, none on PostgreSQL >= 11).
    op.add_column(
        "api_tokens",
        sa.Column("scope", sa.String(length=8), server_default="write", nullable=False),
    )
    op.add_column("api_tokens", sa.Column("expires_at", UTC_DATETIME, nullable=True))
    op.add_column("api_tokens", sa.Column("last_used_at", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite before 3.35 has no DROP COLUMN, so the table is copied there.
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("scope")
