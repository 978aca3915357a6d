"""Desk tables: executed desk commands (at-most-once) and applied config versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_commands",
        sa.Column("command_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("received_ms", sa.Integer, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_table(
        "config_versions",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("applied_ms", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_config_versions_sha256"),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
    op.drop_table("desk_commands")
