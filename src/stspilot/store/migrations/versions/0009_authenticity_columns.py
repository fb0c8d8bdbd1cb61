"""Each report's authenticity (dkim, operator, https, mail: ``store.rows.authenticity``) is
carried on the report and on every policy and failure-detail row, so the rollout's counts
(``store.dashboard.report_windows``) read it without joining each row to its report and
evaluating the origin and the envelope's JSON there (23-28 ms of the inventory page).

Rows stored before are backfilled with the same rule in SQL, once: the origin's scheme
compared without regard to case, the envelope's ``dkim.result`` (``tests/
test_report_authenticity.py`` compares this with the Python rule for every kind of report).
The default "" (rows a writer left it out of) is not an authenticated class.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TABLES = ("reports", "report_policies", "failure_details")


def _rule(dialect: str) -> str:
    """``store.rows.authenticity`` as SQL over a ``reports`` row (frozen here: a migration
    must mean the same thing whatever the code becomes)."""
    if dialect == "postgresql":
        dkim = "(envelope -> 'dkim' ->> 'result')"
    else:  # SQLite's JSON1 (part of every supported SQLite)
        dkim = "json_extract(envelope, '$.dkim.result')"
    return (
        "CASE WHEN lower(substr(origin, 1, 6)) = 'https:' THEN 'https' "
        f"WHEN {dkim} = 'pass' THEN 'dkim' "
        "WHEN lower(substr(origin, 1, 5)) IN ('smtp:', 'imap:') THEN 'mail' "
        "ELSE 'operator' END"
    )


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("authenticity", sa.String(length=16), server_default="", nullable=False),
        )
    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect == "postgresql":
        # The envelope column is jsonb on PostgreSQL (schema.Json); a json one would need
        # no change either (-> and ->> take both).
        op.execute(f"UPDATE reports SET authenticity = {_rule(dialect)}")
        for child in _TABLES[1:]:
            op.execute(
                f"UPDATE {child} AS c SET authenticity = r.authenticity "
                "FROM reports AS r WHERE r.id = c.report_pk"
            )
    else:
        op.execute(f"UPDATE reports SET authenticity = {_rule(dialect)}")
        for child in _TABLES[1:]:
            op.execute(
                f"UPDATE {child} SET authenticity = "
                "coalesce((SELECT r.authenticity FROM reports AS r "
                f"WHERE r.id = {child}.report_pk), '')"
            )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on both engines (SQLite since 3.35): a batch copy of the
    # tables would lose report_policies' and failure_details' WITHOUT ROWID.
    for table in reversed(_TABLES):
        op.execute(f"ALTER TABLE {table} DROP COLUMN authenticity")
