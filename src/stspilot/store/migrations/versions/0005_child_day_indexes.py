"""No day-only indexes on the report children: a window over every domain finds its reports on
``ix_reports_day`` and their children by primary key (``queries._window``); the two indexes
were written on every policy and failure-detail row (~8% of a stored report's instructions,
measured with callgrind).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_DROPPED = (
    ("ix_report_policies_day", "report_policies"),
    ("ix_failure_details_day", "failure_details"),
)


def upgrade() -> None:
    for name, table in _DROPPED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table in _DROPPED:
        op.create_index(name, table, ["day"], unique=False)
