"""Ledger identity, and which encashment accounted for an escrow of unknown outcome.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_identity",
        sa.Column("ledger_id", sa.String(32), primary_key=True),
        sa.Column("terminal_id", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.Integer, nullable=False),
        sa.Column("number_base", sa.Integer, nullable=False),
        sa.Column("previous_ledger_id", sa.String(32), nullable=True),
        sa.Column("how", sa.Text, nullable=False),
    )
    with op.batch_alter_table("escrows") as batch:
        batch.add_column(sa.Column("encashment_id", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escrows") as batch:
        batch.drop_column("encashment_id")
    op.drop_table("ledger_identity")
