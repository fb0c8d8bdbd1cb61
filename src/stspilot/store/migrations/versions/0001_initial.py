"""The initial schema: reports, policies, failure details, raw bytes, quarantine, checks.

Revision ID: 0001
Revises: -
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Self-contained copies of schema.py's column types (a migration must not change when the
# application's code does): stored UTC datetimes, 64-bit ids (rowid on SQLite), JSONB, BYTEA.
UTC_DATETIME = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BLOB = sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("observed_at", UTC_DATETIME, nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("worst_severity", sa.String(length=32), nullable=True),
        sa.Column("findings_count", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.String(length=64), nullable=True),
        sa.Column("policy_sha256", sa.String(length=64), nullable=True),
        sa.Column("mx_set", JSON, nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checks")),
    )
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checks_domain_observed_at"), ["domain", "observed_at"], unique=False
        )

    op.create_table(
        "raw_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("report_pk", ID, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", BLOB, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_raw_blobs")),
    )
    op.create_table(
        "reports",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("organization_name", sa.String(length=512), nullable=False),
        sa.Column("report_id", sa.String(length=512), nullable=False),
        sa.Column("start_at", UTC_DATETIME, nullable=False),
        sa.Column("end_at", UTC_DATETIME, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("contact_info", sa.String(length=512), nullable=True),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=1024), nullable=False),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.Column("stored_at", UTC_DATETIME, nullable=False),
        sa.Column("envelope", JSON, nullable=True),
        sa.Column("deviations", JSON, nullable=False),
        sa.Column("policy_count", sa.Integer(), nullable=False),
        sa.Column("successful_sessions", sa.BigInteger(), nullable=False),
        sa.Column("failed_sessions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint(
            "report_id", "organization_name", name=op.f("uq_reports_report_id_organization_name")
        ),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_day"), ["day"], unique=False)

    op.create_table(
        "failure_details",
        sa.Column("report_pk", ID, nullable=False),
        sa.Column("policy_idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("policy_type", sa.String(length=64), nullable=False),
        sa.Column("policy_domain", sa.String(length=255), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("organization_name", sa.String(length=512), nullable=False),
        sa.Column("result_type", sa.String(length=128), nullable=False),
        sa.Column("failed_session_count", sa.BigInteger(), nullable=False),
        sa.Column("sending_mta_ip", sa.String(length=64), nullable=True),
        sa.Column("receiving_mx_hostname", sa.String(length=255), nullable=True),
        sa.Column("receiving_mx_helo", sa.String(length=255), nullable=True),
        sa.Column("receiving_ip", sa.String(length=64), nullable=True),
        sa.Column("additional_information", sa.Text(), nullable=True),
        sa.Column("failure_reason_code", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_pk"],
            ["reports.id"],
            name=op.f("fk_failure_details_report_pk_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_pk", "policy_idx", "idx", name=op.f("pk_failure_details")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("failure_details", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_failure_details_day"), ["day"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_failure_details_organization_name_day"),
            ["organization_name", "day"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_failure_details_policy_domain_day_result_type"),
            ["policy_domain", "day", "result_type"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_failure_details_receiving_mx_hostname_day"),
            ["receiving_mx_hostname", "day"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_failure_details_sending_mta_ip"), ["sending_mta_ip"], unique=False
        )

    op.create_table(
        "quarantine",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", BLOB, nullable=False),
        sa.Column("origin", sa.String(length=1024), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", UTC_DATETIME, nullable=True),
        sa.Column("resolved_report_pk", ID, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resolved_report_pk"],
            ["reports.id"],
            name=op.f("fk_quarantine_resolved_report_pk_reports"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint("sha256", name=op.f("uq_quarantine_sha256")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantine_resolved_id"), ["resolved", "id"], unique=False
        )

    op.create_table(
        "report_policies",
        sa.Column("report_pk", ID, nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("policy_type", sa.String(length=64), nullable=False),
        sa.Column("policy_domain", sa.String(length=255), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("organization_name", sa.String(length=512), nullable=False),
        sa.Column("policy_string", JSON, nullable=False),
        sa.Column("mx_host", JSON, nullable=False),
        sa.Column("successful_sessions", sa.BigInteger(), nullable=False),
        sa.Column("failed_sessions", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_pk"],
            ["reports.id"],
            name=op.f("fk_report_policies_report_pk_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_pk", "idx", name=op.f("pk_report_policies")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("report_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_policies_day"), ["day"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_report_policies_policy_domain_day"),
            ["policy_domain", "day"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("report_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_policies_policy_domain_day"))
        batch_op.drop_index(batch_op.f("ix_report_policies_day"))

    op.drop_table("report_policies")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_resolved_id"))

    op.drop_table("quarantine")
    with op.batch_alter_table("failure_details", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_failure_details_sending_mta_ip"))
        batch_op.drop_index(batch_op.f("ix_failure_details_receiving_mx_hostname_day"))
        batch_op.drop_index(batch_op.f("ix_failure_details_policy_domain_day_result_type"))
        batch_op.drop_index(batch_op.f("ix_failure_details_organization_name_day"))
        batch_op.drop_index(batch_op.f("ix_failure_details_day"))

    op.drop_table("failure_details")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_day"))

    op.drop_table("reports")
    op.drop_table("raw_blobs")
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checks_domain_observed_at"))

    op.drop_table("checks")
