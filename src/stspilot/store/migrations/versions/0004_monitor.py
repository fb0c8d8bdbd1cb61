"""The monitor: its schedule (``monitor_domains``, the work queue) and alert memory
(``monitor_alerts``, for de-duplication).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Self-contained copies of schema.py's column types (see 0001).
UTC_DATETIME = sa.DateTime(timezone=True)
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_domains",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("added_at", UTC_DATETIME, nullable=False),
        sa.Column("next_run_at", UTC_DATETIME, nullable=False),
        sa.Column("claimed_until", UTC_DATETIME, nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_run_at", UTC_DATETIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_monitor_domains")),
    )
    op.create_index(
        op.f("ix_monitor_domains_next_run_at"), "monitor_domains", ["next_run_at"], unique=False
    )
    op.create_index(
        op.f("ix_monitor_domains_claim_token"), "monitor_domains", ["claim_token"], unique=False
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("lasting", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("last_sent_at", UTC_DATETIME, nullable=True),
        sa.Column("resolved_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_monitor_alerts")),
    )
    op.create_index(
        op.f("ix_monitor_alerts_domain_resolved_at"),
        "monitor_alerts",
        ["domain", "resolved_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_monitor_alerts_domain_resolved_at"), table_name="monitor_alerts")
    op.drop_table("monitor_alerts")
    op.drop_index(op.f("ix_monitor_domains_claim_token"), table_name="monitor_domains")
    op.drop_index(op.f("ix_monitor_domains_next_run_at"), table_name="monitor_domains")
    op.drop_table("monitor_domains")
