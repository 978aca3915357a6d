"""An index on health_history.received_ms, so that retention (sync/desk_service/
retention.py) deletes old health reports by time without reading the whole table.

Revision ID: d0004
Revises: d0003
Create Date: 2026-12-03
"""

from alembic import op

revision = "d0004"
down_revision = "d0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_health_history_received_ms", "health_history", ["received_ms"])


def downgrade() -> None:
    op.drop_index("ix_health_history_received_ms", table_name="health_history")
