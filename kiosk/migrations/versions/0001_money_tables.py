"""Money tables: sessions, escrows, stacked bills, payments, outbox, events, cassette.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("inserted_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("started_ms", sa.Integer, nullable=False),
        sa.Column("updated_ms", sa.Integer, nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_sessions_state", "sessions", ["state"])
    op.create_table(
        "escrows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=True),
        sa.Column("amount_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("bill_type", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.Integer, nullable=False),
        sa.Column("resolved_ms", sa.Integer, nullable=True),
        sa.Column("run_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_escrows_state", "escrows", ["state"])
    op.create_table(
        "payments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=True, unique=True
        ),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("inserted_minor", sa.Integer, nullable=False),
        sa.Column("commission_minor", sa.Integer, nullable=False),
        sa.Column("credited_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_detail", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_ms", sa.Integer, nullable=False),
        sa.Column("updated_ms", sa.Integer, nullable=False),
        sa.Column("receipt_printed_ms", sa.Integer, nullable=True),
        sa.Column("reprocess_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_payments_status", "payments", ["status"])
    op.create_table(
        "payment_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_payment_history_payment", "payment_history", ["payment_id"])
    op.create_table(
        "encashments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at_ms", sa.Integer, nullable=False),
        sa.Column("technician", sa.String(64), nullable=False),
        sa.Column("bill_count", sa.Integer, nullable=False),
        sa.Column("total_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )
    op.create_table(
        "stacked_bills",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_key", sa.String(128), nullable=False, unique=True),
        sa.Column("escrow_id", sa.Integer, sa.ForeignKey("escrows.id"), nullable=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), nullable=True),
        sa.Column("payment_id", sa.String(64), sa.ForeignKey("payments.id"), nullable=True),
        sa.Column("amount_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("bill_type", sa.Integer, nullable=False),
        sa.Column("recovered", sa.Boolean, nullable=False),
        sa.Column("stacked_ms", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("encashment_id", sa.Integer, sa.ForeignKey("encashments.id"), nullable=True),
    )
    op.create_index("ix_stacked_bills_session", "stacked_bills", ["session_id"])
    op.create_index("ix_stacked_bills_payment", "stacked_bills", ["payment_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_ms", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_sent_ms", sa.Integer, nullable=True),
        sa.Column("acked_ms", sa.Integer, nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["acked_ms", "id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("at_ms", sa.Integer, nullable=False),
    )
    op.create_table(
        "cassette",
        sa.Column("amount_minor", sa.Integer, primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "cassette",
        "events",
        "outbox",
        "stacked_bills",
        "encashments",
        "payment_history",
        "payments",
        "escrows",
        "sessions",
        "counters",
    ):
        op.drop_table(table)
