"""Monitor self-healing: per-domain opt-in (``monitor_heal``) and the drift each domain was last
seen with (``monitor_sightings``), so "seen twice, N minutes apart" survives a restart.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Self-contained copy of schema.py's column type (see 0001).
UTC_DATETIME = sa.DateTime(timezone=True)
revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_heal",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("id_bump", sa.Boolean(), nullable=False),
        sa.Column("mx_sync", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_monitor_heal")),
    )
    op.create_table(
        "monitor_sightings",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("domain", "kind", name=op.f("pk_monitor_sightings")),
    )


def downgrade() -> None:
    op.drop_table("monitor_sightings")
    op.drop_table("monitor_heal")
