"""The operator's page: operators (scrypt password hashes, roles, lock), web sessions,
login attempts (rate limit) and the audit trail.

Revision ID: d0002
Revises: d0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "d0002"
down_revision = "d0001"
branch_labels = None
depends_on = None

T = 32
REF = 64
SHORT = 64
LOGIN = 64


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("login", sa.String(LOGIN), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("locked", sa.Boolean, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("login", sa.String(LOGIN), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_web_sessions_login", "web_sessions", ["login"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("login", sa.String(LOGIN)),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
    )
    op.create_index("ix_login_attempts_client_at", "login_attempts", ["client", "at_ms"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("login", sa.String(LOGIN)),
        sa.Column("client", sa.String(64)),
        sa.Column("action", sa.String(SHORT), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("terminal_id", sa.String(T)),
        sa.Column("target", sa.String(REF)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_at", "audit", ["at_ms"])
    op.create_index("ix_audit_target", "audit", ["target"])


def downgrade() -> None:
    for name in ("audit", "login_attempts", "web_sessions", "operators"):
        op.drop_table(name)
