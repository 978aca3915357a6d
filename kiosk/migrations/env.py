"""Alembic environment: always run with the connection the ledger hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through kiosk.ledger.db.migrate
    raise RuntimeError("run migrations through kiosk.ledger.db.migrate()")

context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
