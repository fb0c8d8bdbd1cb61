"""The report children's (policy_domain, day) indexes carry what the dashboard's windows read,
so SQLite answers them from the index alone (no lookup of each row in its table): the
inventory's windows, the domain page's totals and failures (``store.dashboard``,
``store.queries``). They replace the narrower indexes (same leading columns, so every query
that used those uses these), at a wider index write per stored row (docs/dashboard.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# (table, old index, its columns, new index, its columns): as in store/schema.py
_INDEXES = (
    (
        "report_policies",
        "ix_report_policies_policy_domain_day",
        ["policy_domain", "day"],
        "ix_report_policies_domain_day_covering",
        [
            "policy_domain",
            "day",
            "authenticity",
            "organization_name",
            "successful_sessions",
            "failed_sessions",
        ],
    ),
    (
        "failure_details",
        "ix_failure_details_policy_domain_day_result_type",
        ["policy_domain", "day", "result_type"],
        "ix_failure_details_domain_day_covering",
        [
            "policy_domain",
            "day",
            "result_type",
            "receiving_mx_hostname",
            "organization_name",
            "authenticity",
            "failed_session_count",
        ],
    ),
)


def upgrade() -> None:
    for table, old, _, new, columns in _INDEXES:
        op.create_index(new, table, columns, unique=False)
        op.drop_index(old, table_name=table)


def downgrade() -> None:
    for table, old, columns, new, _ in _INDEXES:
        op.create_index(old, table, columns, unique=False)
        op.drop_index(new, table_name=table)
