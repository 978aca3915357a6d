"""The body of the last config document the desk published per terminal: a retained
document replaces the previous one at the broker, so the next document (a fleet phone,
a help text) is built from this one plus the change.

Revision ID: d0003
Revises: d0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "d0003"
down_revision = "d0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("config_published") as batch:
        batch.add_column(sa.Column("body", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("config_published") as batch:
        batch.drop_column("body")
