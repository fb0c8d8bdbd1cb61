"""Fewer secondary indexes on failure_details: every summary and dashboard query filters on
(policy_domain, day) or day alone; the (mx, day), (organization, day) and (sending IP) indexes
served no query and cost ~20% of the ingest write time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DROPPED = (
    ("ix_failure_details_receiving_mx_hostname_day", ["receiving_mx_hostname", "day"]),
    ("ix_failure_details_organization_name_day", ["organization_name", "day"]),
    ("ix_failure_details_sending_mta_ip", ["sending_mta_ip"]),
)


def upgrade() -> None:
    for name, _columns in _DROPPED:
        op.drop_index(name, table_name="failure_details")


def downgrade() -> None:
    for name, columns in _DROPPED:
        op.create_index(name, "failure_details", columns, unique=False)
