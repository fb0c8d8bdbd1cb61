"""The publish journal: ``publish_runs`` and their ``publish_steps`` (intended, done, verified).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Self-contained copies of schema.py's column types (see 0001).
UTC_DATETIME = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publish_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dns", sa.String(length=255), nullable=False),
        sa.Column("destination", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publish_runs")),
    )
    op.create_index(
        op.f("ix_publish_runs_domain_id"), "publish_runs", ["domain", "id"], unique=False
    )
    op.create_table(
        "publish_steps",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("intended_at", UTC_DATETIME, nullable=True),
        sa.Column("done_at", UTC_DATETIME, nullable=True),
        sa.Column("verified_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["publish_runs.id"],
            name=op.f("fk_publish_steps_run_id_publish_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_publish_steps")),
    )


def downgrade() -> None:
    op.drop_table("publish_steps")
    op.drop_index(op.f("ix_publish_runs_domain_id"), table_name="publish_runs")
    op.drop_table("publish_runs")
