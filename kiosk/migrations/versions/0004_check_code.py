"""The customer's check code of a payment ("check my payment" asks for id and code).

Payments made before this revision keep no code (NULL): no receipt ever carried one, so a
code invented now would be known to nobody but whoever could read the ledger, and NULL
never matches anything the customer types (docs/ledger.md, "Check codes").

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("check_code", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("check_code")
