"""desk_workers: heartbeats of partitioned desk workers, so that a partition whose worker
has gone quiet is taken over by the next one (sync/desk_service/takeover.py).

Revision ID: d0005
Revises: d0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "d0005"
down_revision = "d0004"
branch_labels = None
depends_on = None

SHORT = 64


def upgrade() -> None:
    op.create_table(
        "desk_workers",
        sa.Column("client_id", sa.String(SHORT), primary_key=True),
        sa.Column("partition_k", sa.Integer, nullable=False),
        sa.Column("partition_n", sa.Integer, nullable=False),
        sa.Column("beat", sa.BigInteger, nullable=False),
        sa.Column("covers", sa.String(256), nullable=False),
        sa.Column("seen_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("desk_workers")
