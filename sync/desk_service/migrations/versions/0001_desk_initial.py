"""The desk database: records, payments, conflicts, quarantine, commands, statuses,
terminal state and health history.

Revision ID: d0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "d0001"
down_revision = None
branch_labels = None
depends_on = None

T = 32
REF = 64
SHORT = 64


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "seq", name="pk_records"),
    )
    op.create_table(
        "payments",
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("payment_id", sa.String(REF), nullable=False),
        sa.Column("reprocess_count", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(SHORT)),
        sa.Column("provider_id", sa.String(SHORT)),
        sa.Column("account", sa.String(REF)),
        sa.Column("account_digits", sa.String(REF)),
        sa.Column("inserted_minor", sa.BigInteger),
        sa.Column("credited_minor", sa.BigInteger),
        sa.Column("currency", sa.String(8)),
        sa.Column("created_ms", sa.BigInteger),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "payment_id", "reprocess_count",
                                name="pk_payments"),
    )
    op.create_index("ix_payments_account_digits", "payments", ["account_digits"])
    op.create_index("ix_payments_created_ms", "payments", ["created_ms"])
    op.create_index("ix_payments_payment_id", "payments", ["payment_id"])
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(REF), nullable=False),
        sa.Column("reprocess_count", sa.Integer),
        sa.Column("stored", sa.Text, nullable=False),
        sa.Column("received", sa.Text, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("terminal_id", sa.String(T)),
        sa.Column("reason", sa.String(SHORT), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload_head", sa.LargeBinary, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_quarantine_received_ms", "quarantine", ["received_ms"])
    op.create_table(
        "cmd_seq",
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("kid", sa.String(SHORT), nullable=False),
        sa.Column("last", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "kid", name="pk_cmd_seq"),
    )
    op.create_table(
        "status_versions",
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("payment_id", sa.String(REF), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "payment_id", name="pk_status_versions"),
    )
    op.create_table(
        "statuses_sent",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("payment_id", sa.String(REF), nullable=False),
        sa.Column("reprocess_count", sa.Integer),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("sent_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("terminal_id", "payment_id", "version", name="uq_statuses_sent"),
    )
    op.create_table(
        "config_published",
        sa.Column("topic", sa.String(256), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("published_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "commands",
        sa.Column("cmd_id", sa.String(REF), primary_key=True),
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("type", sa.String(SHORT), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.Column("issued_ms", sa.BigInteger),
        sa.Column("expires_ms", sa.BigInteger),
        sa.Column("sent_ms", sa.BigInteger),
        sa.Column("ok", sa.Boolean),
        sa.Column("error", sa.String(SHORT)),
        sa.Column("result", sa.Text),
        sa.Column("result_ms", sa.BigInteger),
    )
    op.create_index("ix_commands_terminal", "commands", ["terminal_id"])
    op.create_table(
        "terminals",
        sa.Column("terminal_id", sa.String(T), primary_key=True),
        sa.Column("state", sa.String(16)),
        sa.Column("connection_id", sa.String(SHORT)),
        sa.Column("state_at_ms", sa.BigInteger),
        sa.Column("state_received_ms", sa.BigInteger),
        sa.Column("state_data", sa.Text),
        sa.Column("health", sa.Text),
        sa.Column("health_at_ms", sa.BigInteger),
        sa.Column("health_received_ms", sa.BigInteger),
    )
    op.create_table(
        "health_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("terminal_id", sa.String(T), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("terminal_id", "at_ms", name="uq_health_history"),
    )


def downgrade() -> None:
    for name in ("health_history", "terminals", "commands", "config_published",
                 "statuses_sent", "status_versions", "cmd_seq", "quarantine", "conflicts",
                 "payments", "records"):
        op.drop_table(name)
